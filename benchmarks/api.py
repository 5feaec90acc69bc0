"""API latency with millions of measurements stored, and collector throughput on loopback.

    .venv/bin/python benchmarks/api.py [--rows 10000000] [--requests 50] [--clients 4] [--batches 25]
                                       [--batch-size 1000] [--shared] [--contend SECONDS]

Rows are synthetic and written straight into the DuckDB file with one SQL statement (generating 10 M
measurement documents one by one would take longer than the measurement); the dashboard's rollup is then
built by the store's own refresh_rollup(), and the service (uvicorn on 127.0.0.1, in a thread) reads it as it
would in production. The country page's data request is timed twice: with one measurement stored before each
request (as when probes upload between two polls: no cached answer applies, the rollup is refreshed in the
request) and with nothing new (a poll of an unchanged store, answered from memory). The collector is fed by
`--clients` probes, each registered and in its own process, each posting signed batches one after another over
real HTTP; the run fails unless every measurement sent was acknowledged and is in the store.

Measured at 10 M rows on the 2-core machine, quiet (load average 0.6-1.3), three runs: country page p50
48.5-72.2 ms, p95 64.1-83.5 ms after new data; p50 1.9-3.1 ms, p95 3.1-4.2 ms unchanged; incident list p50
7.1-9.5 ms, p95 9.5-12.0 ms; collector 20,570-23,653 measurements/s. Before the hourly rollup, the frozen
start-up heap, httptools/uvloop and the Struct Measurement, on the same quiet machine: p95 202-210 ms after new
data, collector 17,073-19,324/s (docs/web.md says where the time went).

`--shared` serves the store as `observatory serve` does since issue 21 (letting other processes have the file
between operations when they wait for it); `--contend S` adds another process opening and reading the served
store every S seconds during the collector run. At 1 M rows on the 2-core machine shared by other work (load
average 13-21, so within noise of each other), alternating runs: before (main) collector 8,015 and 6,700/s;
--shared 11,230 and 8,609/s (nobody waiting: the same path); --shared --contend 1 (18 reads by the other process
in the run, each a hand-off of the file both ways) 3,154/s.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from observatory.measurement import measurement_from_dict  # noqa: E402
from observatory.simulate.output import sign  # noqa: E402
from observatory.store.base import Row  # noqa: E402
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
        INSERT INTO measurements (uid, seq, t, received, cc, asn, network, region, probe_key, resolver_asn,
                                  test_name, test_version, software, source, input, platform, verdict, kbps,
                                  raw)
        SELECT 'b' || i::VARCHAR, nextval('measurement_seq'),
               TIMESTAMP '2024-01-01' + to_seconds((i * 30 * 86400 // {rows})::BIGINT),
               TIMESTAMP '2024-02-01', {cc}[1 + (i % 10)], 1000 + (i // 10) % 6, 'net', 'region',
               'p:' || ((i // 60) % 40)::VARCHAR, NULL, 'web_connectivity', '0.5.28', 'observatory',
               'observatory', 'https://x/', {pl}[1 + (i // 7) % 7],
               CASE WHEN hash(i) % 50 = 0 THEN 'tls_interference' ELSE 'ok' END, NULL, '{{}}'
        FROM range({rows}) r(i)""")  # noqa: S608 - constants only
    return time.perf_counter() - t0


def latency(client: httpx.Client, url: str, n: int, before: Callable[[], None] | None = None
            ) -> tuple[float, float]:
    """p50 and p95 in ms of n requests; `before` (untimed) runs before each one."""
    client.get(url).raise_for_status()  # warm
    times = []
    for _ in range(n):
        if before is not None:
            before()
        t0 = time.perf_counter()
        client.get(url).raise_for_status()
        times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    return statistics.median(times), times[int(0.95 * len(times)) - 1]


def new_measurement(store: DuckDBStore) -> Callable[[], None]:
    """Stores one more measurement of the window (as a probe would between two polls): answers cached for the
    previous state of the store no longer apply."""
    def store_one() -> None:
        doc = {"measurement_uid": uuid.uuid4().hex, "measurement_start_time": "2024-01-30 12:00:00",
               "probe_cc": "PK", "probe_asn": "AS1000", "test_name": "web_connectivity",
               "input": "https://twitter.com/", "test_keys": {}}
        store.insert([Row(measurement=measurement_from_dict(doc), verdict="ok", kbps=None, source="bench")])
    return store_one


def _client(base: str, cred: dict[str, str], c: int, batches: int, size: int, ready: Any, done: Any) -> None:
    """One probe in its own process: signs its batches, waits for the start, uploads them one after another."""
    bodies = []
    for _ in range(batches):
        items = [{"measurement_uid": uuid.uuid4().hex, "measurement_start_time": "2024-01-31 12:00:00",
                  "probe_cc": "PK", "probe_asn": "AS17557", "test_name": "web_connectivity",
                  "test_version": "0.5.28", "software_name": "observatory", "input": "https://twitter.com/",
                  "annotations": {"probe_id": f"bench{c}"}, "test_keys": {}} for _ in range(size)]
        body = json.dumps({"measurements": items}).encode()
        bodies.append((body, sign(body, cred["secret"])))
    accepted = 0
    with httpx.Client(base_url=base, timeout=120) as http:
        http.get("/healthz")  # connected before the clock starts
        ready.wait()
        for body, signature in bodies:
            r = http.post("/api/v1/measurements", content=body, headers={
                "Authorization": f"Bearer {cred['token']}", "X-Observatory-Signature": signature,
                "Content-Type": "application/json"})
            r.raise_for_status()
            accepted += r.json()["accepted"]
    done.put(accepted)


