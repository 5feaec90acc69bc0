"""Ingest speed and memory, against the bare JSON-parse ceiling measured in the same run.

    python benchmarks/ingest.py [--n 200000] [--small 100000] [--big 1000000]

Prints: measurements/s for `observatory ingest` (parse + validate + classify + store), measurements/s for bare
JSON parsing of the same file (msgspec, the decoder ingest itself uses: the ceiling), their ratio, and peak RSS
of an ingest of N, of SMALL and of BIG measurements (memory must stay flat: within 2x).
Targets (issue 2): ratio >= 0.5; peak RSS(BIG) <= 2 x peak RSS(SMALL).
Also CPU per measurement (the ingesting process and its pool, against the bare parse's): the ratio a core, which
the other work on a shared machine cannot move, and what it allows at most when every core is free for the pool.

Measured on the shared 2-core machine (load 2.5-3.0): before the pool's workers read their own ranges and compressed
(bf86838) ratio 0.33, 150 us of CPU a measurement against 26 us for the bare parse; after (3dd834f) ratio 0.52 and
0.46, 80 and 94 us against 22 us (at most 0.55 and 0.48 on two free cores); peak RSS 450 MiB (200k) and 541 MiB (1M).
Over eleven runs at load 2.6-5.8 the ratio ranged 0.15-0.52 with the other work: when the pool gets about one core
it is the ratio a core, 0.24-0.28.
On a quiet machine (load 0.1-1.1, documents of 7,198 bytes), three runs: 0.47 (107 us against 27 us, before the
Struct Measurement), then 0.52 (96 us against 26 us) and 0.47 (81 us against 20 us): the ceiling with both cores
free for the pool is 0.50-0.54, so the target is met only on some runs.
Then (056fc30-67bea8a, load 0.2-2.5) block pages found in one Aho-Corasick pass (13 -> 4 us), the zstd dictionary
learnt before the pool starts (no first batches compressed by the parent), checkpoints at a 64 MB log (the
writer's CPU 19-23 -> 13 us): six runs 0.58, 0.67, 0.66, 0.61, 0.60, 0.54 (76-94 us against 22-34 us); peak
RSS 278/254/252 MiB for 100k against 519/467/477 MiB for 1M, x1.87, x1.84, x1.89. What still grows with the
file is DuckDB's cache of the table's blocks (131 MiB at 1M, bounded by the store's memory limit, 4 GB unless
$OBSERVATORY_DUCKDB_MEMORY says otherwise).
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


def bare_parse_rate(path: Path) -> tuple[float, float]:
    """Measurements/s, and seconds of CPU a measurement."""
    dec = msgspec.json.Decoder()
    t0, c0 = time.perf_counter(), time.process_time()
    n = 0
    with open(path, "rb") as fh:
        for line in fh:
            dec.decode(line)
            n += 1
    return n / (time.perf_counter() - t0), (time.process_time() - c0) / n


_CHILD = """
import resource, sys, time
from observatory.ingest import ingest_paths
from observatory.settings import load_settings
from observatory.store import store_settings
from observatory.store.duckdb import DuckDBStore
def cpu(who):
    r = resource.getrusage(who)
    return r.ru_utime + r.ru_stime
store = DuckDBStore(sys.argv[2], settings=store_settings(load_settings()))  # $OBSERVATORY_DUCKDB_MEMORY honoured
t0, c0 = time.perf_counter(), cpu(resource.RUSAGE_SELF)
s = ingest_paths(store, [sys.argv[1]])
dt = time.perf_counter() - t0
c = cpu(resource.RUSAGE_SELF) - c0 + cpu(resource.RUSAGE_CHILDREN)  # the pool's workers have ended
store.close()
print(s.accepted, dt, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, c)
"""


def ingest_run(path: Path, db: Path) -> tuple[int, float, int, float]:
    """Measurements stored, seconds, peak RSS of the ingesting process (KiB), CPU seconds (it and its pool)."""
    out = subprocess.run([sys.executable, "-c", _CHILD, str(path), str(db)],
                         capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1].split()
    return int(out[0]), float(out[1]), int(out[2]), float(out[3])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200_000, help="measurements of the file whose ingest rate is measured")
    ap.add_argument("--small", type=int, default=100_000, help="the smaller file of the memory-flatness pair")
    ap.add_argument("--big", type=int, default=1_000_000, help="the bigger one; 0 to skip the memory-flatness runs")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        f = d / "m.jsonl"
        size = write_measurements(f, args.n)
        print(f"file: {args.n:,} web_connectivity measurements, {size / args.n:.0f} bytes each")
        print(f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (other work shares them)")
        parse, parse_cpu = bare_parse_rate(f)
        accepted, secs, rss, cpu = ingest_run(f, d / "a.duckdb")
        f.unlink()
        rate = accepted / secs
        print(f"bare JSON parse (ceiling): {parse:,.0f} measurements/s")
        print(f"observatory ingest:        {rate:,.0f} measurements/s  ({accepted:,} stored in {secs:.1f} s)")
        print(f"ratio ingest/parse:        {rate / parse:.2f}  (target >= 0.50)")
        per_core = parse_cpu * accepted / cpu
        cores = os.cpu_count() or 1
        print(f"CPU per measurement:       ingest {cpu / accepted * 1e6:.0f} us (parent + pool), bare parse "
              f"{parse_cpu * 1e6:.0f} us: ratio {per_core:.2f} a core, "
              f"at most {per_core * cores:.2f} on {cores} free cores")
        print(f"peak RSS, {args.n:,}:{' ' * (13 - len(f'{args.n:,}'))}{rss / 1024:.0f} MiB")
        if args.big:
            peaks = []
            for n, seed in ((args.small, 3), (args.big, 2)):
                fn = d / f"{n}.jsonl"
                write_measurements(fn, n, seed=seed)
                stored, secs_n, rss_n, _ = ingest_run(fn, d / f"{n}.duckdb")
                fn.unlink()
                peaks.append(rss_n)
                print(f"peak RSS, {n:,}:{' ' * (13 - len(f'{n:,}'))}{rss_n / 1024:.0f} MiB  "
                      f"({stored / secs_n:,.0f} measurements/s)")
            print(f"memory ratio {args.big:,}/{args.small:,}: {peaks[1] / peaks[0]:.2f}  (target <= 2.0)")
        print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
