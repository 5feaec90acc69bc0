"""Detection quality against the simulator's ground truth, and detection speed at scale.

For every scenario under scenarios/ (not scenarios/lab/) and both probe populations: simulate -> ingest into
a temporary DuckDB -> detect (the same `run_detection` the CLI uses) -> match to the truth and score.
Prints per scenario and overall: recall, precision, time from onset to confirmation, start/end errors,
scope and technique accuracy, false incidents per country-week of noise, and the share of starts and ends
within 15 minutes, with the misses the data allowed (the measurements bracketing the true edge were at most
30 minutes apart) told from those they did not.

One seed is one draw of the noise, the volunteers' hours and the late uploads: `--seeds N` scores every
scenario over its own seed and the N-1 after it, the check that a rule holds beyond the draw it was built on.
`--worlds N` goes further: each of N runs per scenario and population also draws the simulator's modelling
choices from its families (observatory/simulate/families.py: volunteers' hours, churn, correlated faults,
late and duplicate uploads, clock skew, test versions, probe software), and the figures are reported across
all worlds and per option of each family, so that no single set of assumptions is the judge.

conf (conf50) is `confirmed_at - truth.start`, where `confirmed_at` is the time of the measurement that completed
the evidence: it assumes every measurement is in the store the moment it is taken. Volunteers upload late (the
`uploads` family: up to 24 or 72 hours), and a live observatory confirms only what has arrived. `--arrival` (with
`--worlds`) adds conf50@arrival: each world's lines are replayed in upload order into one store, detection runs
at cut-offs from each matched incident's `confirmed_at` onward (+0, 5, 10 ... 1440 minutes, benchmarks/arrival.py),
and an incident counts as confirmed at the first cut-off at which the store holds it confirmed or ended. It is never
below conf50; the gap is what late uploads (and the wait for a bucket's data) cost a live observatory. Its
resolution is the cut-off grid (a hit at +5 may have been possible at +1).

    .venv/bin/python benchmarks/detection.py                       # every scenario, both populations
    .venv/bin/python benchmarks/detection.py --seeds 20 --activity volunteer
    .venv/bin/python benchmarks/detection.py --worlds 3                 # 3 random worlds per scenario
    .venv/bin/python benchmarks/detection.py --worlds 1 --arrival       # with conf50@arrival
    .venv/bin/python benchmarks/detection.py --scenario tr-single-isp-dns-block --activity volunteer -v
    .venv/bin/python benchmarks/detection.py --scale               # 10 M measurements: full and incremental
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from datetime import UTC, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.arrival import Arrivals, read_lines, replay  # noqa: E402
from observatory.detect.score import EDGE_TARGET_MINUTES, Score, sampling_gap, score  # noqa: E402
from observatory.incident import Incident  # noqa: E402
from observatory.ingest import ingest_paths  # noqa: E402
from observatory.service import run_detection, stored_incidents  # noqa: E402
from observatory.simulate import Model, draw_model, load_scenario, write_simulation  # noqa: E402
from observatory.simulate.families import DIMENSIONS  # noqa: E402
from observatory.simulate.signals import outside_signals  # noqa: E402
from observatory.store import Store, open_store  # noqa: E402

SCENARIOS = ROOT / "scenarios"
ACTIVITIES = ("dedicated", "volunteer")


@dataclass
class Result:
    scenario: str
    activity: str
    score: Score
    detected: list[Incident]
    truth: list[Incident]
    measurements: int
    seconds: float
    arrival: list[float] | None = None  # with --arrival: minutes from onset to confirmation at arrival


def scenario_paths() -> list[Path]:
    return sorted(p for p in SCENARIOS.glob("*.toml"))


def country_weeks(scenario_path: Path) -> float:
    sc = load_scenario(scenario_path)
    weeks = (sc.end - sc.start).total_seconds() / (7 * 86400)  # type: ignore[operator]
    return len(sc.countries) * weeks


def evaluate(scenario_path: Path, activity: str, workdir: Path, seed_offset: int = 0,
             model: Model | None = None, arrival: bool = False) -> Result:
    """Simulate, ingest, detect and score one scenario with one probe population (and the scenario's seed
    moved by `seed_offset`: the same world and events, other random draws; `model`: the simulator's
    modelling choices, drawn from its families; `arrival`: also replay the lines in upload order for the
    confirmation time at arrival, benchmarks/arrival.py)."""
    sc = load_scenario(scenario_path)
    sc = replace(sc, seed=sc.seed + seed_offset)
    data = workdir / f"{sc.name}.{activity}.jsonl"
    truth_path = workdir / f"{sc.name}.truth.json"
    uploads: list[float] | None = [] if arrival else None
    write_simulation(sc, out=data, truth_path=truth_path, activity=activity, model=model, upload_times=uploads)
    truth = [Incident.from_json(d) for d in json.loads(truth_path.read_text())]
    db = workdir / f"{sc.name}.{activity}.{sc.seed}.duckdb"
    store = open_store(str(db))
    try:
        summary = ingest_paths(store, [data], rejects_path=workdir / "rejects.jsonl")
        # the world's outside-in series (none unless its model draws them), stored as `signals import` would
        signals = outside_signals(sc, model or Model())
        if signals:
            store.insert_signals(signals)
        t0 = time.perf_counter()
        run_detection(store, full=True)
        seconds = time.perf_counter() - t0
        detected = stored_incidents(store)
        gaps = [edge_gaps(store, t) for t in truth]
    finally:
        store.close()
    db.unlink()
    s = score(detected, truth, country_weeks=country_weeks(scenario_path), gaps=gaps)
    late = None if uploads is None else replay(read_lines(data), uploads, truth, detected, workdir, signals)
    return Result(sc.name, activity, s, detected, truth, summary.accepted, seconds, late)


def edge_gaps(store: Store, truth: Incident) -> tuple[float | None, float | None]:
    """The sampling gaps around a true incident's start and end: between the measurements of its country,
    networks, regions and platforms (all of them where the truth names none) that bracket each edge."""
    where: list[str] = ["true"]
    args: list[object] = []
    for column, values in (("cc", [truth.country] if truth.country else []),
                           ("asn", list(truth.asns)),
                           ("region", list(truth.regions)), ("platform", list(truth.platforms))):
        if values:
            where.append(f"{column} IN ({', '.join('?' * len(values))})")
            args += values
    con = store._con  # type: ignore[attr-defined]  # the benchmark's own shortcut, not an API
    rows = con.execute(f"SELECT DISTINCT t FROM measurements WHERE {' AND '.join(where)} ORDER BY t", args).fetchall()
    times = [r[0].replace(tzinfo=UTC) for r in rows]
    start = sampling_gap(truth.start, times)
    return start, (sampling_gap(truth.end, times) if truth.end is not None else None)


def _row(name: str, s: Score) -> str:
    m = s.summary()

    def f(x: object) -> str:
        return "-" if x is None else "open" if x == math.inf else str(x)

    return (f"{name:42s} {m['truth']:>3} {m['detected']:>3} {m['recall']:>6} {m['precision']:>6} "
            f"{f(m['confirm_median_min']):>7} {f(m['confirm_worst_min']):>7} {f(m['start_err_worst_min']):>7} "
            f"{f(m['end_err_worst_min']):>7} {f(m['scope_acc']):>6} {f(m['technique_acc']):>6} "
            f"{m['false_per_country_week']:>6} {m['false_national']:>4} {m['outage_as_restriction']:>4} "
            f"{f(m['edges_within_target']):>6} {m['avoidable_edge_misses']:>5}")


HEADER = (f"{'scenario / population':42s} {'tru':>3} {'det':>3} {'recall':>6} {'prec':>6} {'conf50':>7} "
          f"{'confMax':>7} {'startE':>7} {'endE':>7} {'scope':>6} {'tech':>6} {'FP/cw':>6} {'natF':>4} {'o->r':>4} "
          f"{'edge<=':>6} {'avoid':>5}")


def quality(names: list[str] | None, activities: tuple[str, ...], verbose: bool, seeds: int = 1) -> dict[str, Score]:
    totals = {a: Score() for a in activities}
    target = f"{EDGE_TARGET_MINUTES:g}"
    print("times in minutes (scenario time); conf = onset to confirmation; startE/endE = worst error;")
    print("FP/cw = false incidents per country-week; natF = false national incidents; o->r = outage as restriction;")
    print("endE 'open': an incident still open at the end of the data although the truth had ended;")
    print(f"edge<= = share of starts and ends within {target} min of the truth; avoid = edges missing that although")
    print(f"the data bracketing them were at most {2 * EDGE_TARGET_MINUTES:g} min apart (the misses an estimator "
          "could have avoided)")
    if seeds > 1:
        print(f"each row: the scenario's own seed and the {seeds - 1} after it, together")
    print(HEADER)
    with tempfile.TemporaryDirectory(prefix="obs-bench-") as tmp:
        for path in scenario_paths():
            if names and path.stem not in names:
                continue
            for activity in activities:
                row, measured, seconds = Score(), 0, 0.0
                for offset in range(seeds):
                    r = evaluate(path, activity, Path(tmp), offset)
                    row.add(r.score)
                    measured += r.measurements
                    seconds += r.seconds
                    if verbose:
                        _explain(r, offset)
                totals[activity].add(row)
                print(_row(f"{path.stem} / {activity}", row) + f"   ({measured:,} meas, detect {seconds:.1f}s)",
                      flush=True)
    for activity, s in totals.items():
        print(_row(f"OVERALL / {activity}", s))
    return totals


def _explain(r: Result, offset: int) -> None:
    if r.score.false_ids:
        print(f"   seed +{offset}: false incidents {r.score.false_ids}")
    print(f"   seed +{offset}: start errors {r.score.start_error_minutes} (gaps {r.score.start_gap_minutes}), "
          f"end errors {r.score.end_error_minutes} (gaps {r.score.end_gap_minutes})")
    for inc in r.detected:
        print("   detected", inc.id, inc.scope, ",".join(inc.platforms), ",".join(inc.techniques),
              inc.start.isoformat(), inc.end and inc.end.isoformat(), inc.status,
              inc.confirmed_at and inc.confirmed_at.isoformat(), inc.evidence.get("probes"))
    for t in r.truth:
        print("   truth   ", t.country, t.kind, t.scope, ",".join(t.platforms), t.start.isoformat(),
              t.end and t.end.isoformat())


def _world_header(arrival: bool = False) -> str:
    late = f" {'conf50@arrival':>14}" if arrival else ""
    return (f"{'':42s} {'worlds':>6} {'tru':>4} {'det':>4} {'recall':>6} {'prec':>6} {'natF':>4} "
            f"{'start50':>7} {'scope':>6} {'tech':>6} {'conf50':>6}{late} {'FP/cw':>6}")


def _world_row(name: str, worlds: int, s: Score, late: Arrivals | None = None, key: tuple[str, ...] = ()) -> str:
    m = s.summary()

    def f(x: object) -> str:
        return "-" if x is None else str(x)

    arrival = "" if late is None else f" {f(late.median(key)):>14}"
    return (f"{name:42s} {worlds:>6} {m['truth']:>4} {m['detected']:>4} {m['recall']:>6} {m['precision']:>6} "
            f"{m['false_national']:>4} {f(m['start_err_median_min']):>7} {f(m['scope_acc']):>6} "
            f"{f(m['technique_acc']):>6} {f(m['confirm_median_min']):>6}{arrival} {m['false_per_country_week']:>6}")


def world_seed(scenario_seed: int, k: int) -> int:
    """The family draw of a scenario's k-th world: different scenarios get different combinations."""
    return scenario_seed * 7919 + k