def collector_throughput(base: str, store: DuckDBStore, clients: int, batches: int, size: int) -> float:
    """Measurements/s acknowledged by the collector, from `clients` probes each in its own process (as probes
    are), so that the clients' own work does not share the service's interpreter."""
    # one registered probe per client: the collector limits each probe's rate (PROBE_RATE), not the total
    creds = [create_probe(store, f"bench-{uuid.uuid4().hex[:8]}") for _ in range(clients)]
    ctx = multiprocessing.get_context("spawn")
    ready, done = ctx.Barrier(clients + 1), ctx.Queue()
    procs = [ctx.Process(target=_client, args=(base, creds[c], c, batches, size, ready, done))
             for c in range(clients)]
    for p in procs:
        p.start()
    before = store.count()
    ready.wait(timeout=300)
    t0 = time.perf_counter()
    accepted = sum(done.get(timeout=600) for _ in procs)
    elapsed = time.perf_counter() - t0
    for p in procs:
        p.join()
        if p.exitcode:
            raise SystemExit(f"a client failed (exit code {p.exitcode})")
    stored = store.count() - before
    if accepted != clients * batches * size or stored != accepted:
        raise SystemExit(f"sent {clients * batches * size:,}, acknowledged {accepted:,}, stored {stored:,}")
    return accepted / elapsed


def _contender(path: str, every: float, stop: Any, opened: Any) -> None:
    """Another process using the served store as the CLI does (`observatory stats`): open, read, close."""
    while not stop.is_set():
        store = DuckDBStore(path, read_only=True)
        store.count()
        store.close()
        opened.put(1)
        stop.wait(every)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--requests", type=int, default=50)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--batches", type=int, default=25)
    ap.add_argument("--batch-size", type=int, default=1000)
    ap.add_argument("--shared", action="store_true", help="Serve the store as `observatory serve` does: letting "
                    "other processes have the file between operations.")
    ap.add_argument("--contend", type=float, default=None, metavar="SECONDS",
                    help="With --shared: another process opens the store and reads it this often during the "
                         "collector run (a CLI command against the served store).")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "bench.duckdb")
        store = DuckDBStore(path, shared=args.shared)
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
        # each client probe uploads far beyond a real probe's hourly quota: the quotas are not what is measured
        unbounded = 10**12
        server = ServerThread(create_app(WebSettings(detect_every_seconds=0, probe_per_hour=unbounded,
                                                     probe_per_day=unbounded, probe_bytes_per_hour=unbounded,
                                                     probe_bytes_per_day=unbounded), store, detector=None))
        port = server.start()
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, timeout=60) as client:
            url = "/api/v1/series?country=PK&window=7d"
            p50, p95 = latency(client, url, args.requests, before=new_measurement(store))
            print(f"country page data ({url}), a measurement stored before each request: "
                  f"p50 {p50:.1f} ms  p95 {p95:.1f} ms  (load average {os.getloadavg()[0]:.1f})")
            p50, p95 = latency(client, url, args.requests)
            print(f"country page data, nothing new stored (the answer cached): p50 {p50:.1f} ms  p95 {p95:.1f} ms")
            p50, p95 = latency(client, "/api/v1/incidents?limit=100", args.requests)
            print(f"incident list (/api/v1/incidents?limit=100): p50 {p50:.1f} ms  p95 {p95:.1f} ms  "
                  f"(load average {os.getloadavg()[0]:.1f})")
            p50, p95 = latency(client, "/api/v1/incidents?country=PK&platform=twitter", args.requests)
            print(f"incident list, filtered: p50 {p50:.1f} ms  p95 {p95:.1f} ms")
        load = os.getloadavg()[0]
        contender = None
        if args.contend is not None:
            ctx = multiprocessing.get_context("spawn")
            stop, opened = ctx.Event(), ctx.Queue()
            contender = ctx.Process(target=_contender, args=(path, args.contend, stop, opened))
            contender.start()
        rate = collector_throughput(base, store, args.clients, args.batches, args.batch_size)
        if contender is not None:
            stop.set()
            contender.join(120)
            reads = 0
            while not opened.empty():
                reads += opened.get()
            print(f"another process opened and read the served store {reads} times during the collector run")
        print(f"collector: {rate:,.0f} measurements/s, all {args.clients * args.batches * args.batch_size:,} stored "
              f"({args.clients} client processes, batches of {args.batch_size}; "
              f"load average {load:.1f} before, {os.getloadavg()[0]:.1f} after, on {os.cpu_count()} cores)")
        server.stop()
        store.close()


if __name__ == "__main__":
    main()
