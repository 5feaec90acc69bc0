"""DuckDB and ClickHouse (chdb, in-process) side by side: ingest, detection, incremental detection, bytes on disk.

    python benchmarks/store.py [--rows 1000000] [--batch 50000] [--dir DIR] [--json]
    python benchmarks/store.py --rows 10000000          # the issue's figure

The same synthetic stream goes into both stores (tests/store_world.py: dedicated probes in 10 countries x 4
networks x 2 regions measuring 5 platforms every 15 minutes for 2 days, about 1.7 KB of web_connectivity JSON
per measurement, a three-hour block in two countries). Rows are generated once per batch and handed to each
store's insert(); only the insert is timed. Then, for each store:

* full detection pass: `run_detection(store, full=True)` (series aggregation in the store + the pure detector
  + reconciling and saving incidents); the series query alone is timed too;
* incremental pass: the last hour (held back from the ingest) is inserted, then `run_detection(store)` reads
  what changed since the watermark (with its 26-hour trailing window);
* bytes on disk per measurement: the DuckDB file after CHECKPOINT; ClickHouse's active parts after OPTIMIZE.

The incidents each store ends with are compared as JSON: they must be identical.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from store_world import T0, Event, Net, World  # noqa: E402

from observatory.service import run_detection, stored_incidents  # noqa: E402
from observatory.store.clickhouse import ClickHouseStore  # noqa: E402
from observatory.store.duckdb import DuckDBStore  # noqa: E402

COUNTRIES = ("PK", "IR", "TR", "RU", "CN", "EG", "ET", "IN", "MM", "VE")
CYCLES = 192  # two days of 15-minute cycles
HELD_BACK = 4  # the last hour arrives after the full pass


def world_for(rows: int) -> World:
    platforms = ("twitter", "facebook", "youtube", "whatsapp", "control")
    nets_per_country = 4
    probes = max(3, math.ceil(rows / (CYCLES * len(platforms) * len(COUNTRIES) * nets_per_country)))
    nets = [Net(cc, 64500 + 10 * i + j, probes) for i, cc in enumerate(COUNTRIES) for j in range(nets_per_country)]
    block = T0 + timedelta(days=1, hours=14)
    events = [Event("PK", block, block + timedelta(hours=3)),
              Event("IR", block + timedelta(hours=2), block + timedelta(hours=5), platforms=("whatsapp",),
                    technique="dns_tampering")]
    return World(nets=nets, cycles=CYCLES, platforms=platforms, events=events, seed=3)


def batches(world: World, first: int, last: int, size: int) -> Any:
    buf = []
    for row in world.rows(first_cycle=first, last_cycle=last):
        buf.append(row)
        if len(buf) >= size:
            yield buf
            buf = []
    if buf:
        yield buf


def ingest(stores: dict[str, Any], world: World, first: int, last: int, size: int) -> dict[str, float]:
    spent = dict.fromkeys(stores, 0.0)
    for batch in batches(world, first, last, size):
        for name, store in stores.items():
            t0 = time.perf_counter()
            store.insert(batch)
            spent[name] += time.perf_counter() - t0
    return spent


def bytes_on_disk(name: str, store: Any, path: Path) -> tuple[int, dict[str, int]]:
    if name == "duckdb":
        store._con.execute("CHECKPOINT")
        return path.stat().st_size + (path.with_suffix(path.suffix + ".wal").stat().st_size
                                      if path.with_suffix(path.suffix + ".wal").exists() else 0), {}
    store._command("OPTIMIZE TABLE {db}.measurements FINAL")
    total = int(store._scalar("SELECT sum(bytes_on_disk) FROM system.parts WHERE database = {d:String} "
                              "AND active", {"d": store._database}) or 0)
    cols = {r[0]: int(r[1]) for r in store._rows(
        "SELECT name, data_compressed_bytes FROM system.columns WHERE database = {d:String} "
        "AND table = 'measurements'", {"d": store._database})}
    return total, cols


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--batch", type=int, default=50_000)
    ap.add_argument("--dir", default=None, help="where the stores go (default: a temporary directory)")
    ap.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    args = ap.parse_args()

    world = world_for(args.rows)
    n_total = world.size()
    n_first = n_total * (CYCLES - HELD_BACK) // CYCLES
    work = Path(args.dir or tempfile.mkdtemp(prefix="obs-store-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    duck_path = work / "bench.duckdb"
    for p in (duck_path, work / "chdb"):
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()
    stores: dict[str, Any] = {
        "duckdb": DuckDBStore(str(duck_path)),
        "clickhouse": ClickHouseStore(f"chdb://{work / 'chdb'}?database=bench"),
    }
    print(f"{n_total:,} measurements ({n_first:,} then {n_total - n_first:,}), "
          f"{len(world.nets)} networks x {world.nets[0].probes} probes, in {work}", file=sys.stderr)

    out: dict[str, Any] = {"rows": n_total, "stores": {}}
    t_ingest = ingest(stores, world, 0, CYCLES - HELD_BACK, args.batch)
    for name, store in stores.items():
        r: dict[str, Any] = {"ingest_rows_per_s": round(n_first / t_ingest[name])}
        t0 = time.perf_counter()
        cells = store.series(since=T0, until=T0 + timedelta(days=3), bucket_seconds=300)
        r["series_pass_s"] = round(time.perf_counter() - t0, 2)
        r["cells"] = len(cells)
        del cells
        t0 = time.perf_counter()
        full = run_detection(store, full=True)
        r["full_detection_s"] = round(time.perf_counter() - t0, 2)
        r["full_detected"] = full.detected
        out["stores"][name] = r
        print(name, r, file=sys.stderr)

    t_late = ingest(stores, world, CYCLES - HELD_BACK, CYCLES, args.batch)
    incidents = {}
    for name, store in stores.items():
        r = out["stores"][name]
        r["late_ingest_s"] = round(t_late[name], 2)
        t0 = time.perf_counter()
        inc = run_detection(store)
        r["incremental_detection_s"] = round(time.perf_counter() - t0, 2)
        r["incremental_cells"] = inc.cells
        incidents[name] = [i.to_json() for i in stored_incidents(store)]
        r["incidents"] = len(incidents[name])
        assert store.count() == n_total, (name, store.count())
        size, cols = bytes_on_disk(name, store, duck_path)
        r["bytes_on_disk"] = size
        r["bytes_per_measurement"] = round(size / n_total, 1)
        if cols:
            raw = cols.get("raw", 0)
            r["bytes_per_measurement_raw_document"] = round(raw / n_total, 1)
            r["bytes_per_measurement_other_columns"] = round((sum(cols.values()) - raw) / n_total, 1)
        print(name, r, file=sys.stderr)
    out["identical_incidents"] = incidents["duckdb"] == incidents["clickhouse"]
    out["incidents"] = [(i["country"], i["kind"], i["platforms"], i["start"], i["end"]) for i in incidents["duckdb"]]
    for store in stores.values():
        store.close()
    if args.json:
        print(json.dumps(out))
    else:
        cols = ["ingest_rows_per_s", "series_pass_s", "full_detection_s", "incremental_detection_s",
                "bytes_per_measurement"]
        print(f"{n_total:,} measurements; identical incidents on both stores: {out['identical_incidents']}")
        print(f"{'':12}" + "".join(f"{c:>26}" for c in cols))
        for name, r in out["stores"].items():
            print(f"{name:12}" + "".join(f"{r[c]:>26}" for c in cols))
        for i in out["incidents"]:
            print("  incident:", *i)
    if not args.dir:
        shutil.rmtree(work, ignore_errors=True)
    if not out["identical_incidents"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
