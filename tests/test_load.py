"""A bounded load test on loopback: many probes upload signed batches while readers load the dashboard's data.
Throughput held, no errors, p95 latency reported, memory flat. Bounded in count and time."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import statistics
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psutil

OBS = [sys.executable, "-m", "observatory"]
PROBES = 8
BATCHES_PER_PROBE = 12
BATCH = 100
READERS = 3


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _batch(probe: int, k: int) -> bytes:
    t0 = datetime(2024, 1, 20, tzinfo=UTC) + timedelta(minutes=15 * k)
    ms = []
    for i in range(BATCH):
        ms.append({"measurement_uid": f"load-{probe}-{k}-{i}", "test_name": "web_connectivity",
                   "measurement_start_time": (t0 + timedelta(seconds=i)).strftime("%Y-%m-%d %H:%M:%S"),
                   "probe_cc": "PK", "probe_asn": f"AS{[17557, 45669, 24499][probe % 3]}",
                   "probe_network_name": "net", "software_name": "observatory", "test_version": "0.4.3",
                   "input": ["https://x.com/", "https://www.facebook.com/", "https://www.wikipedia.org/"][i % 3],
                   "annotations": {"probe_id": f"probe-{probe}", "region": "Punjab"}, "test_keys": {}})
    return json.dumps({"measurements": ms}).encode()


def test_uploads_and_reads_under_load(tmp_path: Path) -> None:
    db = str(tmp_path / "obs.duckdb")
    creds = []
    for p in range(PROBES):
        out = subprocess.run([*OBS, "probes", "add", f"load-{p}", "--db", db], capture_output=True, text=True,
                             check=True, timeout=60)
        creds.append(json.loads(out.stdout))
    port = _port()
    server = subprocess.Popen([*OBS, "serve", "--db", db, "--port", str(port), "--detect-every", "5"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        proc = psutil.Process(server.pid)
        errors: list[str] = []
        upload_lat: list[float] = []
        read_lat: list[float] = []
        rss: list[int] = []
        stop = threading.Event()

        def uploader(p: int) -> None:
            with httpx.Client(base_url=base, timeout=60) as c:
                for k in range(BATCHES_PER_PROBE):
                    body = _batch(p, k)
                    sig = hmac.new(creds[p]["secret"].encode(), body, hashlib.sha256).hexdigest()
                    t = time.perf_counter()
                    r = c.post("/api/v1/measurements", content=body, headers={
                        "Authorization": f"Bearer {creds[p]['token']}", "X-Observatory-Signature": sig,
                        "Content-Type": "application/json"})
                    upload_lat.append(time.perf_counter() - t)
                    if r.status_code != 200:
                        errors.append(f"upload {r.status_code}: {r.text[:200]}")

        def reader() -> None:
            with httpx.Client(base_url=base, timeout=60) as c:
                while not stop.is_set():
                    for url in ("/api/v1/series?country=PK&since=2024-01-20T00:00:00Z&until=2024-01-27T00:00:00Z",
                                "/api/v1/incidents?country=PK", "/"):
                        t = time.perf_counter()
                        r = c.get(url, headers={"accept": "application/json" if "api" in url else "text/html"})
                        read_lat.append(time.perf_counter() - t)
                        if r.status_code != 200:
                            errors.append(f"read {url} {r.status_code}: {r.text[:200]}")

        def sampler() -> None:
            while not stop.is_set():
                rss.append(proc.memory_info().rss)
                time.sleep(0.25)

        readers = [threading.Thread(target=reader) for _ in range(READERS)] + [threading.Thread(target=sampler)]
        for t in readers:
            t.start()
        t0 = time.perf_counter()
        ups = [threading.Thread(target=uploader, args=(p,)) for p in range(PROBES)]
        for t in ups:
            t.start()
        for t in ups:
            t.join(timeout=300)
        elapsed = time.perf_counter() - t0
        stop.set()
        for t in readers:
            t.join(timeout=60)
        total = PROBES * BATCHES_PER_PROBE * BATCH
        stats = httpx.get(f"{base}/healthz", timeout=10).json()
        p95_up = statistics.quantiles(upload_lat, n=20)[18]
        p95_read = statistics.quantiles(read_lat, n=20)[18]
        half = len(rss) // 2
        print(f"\nload: {total} measurements in {elapsed:.1f}s = {total / elapsed:,.0f}/s; "
              f"upload p95 {p95_up * 1000:.0f} ms; read p95 {p95_read * 1000:.0f} ms over {len(read_lat)} reads; "
              f"RSS {max(rss[:half]) / 2**20:.0f} -> {max(rss[half:]) / 2**20:.0f} MiB")
        assert not errors, errors[:5]
        assert stats["measurements"] == total
        assert len(read_lat) >= 10
        assert max(rss[half:]) < 1.5 * max(rss[:half]) + 64 * 2**20, "server memory grows under steady load"
    finally:
        server.terminate()
        try:
            _, err = server.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            _, err = server.communicate()
    assert "127.0.0.1" not in (err or "").replace(f"127.0.0.1:{port}", ""), "client addresses are never logged"
