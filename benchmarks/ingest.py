"""Ingest speed and memory, against the bare JSON-parse ceiling measured in the same run.

    python benchmarks/ingest.py [--n 200000] [--big 1000000]

Prints: measurements/s for `observatory ingest` (parse + validate + classify + store), measurements/s for bare
JSON parsing of the same file (msgspec, the decoder ingest itself uses: the ceiling), their ratio, and peak RSS
of an ingest of N and of BIG measurements (memory must stay flat: within 2x).
Targets (issue 2): ratio >= 0.5; peak RSS(BIG) <= 2 x peak RSS(N).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import msgspec

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "tests/data/ooni/netem_qa/successWithHTTPS/measurement.json"


def write_measurements(path: Path, n: int, seed: int = 1) -> int:
    """n web_connectivity measurements shaped like real ones (a real OONI document with varied fields)."""
    base = json.loads(TEMPLATE.read_text())
    base.pop("probe_ip", None)
    rnd = random.Random(seed)
    hosts = ["https://www.facebook.com/", "https://x.com/", "https://www.youtube.com/",
             "https://www.instagram.com/", "https://web.whatsapp.com/", "https://www.wikipedia.org/"]
    enc = msgspec.json.Encoder()
    size = 0
    with open(path, "wb") as fh:
        for i in range(n):
            base["measurement_uid"] = f"20240120{i:012d}_webconnectivity_{rnd.getrandbits(64):016x}"
            base["measurement_start_time"] = f"2024-01-{15 + i % 7:02d} {i % 24:02d}:{i % 60:02d}:{i % 59:02d}"
            base["probe_cc"] = "PK"
            base["probe_asn"] = f"AS{[17557, 45669, 24499, 59257][i % 4]}"
            base["input"] = hosts[i % len(hosts)]
            base["report_id"] = f"r{rnd.getrandbits(48):012x}"
            line = enc.encode(base) + b"\n"
            size += len(line)
            fh.write(line)
    return size


def bare_parse_rate(path: Path) -> float:
    dec = msgspec.json.Decoder()
    t0 = time.perf_counter()
    n = 0
    with open(path, "rb") as fh:
        for line in fh:
            dec.decode(line)
            n += 1
    return n / (time.perf_counter() - t0)


_CHILD = """
import resource, sys, time
from observatory.ingest import ingest_paths
from observatory.store.duckdb import DuckDBStore
store = DuckDBStore(sys.argv[2])
t0 = time.perf_counter()
s = ingest_paths(store, [sys.argv[1]])
dt = time.perf_counter() - t0
store.close()
print(s.accepted, dt, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def ingest_run(path: Path, db: Path) -> tuple[int, float, int]:
    out = subprocess.run([sys.executable, "-c", _CHILD, str(path), str(db)],
                         capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1].split()
    return int(out[0]), float(out[1]), int(out[2])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--big", type=int, default=1_000_000, help="0 to skip the memory-flatness run")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        f = d / "m.jsonl"
        size = write_measurements(f, args.n)
        print(f"file: {args.n:,} web_connectivity measurements, {size / args.n:.0f} bytes each")
        print(f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (other work shares them)")
        parse = bare_parse_rate(f)
        accepted, secs, rss = ingest_run(f, d / "a.duckdb")
        rate = accepted / secs
        print(f"bare JSON parse (ceiling): {parse:,.0f} measurements/s")
        print(f"observatory ingest:        {rate:,.0f} measurements/s  ({accepted:,} stored in {secs:.1f} s)")
        print(f"ratio ingest/parse:        {rate / parse:.2f}  (target >= 0.50)")
        print(f"peak RSS, {args.n:,}:          {rss / 1024:.0f} MiB")
        if args.big:
            fb = d / "big.jsonl"
            write_measurements(fb, args.big, seed=2)
            f.unlink()
            n_big, secs_big, rss_big = ingest_run(fb, d / "b.duckdb")
            print(f"peak RSS, {args.big:,}:        {rss_big / 1024:.0f} MiB  ({n_big / secs_big:,.0f} measurements/s)")
            print(f"memory ratio big/small:    {rss_big / rss:.2f}  (target <= 2.0)")
        print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
