"""Simulator speed and memory, and the 500,000-measurement ingest, against baselines measured in the same run.

    python benchmarks/simulate.py [--scenario benchmarks/scenarios/big-pk-week.toml] [--no-ingest]

Prints:
- measurements/s generated on one core (the whole scenario, lines assembled, nothing written), and the same
  for bare msgspec encoding of the same number of measurement dicts (what a dict-building generator would pay
  for JSON alone, before drawing anything): the ratio says how much the byte templates buy;
- measurements/s writing a .jsonl.gz file (gzip level 1 included);
- peak RSS of generating one day and of the whole week in a fresh process (memory must stay flat: within 1.5x);
- the ingest of the whole simulated week (>= 500,000 measurements, issue 3) into a temporary DuckDB store:
  read / accepted / duplicates / rejected, measurements/s and the stored count.
Targets (issue 3): >= 50,000 measurements/s generated; ingest of >= 500,000 measurements works.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import msgspec

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from observatory.simulate import Generator, load_scenario, write_simulation  # noqa: E402

DEFAULT = ROOT / "benchmarks/scenarios/big-pk-week.toml"


def peak_rss_mb() -> float:
    """This process's peak RSS. VmHWM, not ru_maxrss: after fork+exec ru_maxrss keeps the parent's peak."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(scenario_path: str, days: float) -> None:
    """Generate `days` of the scenario in this (fresh) process; print count and peak RSS as JSON."""
    sc = load_scenario(scenario_path)
    sc = replace(sc, end=min(sc.end, sc.start + timedelta(days=days)),
                 events=tuple(e for e in sc.events if e.end <= sc.start + timedelta(days=days)))
    n = 0
    for _ in Generator(sc).lines():
        n += 1
    print(json.dumps({"measurements": n, "peak_rss_mb": peak_rss_mb()}))


def rss_of(scenario: str, days: float) -> dict[str, float]:
    out = subprocess.run([sys.executable, __file__, "--child", scenario, "--days", str(days)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenario", default=str(DEFAULT))
    ap.add_argument("--no-ingest", action="store_true", help="skip the ingest of the whole week")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--days", type=float, default=1.0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.days)
        return

    sc = load_scenario(args.scenario)
    print(f"scenario {sc.name}: {sum(n.probes for c in sc.countries for n in c.networks)} probes, "
          f"{(sc.end - sc.start).days} days, every {sc.interval}, {len(sc.targets)} targets")

    # 1. generation, one core, nothing written. CPU time of this process is the fair "one core" figure on a
    # shared machine; wall time is printed too.
    t0, c0 = time.perf_counter(), time.process_time()
    n = 0
    sample: list[bytes] = []
    for _, line in Generator(sc).lines():
        n += 1
        if n % 97 == 0 and len(sample) < 20000:
            sample.append(line)
    gen_s, gen_cpu = time.perf_counter() - t0, time.process_time() - c0
    gen_rate = n / gen_cpu
    print(f"generate      {n:>10,} measurements in {gen_cpu:6.1f}s CPU = {gen_rate:>9,.0f}/s  "
          f"(wall {gen_s:.1f}s = {n / gen_s:,.0f}/s; target >= 50,000/s on one core)", flush=True)

    # 2. baseline: bare msgspec encoding of the same number of measurement dicts (decoded real lines)
    dicts = [msgspec.json.decode(s) for s in sample]
    enc = msgspec.json.Encoder()
    c0 = time.process_time()
    for i in range(n):
        enc.encode(dicts[i % len(dicts)])
    base_cpu = time.process_time() - c0
    base_rate = n / base_cpu
    print(f"baseline      {n:>10,} msgspec.encode(dict) in {base_cpu:6.1f}s CPU = {base_rate:>9,.0f}/s  "
          f"(generator / baseline = {gen_rate / base_rate:.2f})", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "sim.jsonl.gz"
        s = write_simulation(sc, out=out, truth_path=Path(tmp) / "truth.json")
        print(f"write .gz     {s.measurements:>10,} measurements in {s.seconds:6.1f}s = {s.per_second:>9,.0f}/s  "
              f"({out.stat().st_size / 1e6:,.0f} MB; wall time)", flush=True)

        # 3. memory: one day vs the whole scenario, each in a fresh process
        day, week = rss_of(args.scenario, 1), rss_of(args.scenario, (sc.end - sc.start).total_seconds() / 86400)
        print(f"peak RSS      1 day: {day['peak_rss_mb']:.0f} MB ({day['measurements']:,.0f} measurements); "
              f"whole: {week['peak_rss_mb']:.0f} MB ({week['measurements']:,.0f}); "
              f"ratio {week['peak_rss_mb'] / day['peak_rss_mb']:.2f} (flat: <= 1.5)", flush=True)

        if args.no_ingest:
            return
        # 4. ingest the whole simulated week into a DuckDB store
        from observatory.ingest import ingest_paths
        from observatory.store.duckdb import DuckDBStore

        store = DuckDBStore(str(Path(tmp) / "obs.duckdb"))
        try:
            t0 = time.perf_counter()
            summary = ingest_paths(store, [out], rejects_path=Path(tmp) / "rejects.jsonl")
            ing_s = time.perf_counter() - t0
            stored = store.count()
        finally:
            store.close()
        ok = summary.read >= 500_000 and summary.rejected == 0 and stored == summary.accepted
        print(f"ingest        read {summary.read:,}  accepted {summary.accepted:,}  duplicates "
              f"{summary.duplicates:,}  rejected {summary.rejected:,}  in {ing_s:.1f}s = "
              f"{summary.read / ing_s:,.0f}/s; stored {stored:,}  "
              f"{'OK' if ok else 'FAILED'} (>= 500,000 read, none rejected)")
        if not ok:
            sys.exit(1)


if __name__ == "__main__":
    main()