def worlds(names: list[str] | None, activities: tuple[str, ...], n: int, verbose: bool,
           json_out: Path | None = None, arrival: bool = False) -> dict[str, Score]:
    """Every scenario x population x N worlds, each with its own noise seed and its own draw of the
    modelling choices; figures across all worlds, per family option and per scenario (`arrival`: with the
    confirmation time at arrival beside conf50, benchmarks/arrival.py)."""
    late = Arrivals() if arrival else None
    header = _world_header(arrival)
    overall = {a: Score() for a in activities}
    per_option: dict[tuple[str, str, str], Score] = {}
    per_option_n: dict[tuple[str, str, str], int] = {}
    per_scenario: dict[tuple[str, str], Score] = {}
    print(f"{n} world(s) per scenario and population; each world: its own noise seed and modelling choices")
    print("natF = false national incidents; start50 = median |start error| (min); conf50 = median minutes from "
          "onset to confirmation; FP/cw = false incidents per country-week")
    if late is not None:
        print("conf50@arrival = the same, counting only measurements uploaded by then (the data a live observatory "
              "has; benchmarks/arrival.py)")
    print(header)
    with tempfile.TemporaryDirectory(prefix="obs-worlds-") as tmp:
        for path in scenario_paths():
            if names and path.stem not in names:
                continue
            seed = load_scenario(path).seed
            for activity in activities:
                row = Score()
                for k in range(n):
                    model = draw_model(world_seed(seed, k), activity)
                    r = evaluate(path, activity, Path(tmp), k, model, arrival)
                    row.add(r.score)
                    for dim, option in model.options.items():
                        key = (activity, dim, option)
                        per_option.setdefault(key, Score()).add(r.score)
                        per_option_n[key] = per_option_n.get(key, 0) + 1
                        if late is not None and r.arrival is not None:
                            late.add(key, r.arrival)
                    if late is not None and r.arrival is not None:
                        late.add((path.stem, activity), r.arrival)
                        late.add((activity,), r.arrival)
                    if verbose:
                        print(f"   world {k}: {model.label}")
                        _explain(r, k)
                per_scenario[(path.stem, activity)] = row
                overall[activity].add(row)
                print(_world_row(f"{path.stem} / {activity}", n, row, late, (path.stem, activity)), flush=True)
    print()
    print("ACROSS ALL WORLDS")
    print(header)
    for activity, s in overall.items():
        print(_world_row(f"OVERALL / {activity}", len(per_scenario) // max(1, len(activities)) * n, s, late,
                         (activity,)))
    print()
    print("PER FAMILY OPTION (every world drawn with that option, all scenarios)")
    print(header)
    for activity in activities:
        for dim, options in DIMENSIONS.items():
            for option in options:
                key = (activity, dim, option)
                if key in per_option:
                    print(_world_row(f"{activity} {dim}={option}", per_option_n[key], per_option[key], late, key))
    if json_out is not None:
        def more(key: tuple[str, ...]) -> dict[str, float | int | None]:
            return {} if late is None else late.summary(key)

        doc = {
            "worlds_per_scenario": n,
            "overall": {a: {**s.summary(), **more((a,))} for a, s in overall.items()},
            "per_option": [{"activity": a, "dimension": d, "option": o, "worlds": per_option_n[(a, d, o)],
                            **s.summary(), **more((a, d, o))} for (a, d, o), s in per_option.items()],
            "per_scenario": [{"scenario": sc, "activity": a, **s.summary(), **more((sc, a))}
                             for (sc, a), s in per_scenario.items()],
        }
        json_out.write_text(json.dumps(doc, indent=1) + "\n")
    return overall


