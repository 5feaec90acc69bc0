"""API latency with millions of measurements stored, and collector throughput on loopback.

    .venv/bin/python benchmarks/api.py [--rows 10000000] [--clients 4] [--batches 60] [--batch-size 1000]

Rows are synthetic and written straight into the DuckDB file with one SQL statement (generating 10 M
measurement documents one by one would take longer than the measurement); the dashboard's rollup is then
built by the store's own refresh_rollup(), and the service reads it as it would in production.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from observatory.simulate.output import sign  # noqa: E402
from observatory.store.duckdb import DuckDBStore  # noqa: E402
from observatory.web import WebSettings, create_app  # noqa: E402
from observatory.web.auth import create_probe  # noqa: E402
from observatory.web.server import ServerThread  # noqa: E402

COUNTRIES = ["PK", "IN", "IR", "RU", "TR", "BD", "EG", "ET", "MM", "VE"]
PLATFORMS = ["twitter", "facebook", "instagram", "youtube", "whatsapp", "telegram", "control"]


def fill(store: DuckDBStore, rows: int) -> float:
    t0 = time.perf_counter()
    cc = "[" + ",".join(f"'{c}'" for c in COUNTRIES) + "]"
    pl = "[" + ",".join(f"'{p}'" for p in PLATFORMS) + "]"
    store._con.execute(f"""
        INSERT INTO measurements
        SELECT 'b' || i::VARCHAR, nextval('measurement_seq'),
               TIMESTAMP '2024-01-01' + to_seconds((i * 30 * 86400 // {rows})::BIGINT),
               TIMESTAMP '2024-02-01', {cc}[1 + (i % 10)], 1000 + (i // 10) % 6, 'net', 'region',
               'p:' || ((i // 60) % 40)::VARCHAR, NULL, 'web_connectivity', '0.5.28', 'observatory',
               'observatory', 'https://x/', {pl}[1 + (i // 7) % 7],
               CASE WHEN hash(i) % 50 = 0 THEN 'tls_interference' ELSE 'ok' END, NULL, '{{}}'
        FROM range({rows}) r(i)""")  # noqa: S608 - constants only
    return time.perf_counter() - t0


def latency(client: httpx.Client, url: str, n: int) -> tuple[float, float]:
    client.get(url).raise_for_status()  # warm
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        client.get(url).raise_for_status()
        times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    return statistics.median(times), times[int(0.95 * len(times)) - 1]


def collector_throughput(base: str, store: DuckDBStore, clients: int, batches: int, size: int) -> float:
    # one registered probe per client: the collector limits each probe's rate (PROBE_RATE), not the total
    creds = [create_probe(store, f"bench-{uuid.uuid4().hex[:8]}") for _ in range(clients)]
    bodies: list[list[bytes]] = [[] for _ in range(clients)]
    for c in range(clients):
        for _ in range(batches):
            items = [{"measurement_uid": uuid.uuid4().hex, "measurement_start_time": "2024-01-31 12:00:00",
                      "probe_cc": "PK", "probe_asn": "AS17557", "test_name": "web_connectivity",
                      "test_version": "0.5.28", "software_name": "observatory", "input": "https://twitter.com/",
                      "annotations": {"probe_id": f"bench{c}"}, "test_keys": {}} for _ in range(size)]
            bodies[c].append(json.dumps({"measurements": items}).encode())

    def run(c: int) -> None:
        with httpx.Client(base_url=base, timeout=120) as http:
            for body in bodies[c]:
                cred = creds[c]
                r = http.post("/api/v1/measurements", content=body, headers={
                    "Authorization": f"Bearer {cred['token']}", "X-Observatory-Signature": sign(body, cred["secret"]),
                    "Content-Type": "application/json"})
                r.raise_for_status()

    threads = [threading.Thread(target=run, args=(c,)) for c in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return clients * batches * size / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--requests", type=int, default=50)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--batches", type=int, default=25)
    ap.add_argument("--batch-size", type=int, default=1000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = DuckDBStore(str(Path(tmp) / "bench.duckdb"))
        print(f"insert {args.rows:,} rows: {fill(store, args.rows):.1f} s")
        t0 = time.perf_counter()
        store.refresh_rollup()
        print(f"build the rollup: {time.perf_counter() - t0:.1f} s")
        from datetime import UTC, datetime, timedelta

        from tests.web_synth import incident  # noqa: PLC0415 - benchmark helper

        store.save_incidents([incident(id=f"bench-{i}", cc=COUNTRIES[i % 10],
                                       start=datetime(2024, 1, 1, tzinfo=UTC) + timedelta(hours=3 * i),
                                       end=datetime(2024, 1, 1, 2, tzinfo=UTC) + timedelta(hours=3 * i),
                                       status="ended") for i in range(200)])
        server = ServerThread(create_app(WebSettings(detect_every_seconds=0), store, detector=None))
        port = server.start()
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, timeout=60) as client:
            p50, p95 = latency(client, "/api/v1/series?country=PK&window=7d", args.requests)
            print(f"country page data (/api/v1/series?country=PK&window=7d): p50 {p50:.1f} ms  p95 {p95:.1f} ms")
            p50, p95 = latency(client, "/api/v1/incidents?limit=100", args.requests)
            print(f"incident list (/api/v1/incidents?limit=100): p50 {p50:.1f} ms  p95 {p95:.1f} ms")
            p50, p95 = latency(client, "/api/v1/incidents?country=PK&platform=twitter", args.requests)
            print(f"incident list, filtered: p50 {p50:.1f} ms  p95 {p95:.1f} ms")
        load = os.getloadavg()[0]
        rate = collector_throughput(base, store, args.clients, args.batches, args.batch_size)
        print(f"collector: {rate:,.0f} measurements/s ({args.clients} clients, batches of {args.batch_size}; "
              f"load average {load:.1f} before, {os.getloadavg()[0]:.1f} after, on {os.cpu_count()} cores)")
        server.stop()
        store.close()


if __name__ == "__main__":
    main()