SCALE_CACHE = Path(tempfile.gettempdir()) / "obs-scale"


def build_scale_store(path: Path, n_target: int) -> None:
    """The quiet week (scenarios/ke-quiet-week.toml, dedicated probes) replicated into many countries by SQL
    (fast), plus the regional mobile shutdown scenario as it is, so there is something to find."""
    tmp = path.with_suffix(".building")
    tmp.unlink(missing_ok=True)
    work = path.parent
    store = open_store(str(tmp))
    try:
        quiet = work / "quiet.jsonl"
        write_simulation(load_scenario(SCENARIOS / "ke-quiet-week.toml"), out=quiet, activity="dedicated")
        ingest_paths(store, [quiet])
        base = store.count()
        copies = max(1, n_target // base)
        con = store._con  # type: ignore[attr-defined]  # the benchmark's own shortcut, not an API
        con.execute(f"""
            INSERT INTO measurements
            SELECT uid || '-' || c::VARCHAR, nextval('measurement_seq'), t, received, 'X' || c::VARCHAR, asn,
                   network, region, probe_key || '-' || c::VARCHAR, resolver_asn, test_name, test_version,
                   software, source, input, platform, verdict, kbps, ''
            FROM measurements, range(1, {copies}) r(c)""")
        event = work / "event.jsonl"
        write_simulation(load_scenario(SCENARIOS / "pk-balochistan-mobile-shutdown.toml"), out=event)
        ingest_paths(store, [event])
    finally:
        store.close()
    tmp.rename(path)


def scale(n_target: int = 10_000_000, increment: int = 10_000, cache: Path = SCALE_CACHE) -> None:
    """Full detection over ~10 M stored measurements, then an incremental run after `increment` new ones.

    The built store is kept under `cache` (building it takes minutes); each run works on a fresh copy.
    Baseline, measured in the same run on the same copy: one bare count(*) GROUP BY of the whole store into
    5-minute buckets per country x network x platform (what any detection must at least read), and for the
    incremental run the same GROUP BY over the new measurements' countries and last day.
    """
    from observatory.detect import DetectConfig
    from observatory.detect.run import SCREEN_SECONDS, TRAILING, WATERMARK_KEY
    from observatory.service import _screen as screen_countries

    cache.mkdir(parents=True, exist_ok=True)
    base_db = cache / f"scale-{n_target}.duckdb"
    if not base_db.exists():
        t0 = time.perf_counter()
        build_scale_store(base_db, n_target)
        print(f"built {base_db} in {time.perf_counter() - t0:.0f}s (kept for later runs)", flush=True)
    with tempfile.TemporaryDirectory(prefix="obs-scale-", dir=cache) as tmp:
        db = Path(tmp) / "scale.duckdb"
        shutil.copyfile(base_db, db)
        store = open_store(str(db))
        con = store._con  # type: ignore[attr-defined]  # the benchmark's own shortcut, not an API
        total = store.count()
        countries = len(store.countries())
        print(f"store: {total:,} measurements in {countries} countries (load average {_load()})")
        t0 = time.perf_counter()
        con.execute("SELECT epoch(t)::BIGINT // 300, cc, asn, platform, count(*) FROM measurements GROUP BY ALL"
                    ).fetchall()
        base_full = time.perf_counter() - t0
        print(f"baseline: one 5-minute count(*) GROUP BY per country x network x platform over the whole store "
              f"{base_full:.1f}s")
        # the screen alone, over the window a full run examines: how many countries it lets through
        t0 = time.perf_counter()
        spans = store.changes_since(0).spans.values()
        lo = min(a for a, _ in spans) - TRAILING
        until = max(b for _, b in spans) + timedelta(seconds=300)
        hourly = store.network_series(since=lo, until=until, bucket_seconds=SCREEN_SECONDS)
        t1 = time.perf_counter()
        candidates = screen_countries(store, hourly, lo, until, None, DetectConfig())
        t2 = time.perf_counter()
        print(f"screen: {len(hourly):,} hourly cells read in {t1 - t0:.1f}s, screened in {t2 - t1:.1f}s "
              f"(with its finer queries): {len(candidates)} of {countries} countries get the fine look "
              f"({', '.join(sorted(candidates)[:10])})", flush=True)
        del hourly
        t0 = time.perf_counter()
        run = run_detection(store, full=True)
        full_s = time.perf_counter() - t0
        print(f"full detection: {full_s:.1f}s = {full_s / base_full:.1f}x baseline; fine look at {run.cells:,} "
              f"cells; {len(run.saved)} incidents: "
              + ", ".join(f"{i.country} {i.kind} {i.scope}" for i in run.saved) + " (target < 60 s)", flush=True)
        # 10,000 new measurements: the quiet week's last hours, one day later, in a few countries
        con.execute(f"""
            INSERT INTO measurements (uid, seq, t, received, cc, asn, network, region, probe_key, resolver_asn,
                                      test_name, test_version, software, source, input, platform, verdict, kbps,
                                      raw)
            SELECT uid || '-new', nextval('measurement_seq'), t + INTERVAL 1 DAY, received, cc, asn, network,
                   region, probe_key, resolver_asn, test_name, test_version, software, source, input, platform,
                   verdict, kbps, '' FROM measurements
            WHERE cc IN ('X1', 'X2', 'X3') ORDER BY t DESC LIMIT {increment}""")
        t0 = time.perf_counter()
        con.execute("""SELECT epoch(t)::BIGINT // 300, cc, asn, platform, count(*)
                       FROM measurements WHERE cc IN ('X1', 'X2', 'X3')
                       AND t >= (SELECT max(t) FROM measurements) - INTERVAL 1 DAY GROUP BY ALL""").fetchall()
        base_inc = time.perf_counter() - t0
        print(f"baseline: the same GROUP BY over the new data's countries and last day {base_inc:.2f}s")
        t0 = time.perf_counter()
        run = run_detection(store)
        inc_s = time.perf_counter() - t0
        print(f"incremental detection after {increment:,} new measurements: {inc_s:.2f}s = "
              f"{inc_s / base_inc:.1f}x baseline, fine look at {run.cells:,} cells (target < 2 s); "
              f"watermark {store.get_state(WATERMARK_KEY)} (load average {_load()})")
        store.close()


def _load() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenario", action="append", help="only this scenario (file stem); repeatable")
    ap.add_argument("--activity", choices=ACTIVITIES, action="append", help="only this probe population")
    ap.add_argument("--scale", action="store_true", help="run the 10 M measurement speed benchmark instead")
    ap.add_argument("--scale-cache", type=Path, default=SCALE_CACHE,
                    help="where the --scale store is built once and kept (default: %(default)s)")
    ap.add_argument("--seeds", type=int, default=1,
                    help="run each scenario with its own seed and the N-1 after it, scored together")
    ap.add_argument("--worlds", type=int, default=0,
                    help="N random worlds per scenario and population: noise seeds and modelling choices drawn "
                         "from the simulator's families; figures across worlds and per family option")
    ap.add_argument("--json", type=Path, help="with --worlds: also write the figures to this JSON file")
    ap.add_argument("--arrival", action="store_true",
                    help="with --worlds: also the confirmation time at arrival (conf50@arrival): the lines replayed "
                         "in upload order, detection run at cut-offs (benchmarks/arrival.py)")
    ap.add_argument("-v", "--verbose", action="store_true", help="list detected and true incidents")
    args = ap.parse_args()
    if args.scale:
        scale(cache=args.scale_cache)
        return
    if args.seeds < 1:
        ap.error(f"--seeds must be at least 1, not {args.seeds}")
    if args.worlds < 0:
        ap.error(f"--worlds must be at least 1, not {args.worlds}")
    if args.arrival and not args.worlds:
        ap.error("--arrival needs --worlds N")
    if args.worlds:
        worlds(args.scenario, tuple(args.activity or ACTIVITIES), args.worlds, args.verbose, args.json, args.arrival)
        return
    quality(args.scenario, tuple(args.activity or ACTIVITIES), args.verbose, args.seeds)


if __name__ == "__main__":
    main()
