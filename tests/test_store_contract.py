"""The Store contract: the same tests for every backend.

Backends: DuckDB (a file per test), ClickHouse through chdb (the ClickHouse engine in-process: ONE data directory
per test session, since chdb allows one per process, and a fresh database per test), and a real ClickHouse
server when OBSERVATORY_TEST_CLICKHOUSE_URL is set (clickhouse://user:pass@host:8123/anything; each test gets
its own database on it, dropped afterwards).

Cross-backend tests put the same rows in DuckDB and ClickHouse and compare what callers see: series cells,
the rollup, and the detector's incidents.
"""

from __future__ import annotations

import itertools
import json
import os
import statistics
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import msgspec
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from observatory.errors import ConfigError, StoreError, StoreReadOnlyError
from observatory.incident import Assessment, Incident
from observatory.ingest import Ingestor, IngestSummary, ingest_paths
from observatory.measurement import PRIVATE_FIELDS, SCRUBBED
from observatory.series import Witness, parse_witness, witness_probes
from observatory.signals import SignalPoint
from observatory.store import ContextEvent, IncidentFilter, MeasurementFilter, ProbeCredential, open_store
from observatory.store.base import Row, UserReport
from observatory.store.clickhouse import MIGRATIONS, ClickHouseStore
from observatory.store.duckdb import DuckDBStore
from observatory.vocab import TECHNIQUES

sys.path.insert(0, str(Path(__file__).parent))
from store_world import T0, Event, Net, World, pk_block_world  # noqa: E402

SERVER_URL = os.environ.get("OBSERVATORY_TEST_CLICKHOUSE_URL")
BACKENDS = ["duckdb", "chdb", pytest.param("server", marks=pytest.mark.skipif(
    not SERVER_URL, reason="set OBSERVATORY_TEST_CLICKHOUSE_URL to run against a ClickHouse server"))]
_db_numbers = itertools.count(1)
FAR_PAST = datetime(2000, 1, 1, tzinfo=UTC)
FAR_FUTURE = datetime(2100, 1, 1, tzinfo=UTC)


@pytest.fixture(scope="session")
def chdb_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("chdb")


def _server_url(database: str) -> str:
    assert SERVER_URL
    p = urlparse(SERVER_URL)
    return urlunparse(p._replace(path="/" + database))


def _make(kind: str, tmp_path: Path, chdb_dir: Path) -> DuckDBStore | ClickHouseStore:
    if kind == "duckdb":
        return DuckDBStore(str(tmp_path / "obs.duckdb"))
    database = f"test_{os.getpid()}_{next(_db_numbers)}"
    url = f"chdb://{chdb_dir}?database={database}" if kind == "chdb" else _server_url(database)
    store = open_store(url)
    assert isinstance(store, ClickHouseStore)
    return store


def _dispose(store: DuckDBStore | ClickHouseStore) -> None:
    if isinstance(store, ClickHouseStore):
        store._command("DROP DATABASE IF EXISTS {db}")
    store.close()


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path, chdb_dir: Path) -> Iterator[DuckDBStore | ClickHouseStore]:
    s = _make(request.param, tmp_path, chdb_dir)
    yield s
    _dispose(s)


@pytest.fixture
def pair(tmp_path: Path, chdb_dir: Path) -> Iterator[tuple[DuckDBStore, ClickHouseStore]]:
    """DuckDB and ClickHouse-through-chdb side by side, for comparisons."""
    duck = _make("duckdb", tmp_path, chdb_dir)
    ch = _make("chdb", tmp_path, chdb_dir)
    assert isinstance(duck, DuckDBStore) and isinstance(ch, ClickHouseStore)
    yield duck, ch
    _dispose(duck)
    _dispose(ch)


def _small_world() -> World:
    """Two countries, a few hours: enough for every filter to select something and exclude something."""
    return World(nets=[Net("PK", 17557, 6), Net("PK", 45669, 3), Net("IR", 58224, 3, regions=("Tehran",))],
                 cycles=8, seed=7,
                 events=[Event("PK", T0 + timedelta(hours=1), T0 + timedelta(hours=2), technique="tcp_reset")])


def _insert_all(store: DuckDBStore | ClickHouseStore, rows: list, batch: int = 500) -> None:
    for i in range(0, len(rows), batch):
        store.insert(rows[i:i + batch])


# --- measurements -------------------------------------------------------------------------------------------


def test_insert_reports_accepted_and_duplicates_per_batch(store: DuckDBStore | ClickHouseStore) -> None:
    rows = list(_small_world().rows())[:300]
    first = store.insert(rows[:200] + rows[:10])  # ten repeated inside the batch
    assert (first.accepted, first.duplicates) == (200, 10)
    assert sorted(first.accepted_uids) == sorted(r.measurement.uid for r in rows[:200])
    again = store.insert(rows[150:300])  # fifty stored already, a hundred new
    assert (again.accepted, again.duplicates) == (100, 50)
    assert set(again.accepted_uids) == {r.measurement.uid for r in rows[200:300]}
    assert store.insert(rows).accepted == 0
    assert store.insert([]).accepted == 0
    assert store.count() == 300


def test_stats_counts_what_was_stored(store: DuckDBStore | ClickHouseStore) -> None:
    rows = list(_small_world().rows())
    _insert_all(store, rows)
    stats = store.stats()
    assert stats["measurements"] == len(rows) == store.count()
    assert stats["by_country"] == dict(Counter(r.measurement.probe_cc for r in rows))
    assert stats["by_network"] == dict(Counter(f"AS{r.measurement.probe_asn}" for r in rows))
    assert stats["by_platform"] == dict(Counter(r.measurement.platform for r in rows))
    assert stats["by_verdict"] == dict(Counter(r.verdict for r in rows))
    assert stats["by_test"] == {"web_connectivity": len(rows)}
    assert stats["by_day"] == {"2024-01-15": len(rows)}
    assert store.countries() == ["IR", "PK"]
    assert store.latest_time() == max(r.measurement.start_time for r in rows)


def _expected(doc: dict) -> dict:
    """What must come back: the document minus private fields (and the address scrubbed where it appears)."""
    ip = doc.get("probe_ip")
    clean = {k: v for k, v in doc.items() if k not in PRIVATE_FIELDS}
    if ip and ip not in ("127.0.0.1", "0.0.0.0", "::1"):
        text = json.dumps(clean)
        if ip in text:
            clean = json.loads(text.replace(ip, SCRUBBED))
    return clean


def _docs(files: list[Path]) -> list[dict]:
    out: list[dict] = []
    for f in files:
        if f.suffix == ".jsonl":
            out += [json.loads(line) for line in f.read_text().splitlines() if line.strip()]
        else:
            out.append(json.loads(f.read_text()))
    return out


def test_real_documents_round_trip_minus_private_fields(
    store: DuckDBStore | ClickHouseStore, ooni_files: list[Path]
) -> None:
    summary = ingest_paths(store, ooni_files)
    inputs = _docs(ooni_files)
    assert summary.accepted == len(inputs) == store.count()
    back = [json.loads(d) for d in store.documents(MeasurementFilter())]
    assert sorted(json.dumps(d, sort_keys=True) for d in back) == \
        sorted(json.dumps(_expected(d), sort_keys=True) for d in inputs)
    assert not any(k in d for d in back for k in PRIVATE_FIELDS)
    pk = [json.loads(d) for d in store.documents(MeasurementFilter(country="pk"))]
    assert pk and all(d["probe_cc"] == "PK" for d in pk)
    assert len(pk) == sum(1 for d in inputs if d.get("probe_cc") == "PK")


def test_documents_page_through_large_results_in_time_order(store: DuckDBStore | ClickHouseStore,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    import observatory.store.clickhouse.measurements as ch

    monkeypatch.setattr(ch, "PAGE_ROWS", 97)  # many pages, one of them partial
    rows = list(_small_world().rows())
    _insert_all(store, rows)
    docs = [json.loads(d) for d in store.documents(MeasurementFilter())]
    assert len(docs) == len(rows)
    keys = [(d["measurement_start_time"], d["measurement_uid"]) for d in docs]
    assert keys == sorted(keys)
    assert len(set(keys)) == len(keys)


def test_export_parquet_and_csv_hold_every_selected_row(store: DuckDBStore | ClickHouseStore, tmp_path: Path) -> None:
    rows = list(_small_world().rows())
    _insert_all(store, rows)
    pk_uids = sorted(r.measurement.uid for r in rows if r.measurement.probe_cc == "PK")
    flt = MeasurementFilter(country="PK")
    assert store.export(flt, "parquet", str(tmp_path / "pk.parquet")) == len(pk_uids)
    table = pq.read_table(tmp_path / "pk.parquet")
    assert sorted(table.column("uid").to_pylist()) == pk_uids
    first = table.slice(0, 1).to_pylist()[0]
    stored = next(r for r in rows if r.measurement.uid == first["uid"])
    assert json.loads(first["document"]) == json.loads(stored.measurement.document_json())
    assert first["asn"] == f"AS{stored.measurement.probe_asn}"
    assert store.export(flt, "csv", str(tmp_path / "pk.csv")) == len(pk_uids)
    csv_table = pacsv.read_csv(tmp_path / "pk.csv")
    assert csv_table.column_names[:4] == ["uid", "t", "cc", "asn"]
    assert sorted(csv_table.column("uid").to_pylist()) == pk_uids
    assert set(csv_table.column("verdict").to_pylist()) == {r.verdict for r in rows if r.measurement.probe_cc == "PK"}


def test_measurements_pages_and_filters(store: DuckDBStore | ClickHouseStore) -> None:
    rows = list(_small_world().rows())
    _insert_all(store, rows)
    full = store.measurements(MeasurementFilter(), limit=10_000, offset=0)
    assert len(full) == len(rows)
    assert [(m["t"], m["uid"]) for m in full] == sorted((m["t"], m["uid"]) for m in full)
    pages = [store.measurements(MeasurementFilter(), limit=50, offset=o) for o in range(0, len(rows), 50)]
    assert [m for p in pages for m in p] == full
    one = full[0]
    assert set(one) == {"uid", "t", "cc", "asn", "network", "region", "test_name", "input", "platform", "verdict",
                        "kbps", "source"}
    assert one["t"].endswith("Z") and one["asn"].startswith("AS")

    def n(**kw: object) -> int:
        return len(store.measurements(MeasurementFilter(**kw), limit=10_000, offset=0))  # type: ignore[arg-type]

    ms = [r.measurement for r in rows]
    assert n(country="ir") == sum(m.probe_cc == "IR" for m in ms)
    assert n(asn=45669) == sum(m.probe_asn == 45669 for m in ms)
    assert n(platform="twitter") == sum(m.platform == "twitter" for m in ms)
    assert n(platforms=("twitter", "control")) == sum(m.platform in ("twitter", "control") for m in ms)
    assert n(asns=(17557, 58224)) == sum(m.probe_asn in (17557, 58224) for m in ms)
    mid = T0 + timedelta(hours=1)
    assert n(since=mid) == sum(m.start_time >= mid for m in ms)
    assert n(until=mid) == sum(m.start_time < mid for m in ms)
    assert n(uids=(ms[3].uid, ms[9].uid, "nope")) == 2
    assert n(uids=()) == 0


def test_changes_since_names_what_arrived_after_a_sequence_number(store: DuckDBStore | ClickHouseStore) -> None:
    assert store.changes_since(0).spans == {}
    rows = list(_small_world().rows())
    pk = [r for r in rows if r.measurement.probe_cc == "PK"]
    ir = [r for r in rows if r.measurement.probe_cc == "IR"]
    _insert_all(store, pk)
    first = store.changes_since(0)
    assert first.max_seq >= len(pk)
    times = [r.measurement.start_time for r in pk]
    assert first.spans == {"PK": (min(times), max(times))}
    assert store.changes_since(first.max_seq).spans == {}
    store.insert(ir[:5])
    later = store.changes_since(first.max_seq)
    assert set(later.spans) == {"IR"} and later.max_seq > first.max_seq
    ir_times = [r.measurement.start_time for r in ir[:5]]
    assert later.spans["IR"] == (min(ir_times), max(ir_times))
    store.insert(pk[:5])  # duplicates change nothing
    assert store.changes_since(later.max_seq).spans == {}


def test_example_uids_pick_the_incidents_evidence(store: DuckDBStore | ClickHouseStore) -> None:
    rows = list(_small_world().rows())
    _insert_all(store, rows)
    since, until = T0 + timedelta(hours=1), T0 + timedelta(hours=2)
    got = store.example_uids(country="pk", since=since, until=until, asns=[17557], platforms=["twitter"],
                             verdicts=["tcp_reset"], limit=4)
    expected = sorted(
        (r.measurement.start_time, r.measurement.uid) for r in rows
         if r.measurement.probe_cc == "PK" and r.measurement.probe_asn == 17557 and r.verdict == "tcp_reset"
         and r.measurement.platform == "twitter" and since <= r.measurement.start_time < until)[:4]
    assert len(expected) == 4
    assert got == [u for _, u in expected]


def test_reclassify_rewrites_only_changed_verdicts(store: DuckDBStore | ClickHouseStore) -> None:
    rows = list(_small_world().rows())
    _insert_all(store, rows)

    def strict(raw: bytes) -> tuple[str, float | None]:
        doc = json.loads(raw)
        if doc["input"] == "https://x.com/":
            return "dns_tampering", None
        stored = by_uid[doc["measurement_uid"]]
        return stored.verdict, stored.kbps

    by_uid = {r.measurement.uid: r for r in rows}
    twitter = sum(r.measurement.platform == "twitter" for r in rows)
    assert store.reclassify(strict, batch_size=100) == twitter
    assert store.stats()["by_verdict"]["dns_tampering"] >= twitter
    tw = store.measurements(MeasurementFilter(platform="twitter"), limit=10_000, offset=0)
    assert {m["verdict"] for m in tw} == {"dns_tampering"} and {m["kbps"] for m in tw} == {None}
    assert store.reclassify(strict) == 0
    assert store.count() == len(rows)


def test_reclassify_rebuilds_the_rollup_from_the_new_verdicts(store: DuckDBStore | ClickHouseStore) -> None:
    """The dashboard's rollup counts follow rewritten verdicts, there and back again (a second rebuild must
    not be mistaken by ClickHouse's insert deduplication for the first), and later rows still fold on top."""
    rows = list(_small_world().rows())
    half = len(rows) // 2
    _insert_all(store, rows[:half])
    store.refresh_rollup()
    by_uid = {r.measurement.uid: r for r in rows}

    def twitter_blocked(raw: bytes) -> tuple[str, float | None]:
        doc = json.loads(raw)
        stored = by_uid[doc["measurement_uid"]]
        return ("dns_tampering", None) if doc["input"] == "https://x.com/" else (stored.verdict, stored.kbps)

    def as_stored(raw: bytes) -> tuple[str, float | None]:
        stored = by_uid[json.loads(raw)["measurement_uid"]]
        return stored.verdict, stored.kbps

    def rollup_counts() -> tuple[int, int, int]:
        cells = store.rollup(since=FAR_PAST, until=FAR_FUTURE, bucket_seconds=3600)
        return sum(c.total for c in cells), sum(c.ok for c in cells), sum(c.anomalous for c in cells)

    def expected(part: list[Row], blocked: bool) -> tuple[int, int, int]:
        def verdict(r: Row) -> str:
            return "dns_tampering" if blocked and r.measurement.platform == "twitter" else r.verdict
        mine = [r for r in part if r.measurement.platform]
        return (len(mine), sum(verdict(r) == "ok" for r in mine),
                sum(verdict(r) not in ("ok", "down", "unknown") for r in mine))

    before = rollup_counts()
    assert before == expected(rows[:half], blocked=False)
    assert store.reclassify(twitter_blocked) > 0
    assert rollup_counts() == expected(rows[:half], blocked=True) != before
    assert store.reclassify(as_stored) > 0
    assert rollup_counts() == before
    _insert_all(store, rows[half:])
    store.refresh_rollup()
    assert rollup_counts() == expected(rows, blocked=False)


# --- series -------------------------------------------------------------------------------------------------


def test_series_counts_verdicts_and_distinct_probes(store: DuckDBStore | ClickHouseStore) -> None:
    rows = list(_small_world().rows())
    _insert_all(store, rows)
    cells = store.series(since=T0, until=T0 + timedelta(days=1), bucket_seconds=900, countries=["pk"])
    assert {c.country for c in cells} == {"PK"}
    # one cell recomputed by hand from the rows
    cell = next(c for c in cells if c.asn == 17557 and c.platform == "twitter" and c.region == "North"
                and c.bucket == T0 + timedelta(hours=1))
    mine = [r for r in rows if r.measurement.probe_asn == 17557 and r.measurement.platform == "twitter"
            and r.measurement.region == "North"
            and T0 + timedelta(hours=1) <= r.measurement.start_time < T0 + timedelta(hours=1, minutes=15)]
    assert cell.total == len(mine) > 0
    assert cell.ok == sum(r.verdict == "ok" for r in mine)
    assert cell.anomalous == sum(r.verdict not in ("ok", "down", "unknown") for r in mine)
    assert cell.by_technique == dict(Counter(r.verdict for r in mine if r.verdict != "ok"))
    assert cell.probes == len({r.measurement.probe_key for r in mine})
    bad = sorted({r.measurement.probe_key for r in mine if r.verdict != "ok"})
    assert cell.anomalous_probes == len(bad) and list(cell.anomalous_keys) == bad
    kbps = sorted(r.kbps for r in mine if r.kbps is not None)
    if kbps:
        mid = len(kbps) // 2
        want = kbps[mid] if len(kbps) % 2 else (kbps[mid - 1] + kbps[mid]) / 2
        assert cell.median_kbps == pytest.approx(want)
    # each probe's own median kbps in every cell, for throttling judged probe by probe
    per_probe: dict[tuple, dict[str, list[float]]] = {}
    for r in rows:
        m = r.measurement
        if r.kbps is not None and m.probe_cc == "PK" and m.platform != "control":  # the control's is not tested
            b = T0 + timedelta(seconds=(m.start_time - T0).total_seconds() // 900 * 900)
            cell_key = (b, m.probe_asn, m.region, m.platform)
            per_probe.setdefault(cell_key, {}).setdefault((m.probe_key, m.test_name), []).append(r.kbps)
    assert per_probe
    for c in cells:
        want = per_probe.get((c.bucket, c.asn, c.region, c.platform), {})
        assert [(k, t) for k, t, _ in c.probe_kbps] == sorted(want)
        assert all(v == pytest.approx(statistics.median(want[(k, t)])) for k, t, v in c.probe_kbps)
    assert cell.network_name == "Network 17557"
    assert sum(c.total for c in cells) == sum(r.measurement.probe_cc == "PK" for r in rows)


def test_series_witnesses_keep_probe_keys_with_spaces_whole(store: DuckDBStore | ClickHouseStore) -> None:
    # a probe key is "p:"/"r:" + whatever id a document carried, so it may hold spaces; the technique never does
    rows = [replace(r, measurement=msgspec.structs.replace(r.measurement, probe_key=r.measurement.probe_key + " a b"))
            for r in _small_world().rows()]
    _insert_all(store, rows)
    cells = store.series(since=T0, until=T0 + timedelta(days=1), bucket_seconds=900, countries=["pk"])
    expected = {Witness(r.verdict, r.measurement.probe_key) for r in rows
                if r.verdict in TECHNIQUES and r.measurement.probe_cc == "PK"}
    assert expected and {w for c in cells for w in c.witnesses} == expected
    assert all(c.anomalous_keys == witness_probes(c.witnesses) for c in cells)
    with pytest.raises(ValueError, match="technique probe_key"):
        parse_witness("tcp_reset")


def test_rollup_adds_up_across_refreshes(store: DuckDBStore | ClickHouseStore) -> None:
    rows = list(_small_world().rows())
    half = len(rows) // 2
    _insert_all(store, rows[:half])
    assert store.refresh_rollup() >= half
    assert store.refresh_rollup() == 0
    _insert_all(store, rows[half:])
    assert store.refresh_rollup() > 0
    cells = store.rollup(since=FAR_PAST, until=FAR_FUTURE, bucket_seconds=3600, country="PK", asn=17557)
    mine = [r for r in rows if r.measurement.probe_asn == 17557]
    assert sum(c.total for c in cells) == len(mine)
    assert sum(c.ok for c in cells) == sum(r.verdict == "ok" for r in mine)
    assert {c.platform for c in cells} == {r.measurement.platform for r in mine}


def test_series_and_rollup_are_identical_across_backends(pair: tuple[DuckDBStore, ClickHouseStore],
                                                        tmp_path: Path) -> None:
    duck, ch = pair
    world = pk_block_world(cycles=120)
    world.nets.append(Net("IR", 58224, 5, regions=("Tehran", "Isfahan")))
    rows = list(world.rows())
    for s in pair:
        _insert_all(s, rows, batch=5000)
    for bucket in (300, 3600):
        for countries in (None, ["PK"]):
            a = duck.series(since=T0, until=T0 + timedelta(days=3), bucket_seconds=bucket, countries=countries)
            b = ch.series(since=T0, until=T0 + timedelta(days=3), bucket_seconds=bucket, countries=countries)
            assert len(a) > 100 and a == b
    def key(c: object) -> tuple:
        return (c.bucket, c.country, c.asn, c.platform)  # type: ignore[attr-defined]

    a = sorted(duck.network_series(since=T0, until=T0 + timedelta(days=3), bucket_seconds=3600), key=key)
    b = ch.network_series(since=T0, until=T0 + timedelta(days=3), bucket_seconds=3600)
    assert len(a) > 100 and a == sorted(b, key=key)
    assert {c.country for c in ch.network_series(since=T0, until=T0 + timedelta(days=3), bucket_seconds=3600,
                                                 countries=["ir"])} == {"IR"}
    assert duck.refresh_rollup() == ch.refresh_rollup() == len(rows)
    for args in ({}, {"country": "IR"}, {"platform": "twitter", "asn": 17557}):
        a = duck.rollup(since=T0, until=T0 + timedelta(days=3), bucket_seconds=900, **args)  # type: ignore[arg-type]
        b = ch.rollup(since=T0, until=T0 + timedelta(days=3), bucket_seconds=900, **args)  # type: ignore[arg-type]
        assert a and a == b
    # DuckDB reads whole hours from its hourly rollup and the partial hours at the edges from the 5-minute
    # one; ClickHouse sums its 5-minute rollup: windows with ragged edges and buckets of hours must agree
    for lo, hi, bucket in ((T0 + timedelta(minutes=20), T0 + timedelta(days=2, hours=5, minutes=37), 3600),
                           (T0 + timedelta(hours=1, minutes=55), T0 + timedelta(days=2, minutes=5), 7200),
                           (T0 - timedelta(hours=3), T0 + timedelta(days=3, minutes=50), 86400),
                           (T0 + timedelta(minutes=10), T0 + timedelta(minutes=70), 3600)):
        a = duck.rollup(since=lo, until=hi, bucket_seconds=bucket)
        b = ch.rollup(since=lo, until=hi, bucket_seconds=bucket)
        assert a and a == b
        assert sum(c.total for c in a) == sum(lo <= r.measurement.start_time.replace(
            minute=r.measurement.start_time.minute // 5 * 5, second=0, microsecond=0) < hi for r in rows)
    assert duck.stats() == ch.stats()
    for s in pair:
        s.export(MeasurementFilter(country="IR"), "csv", str(tmp_path / f"{type(s).__name__}.csv"))
    assert (tmp_path / "DuckDBStore.csv").read_bytes() == (tmp_path / "ClickHouseStore.csv").read_bytes()
    flt = MeasurementFilter(country="PK", platforms=("facebook",))
    assert duck.measurements(flt, limit=500, offset=100) == ch.measurements(flt, limit=500, offset=100)


def test_the_detector_finds_identical_incidents_on_both_stores(pair: tuple[DuckDBStore, ClickHouseStore]) -> None:
    """observatory.service.run_detection end to end on each store: a full pass while the block is under way, then an
    incremental pass after the rest arrives; the stored incidents must be the same JSON on both."""
    from observatory.service import run_detection, stored_incidents

    world = pk_block_world()
    rows = list(world.rows())
    cut = next(i for i, r in enumerate(rows) if r.measurement.start_time >= world.events[0].start + timedelta(hours=1))
    results = []
    for s in pair:
        _insert_all(s, rows[:cut], batch=5000)
        full = run_detection(s, full=True)
        _insert_all(s, rows[cut:], batch=5000)
        incremental = run_detection(s)
        assert incremental.cells > 0
        results.append(((full.cells, full.detected, incremental.cells, incremental.detected),
                        [i.to_json() for i in stored_incidents(s)]))
    (duck_runs, duck_incidents), (ch_runs, ch_incidents) = results
    assert duck_runs == ch_runs
    # ids are built from country, kind and start only (nothing store-specific), so they are compared too
    assert duck_incidents == ch_incidents
    assert [(i["country"], i["kind"], sorted(i["platforms"])) for i in ch_incidents] == \
        [("PK", "platform_restriction", ["facebook", "twitter"])]
    assert ch_incidents[0]["end"] is not None and ch_incidents[0]["evidence"]["example_measurements"]


# --- incidents, events, credentials, state ------------------------------------------------------------------


def _incident(i: int, **kw: object) -> Incident:
    base = dict(
        id=f"PK-2024011{i}-1345-platform_restriction", country="PK", kind="platform_restriction",
        scope="national", asns=(17557, 45669), regions=("Punjab",), platforms=("twitter", "facebook"),
        techniques=("tls_interference",), start=datetime(2024, 1, 10 + i, 13, 45, tzinfo=UTC),
        end=datetime(2024, 1, 10 + i, 17, 0, tzinfo=UTC), status="ended",
        confirmed_at=datetime(2024, 1, 10 + i, 13, 55, tzinfo=UTC), confidence=0.97,
        assessment=Assessment(deliberate=0.9, reasons=("only social platforms",)), evidence={"probes": i},
    )
    base.update(kw)
    return Incident(**base)  # type: ignore[arg-type]


def test_incidents_save_filter_get_and_upsert(store: DuckDBStore | ClickHouseStore) -> None:
    incs = [_incident(1), _incident(2, kind="throttling", platforms=("youtube",)),
            _incident(3, country="IR", end=None, status="confirmed"),
            _incident(4, country=None, kind="platform_outage", scope="national")]
    store.save_incidents(incs)
    assert store.incident(incs[0].id) == incs[0]
    assert store.incident("nope") is None
    everything = store.incidents(IncidentFilter())
    assert [i.id for i in everything] == [i.id for i in sorted(incs, key=lambda i: i.start, reverse=True)]
    assert [i.id for i in store.incidents(IncidentFilter(country="pk"))] == [incs[1].id, incs[0].id]
    assert [i.id for i in store.incidents(IncidentFilter(platform="youtube"))] == [incs[1].id]
    assert [i.id for i in store.incidents(IncidentFilter(kind="platform_outage"))] == [incs[3].id]
    assert [i.id for i in store.incidents(IncidentFilter(status="confirmed"))] == [incs[2].id]
    # since: ongoing ones and those that ended after; until: those that started before
    since = datetime(2024, 1, 13, 12, tzinfo=UTC)
    assert {i.id for i in store.incidents(IncidentFilter(since=since))} == {incs[2].id, incs[3].id}
    assert {i.id for i in store.incidents(IncidentFilter(until=since))} == {incs[0].id, incs[1].id}
    assert [i.id for i in store.incidents(IncidentFilter(limit=2, offset=1))] == [everything[1].id, everything[2].id]
    # upsert: the same id saved again replaces, and the filters see only the new version
    updated = incs[2].with_(status="ended", end=datetime(2024, 1, 13, 20, tzinfo=UTC),
                            review={"status": "reviewed", "note": "checked"})
    store.save_incidents([updated])
    assert store.incident(updated.id) == updated
    assert store.incidents(IncidentFilter(status="confirmed")) == []
    assert len(store.incidents(IncidentFilter())) == 4
    store.save_incidents([])


def test_deleted_incidents_are_gone(store: DuckDBStore | ClickHouseStore) -> None:
    incs = [_incident(1), _incident(2), _incident(3)]
    store.save_incidents(incs)
    store.save_incidents([incs[0].with_(status="confirmed")])  # two versions of the same id
    assert store.delete_incidents([incs[0].id, incs[2].id, "never-existed"]) == 2
    assert [i.id for i in store.incidents(IncidentFilter())] == [incs[1].id]
    assert store.incident(incs[0].id) is None
    assert store.delete_incidents([]) == 0


def test_signals_keep_the_first_point_of_a_key(store: DuckDBStore | ClickHouseStore) -> None:
    t = datetime(2024, 1, 20, 13, tzinfo=UTC)
    pts = [SignalPoint(time=t + timedelta(minutes=5 * i), country="PK", region=None, asn=17557 if i % 2 else None,
                       signal="bgp", source="ioda", value=float(100 - i)) for i in range(6)]
    other = SignalPoint(time=t, country="IR", region="Tehran", asn=None, signal="active", source="ioda", value=1.0)
    first = store.insert_signals([*pts, pts[0], other])
    assert (first.accepted, first.duplicates) == (7, 1)
    again = store.insert_signals([pts[1].__class__(time=pts[1].time, country="PK", region=None, asn=17557,
                                                   signal="bgp", source="ioda", value=-1.0), pts[2]])
    assert (again.accepted, again.duplicates) == (0, 2)
    got = store.signal_points(since=t, until=t + timedelta(hours=1), countries=["pk"])
    assert sorted(got, key=lambda p: (p.time, p.asn or 0)) == sorted(pts, key=lambda p: (p.time, p.asn or 0))
    assert [p.time for p in got if p.asn == 17557] == sorted(p.time for p in pts if p.asn == 17557)
    assert store.signal_points(since=t, until=t + timedelta(hours=1), countries=["IR"]) == [other]
    assert len(store.signal_points(since=t + timedelta(minutes=10), until=t + timedelta(minutes=20))) == 2


def test_user_reports_are_counted_most_reported_first(store: DuckDBStore | ClickHouseStore) -> None:
    t = datetime(2024, 1, 20, 14, tzinfo=UTC)
    for i, (cc, region, platform) in enumerate([("PK", "Punjab", "twitter")] * 3 + [("PK", "Sindh", "twitter")]
                                               + [("IR", "Tehran", "whatsapp")] * 2):
        store.add_user_report(UserReport(time=t + timedelta(minutes=i), country=cc, region=region, network="Jazz",
                                         platform=platform, text="does not load"))
    window = {"since": t, "until": t + timedelta(hours=1)}
    assert store.user_report_counts(country=None, **window) == [  # type: ignore[arg-type]
        ("PK", "Punjab", "twitter", 3), ("IR", "Tehran", "whatsapp", 2), ("PK", "Sindh", "twitter", 1)]
    assert store.user_report_counts(country="pk", since=t + timedelta(minutes=1), until=t + timedelta(hours=1)) == [
        ("PK", "Punjab", "twitter", 2), ("PK", "Sindh", "twitter", 1)]


def test_heartbeats(store: DuckDBStore | ClickHouseStore) -> None:
    t = datetime(2024, 1, 20, 13, tzinfo=UTC)
    store.record_heartbeat(probe="lahore-1", time=t, country="PK", asn=17557, region="Punjab")
    store.record_heartbeat(probe="lahore-1", time=t, country="PK", asn=17557, region="Punjab")  # repeated
    store.record_heartbeat(probe="quetta-1", time=t + timedelta(minutes=1), country="PK", asn=45669, region=None)
    assert store.heartbeats(since=t, until=t + timedelta(hours=1)) == [
        ("lahore-1", t, "PK", 17557, "Punjab"), ("quetta-1", t + timedelta(minutes=1), "PK", 45669, None)]
    assert store.heartbeats(since=t + timedelta(seconds=1), until=t + timedelta(hours=1))[0][0] == "quetta-1"


def test_context_events_add_replace_and_filter(store: DuckDBStore | ClickHouseStore) -> None:
    a = ContextEvent(id="e1", country="PK", time=datetime(2024, 1, 20, 13, tzinfo=UTC), title="rally", url=None)
    b = ContextEvent(id="e2", country="PK", time=datetime(2024, 1, 21, tzinfo=UTC), title="statement",
                     url="https://example.org/s")
    c = ContextEvent(id="e3", country="IR", time=datetime(2024, 1, 19, tzinfo=UTC), title="protest")
    for e in (a, b, c):
        store.add_event(e)
    assert store.events() == [c, a, b]
    assert store.events(country="pk") == [a, b]
    assert store.events(since=datetime(2024, 1, 20, tzinfo=UTC), until=datetime(2024, 1, 21, tzinfo=UTC)) == [a]
    a2 = ContextEvent(id="e1", country="PK", time=a.time, title="virtual rally", url="https://example.org/r")
    store.add_event(a2)
    assert store.events(country="PK") == [a2, b]


def test_probe_credentials(store: DuckDBStore | ClickHouseStore) -> None:
    created = datetime(2024, 1, 1, 12, tzinfo=UTC)
    p1 = ProbeCredential(name="lahore-1", token_hash="h1", secret="s1", created=created)
    p2 = ProbeCredential(name="karachi-1", token_hash="h2", secret="s2", created=created)
    store.add_probe(p1)
    store.add_probe(p2)
    assert store.probe_by_token_hash("h1") == p1
    assert store.probe_by_token_hash("nope") is None
    assert [p.name for p in store.probes()] == ["karachi-1", "lahore-1"]
    with pytest.raises(StoreError):
        store.add_probe(ProbeCredential(name="lahore-1", token_hash="h9", secret="s", created=created))
    with pytest.raises(StoreError):
        store.add_probe(ProbeCredential(name="other", token_hash="h1", secret="s", created=created))
    assert store.revoke_probe("lahore-1") is True
    assert store.revoke_probe("ghost") is False
    revoked = store.probe_by_token_hash("h1")
    assert revoked is not None and revoked.revoked and revoked.secret == "s1"
    assert len(store.probes()) == 2


def test_state(store: DuckDBStore | ClickHouseStore) -> None:
    assert store.get_state("detect.seq") is None
    store.set_state("detect.seq", "10")
    store.set_state("other", "x")
    store.set_state("detect.seq", "42")
    assert store.get_state("detect.seq") == "42"
    assert store.get_state("other") == "x"


# --- ClickHouse specifics: opening, failures ----------------------------------------------------------------


def test_a_reopened_clickhouse_store_keeps_everything_and_continues_the_sequence(chdb_dir: Path) -> None:
    url = f"chdb://{chdb_dir}?database=reopen_{os.getpid()}"
    rows = list(_small_world().rows())
    s1 = ClickHouseStore(url)
    s1.insert(rows[:100])
    seq = s1.changes_since(0).max_seq
    s1.close()
    s2 = ClickHouseStore(url)
    try:
        assert s2.count() == 100 and s2.schema_version() == len(MIGRATIONS)
        assert s2.insert(rows[50:150]).accepted == 50
        assert s2.changes_since(seq).max_seq == seq + 50
    finally:
        _dispose(s2)


def test_bad_clickhouse_urls_are_explained(chdb_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="database name"):
        open_store(f"chdb://{chdb_dir}?database=no;drop")
    with pytest.raises(StoreError, match="one per process"):
        open_store(f"chdb://{tmp_path}/another")
    with pytest.raises(ConfigError, match="unknown store URL"):
        open_store("postgres://x/y")


def test_a_store_failure_mid_ingest_loses_nothing_acknowledged_and_a_rerun_completes(
    chdb_dir: Path, tmp_path: Path
) -> None:
    """The server refuses inserts half way (a real ClickHouse error: TOO_MANY_PARTS, provoked by lowering the
    table's limit); the ingest stops with a StoreError naming the store; what it acknowledged is stored; the
    re-run stores the rest and nothing twice."""
    store = _make("chdb", tmp_path, chdb_dir)
    assert isinstance(store, ClickHouseStore)
    try:
        rows = list(_small_world().rows())
        path = tmp_path / "m.jsonl"
        path.write_bytes(b"".join(r.measurement.document_json() + b"\n" for r in rows))
        acknowledged = []

        def break_after_two(summary: IngestSummary) -> None:
            acknowledged.append(summary.accepted)
            if len(acknowledged) == 2:
                store._command("ALTER TABLE {db}.measurements MODIFY SETTING parts_to_throw_insert = 1")

        with pytest.raises(StoreError) as err:
            with Ingestor(store, batch_size=100, on_progress=break_after_two) as ing:
                ing.ingest_file(path)
        assert str(store.url) in str(err.value) and "TOO_MANY_PARTS" in str(err.value)
        assert acknowledged == [100, 200]
        assert store.count() == 200  # everything acknowledged, nothing more

        store._command("ALTER TABLE {db}.measurements MODIFY SETTING parts_to_throw_insert = 3000")
        rerun = ingest_paths(store, [path], batch_size=100)
        assert (rerun.accepted, rerun.duplicates) == (len(rows) - 200, 200)
        assert store.count() == len(rows)
        assert store._scalar("SELECT uniqExact(uid) FROM {db}.measurements") == len(rows)
    finally:
        _dispose(store)


def test_a_client_that_raises_on_insert_is_reported_and_retried_without_duplicates(
    chdb_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The connection drops during an insert that the server nonetheless completed (the worst case for
    idempotency): the caller sees a StoreError, and the retry reports every row as a duplicate."""
    from clickhouse_connect.driver.exceptions import OperationalError

    store = _make("chdb", tmp_path, chdb_dir)
    assert isinstance(store, ClickHouseStore)
    try:
        every = list(_small_world().rows())
        rows = every[:300]
        real_insert = store._client.insert_arrow

        def insert_then_drop(*args: object, **kw: object) -> object:
            real_insert(*args, **kw)
            raise OperationalError("Error HTTPConnectionPool(host='ch-1', port=8123): connection reset by peer")

        monkeypatch.setattr(store._client, "insert_arrow", insert_then_drop)
        with pytest.raises(StoreError, match="connection reset"):
            store.insert(rows)
        monkeypatch.undo()
        retry = store.insert(rows)
        assert (retry.accepted, retry.duplicates) == (0, 300)
        assert store.count() == 300
        seq = store.changes_since(0).max_seq
        more = store.insert(every[300:])
        assert more.accepted == len(every) - 300
        # the sequence moved past the failed batch: changes_since sees exactly the new rows
        assert store.changes_since(seq).max_seq == seq + more.accepted
        assert len(store.measurements(MeasurementFilter(uids=more.accepted_uids), limit=1000, offset=0)) == \
            more.accepted
    finally:
        _dispose(store)


def test_the_screens_counts_are_identical_across_backends(pair: tuple[DuckDBStore, ClickHouseStore]) -> None:
    """The probes whose control failed in a bucket, with each target's counts: one network loses everything for
    an hour, the others only show noise (a stray control failure keeps its probe's other targets listed)."""
    duck, ch = pair
    lost = Event("PK", T0 + timedelta(hours=5), T0 + timedelta(hours=6), platforms=("twitter", "facebook", "youtube",
                 "control"), technique="unreachable", asns=(45669,), coverage=1.0)
    world = World(cycles=48, seed=3, noise=0.05, events=[lost])
    rows = list(world.rows())
    for s in pair:
        _insert_all(s, rows, batch=5000)
    a = duck.failing_probes(since=T0, until=T0 + timedelta(days=1), bucket_seconds=3600)
    b = ch.failing_probes(since=T0, until=T0 + timedelta(days=1), bucket_seconds=3600)
    assert a == b
    assert {(p.asn, p.probe) for p in a if p.bucket == T0 + timedelta(hours=5) and p.platform == "twitter"
            and p.anomalous == p.total} >= {(45669, f"p:pk-45669-{i}") for i in range(12)}
    assert {p.asn for p in a} > {45669}  # noise elsewhere
    assert all(p.country == "PK" for p in a)
    assert duck.failing_probes(since=T0, until=T0 + timedelta(days=1), bucket_seconds=3600, countries=["IR"]) == []
    kw = {"since": T0, "until": T0 + timedelta(days=1), "bucket_seconds": 3600}
    techniques = duck.technique_probes(**kw)  # type: ignore[arg-type]
    assert techniques == ch.technique_probes(**kw)  # type: ignore[arg-type]
    assert {t.technique for t in techniques} >= {"unreachable", "tcp_blackhole"}
    assert any(t.asn == 45669 and t.technique == "unreachable" and t.probes == 12 for t in techniques)
    series = [("pk", 45669, "twitter"), ("PK", 17557, "control")]
    down = duck.down_counts(since=T0, until=T0 + timedelta(hours=8), bucket_seconds=300, series=series)
    assert down == ch.down_counts(since=T0, until=T0 + timedelta(hours=8), bucket_seconds=300, series=series)
    assert {(asn, platform) for _b, _cc, asn, platform, _n, _d in down} == {(45669, "twitter"), (17557, "control")}
    assert duck.down_counts(since=T0, until=T0 + timedelta(hours=8), bucket_seconds=300, series=[]) == []


# --- provenance: a credential is one witness (issue #22) -------------------------------------------------------


def test_rows_record_their_credential_and_a_purge_removes_one_credentials_rows(
        store: DuckDBStore | ClickHouseStore) -> None:
    from observatory.store.base import rows_table, with_credential

    rows = list(_small_world().rows())
    pk = [r for r in rows if r.measurement.probe_cc == "PK"]
    ir = [r for r in rows if r.measurement.probe_cc == "IR"]
    store.insert_table(with_credential(rows_table(pk), "probe:forger"))
    store.insert_table(with_credential(rows_table(ir), "file:ir.jsonl"))
    store.refresh_rollup()
    held = store.uid_credentials([pk[0].measurement.uid, ir[0].measurement.uid, "nope"])
    assert held == {pk[0].measurement.uid: "probe:forger", ir[0].measurement.uid: "file:ir.jsonl"}
    assert store.stats()["by_credential"] == {"probe:forger": len(pk), "file:ir.jsonl": len(ir)}
    store.record_heartbeat(probe="forger", time=T0, country="PK", asn=17557, region=None)
    spans = store.purge_credential("probe:forger")
    times = [r.measurement.start_time for r in pk]
    assert spans == {"PK": (min(times), max(times))}
    assert store.count() == len(ir)
    assert store.countries() == ["IR"]
    assert store.heartbeats(since=FAR_PAST, until=FAR_FUTURE) == []
    # the dashboard's rollup forgot them too
    assert {c.country for c in store.rollup(since=FAR_PAST, until=FAR_FUTURE, bucket_seconds=3600)} == {"IR"}
    assert store.purge_credential("probe:nobody") == {}


def test_probe_place_and_relay_round_trip(store: DuckDBStore | ClickHouseStore) -> None:
    created = datetime(2024, 1, 1, 12, tzinfo=UTC)
    p = ProbeCredential(name="lahore-1", token_hash="h1", secret="s1", created=created, country="PK",
                        asns=(17557, 45669), relay=True)
    store.add_probe(p)
    assert store.probe_by_token_hash("h1") == p
    store.revoke_probe("lahore-1")
    assert store.probes()[0].asns == (17557, 45669) and store.probes()[0].revoked


def test_a_store_from_before_provenance_migrates_and_keeps_everything(tmp_path: Path, chdb_dir: Path) -> None:
    rows = list(_small_world().rows())[:50]
    cred = ProbeCredential(name="old", token_hash="h", secret="s", created=datetime(2024, 1, 1, tzinfo=UTC))
    url = f"chdb://{chdb_dir}?database=old_{os.getpid()}"
    path = str(tmp_path / "old.duckdb")
    duck, ch = DuckDBStore(path), ClickHouseStore(url)
    for s in (duck, ch):
        s.add_probe(cred)
        s.insert(rows)
    # the stores as they were before the provenance migration: its columns and its version gone
    duck._con.execute("ALTER TABLE measurements DROP COLUMN credential")
    for column in ("country", "asns", "relay"):
        duck._con.execute(f"ALTER TABLE probe_credentials DROP COLUMN {column}")
        ch._command(f"ALTER TABLE {{db}}.probe_credentials DROP COLUMN {column}")
    duck._con.execute("DELETE FROM schema_version WHERE version >= 7")  # and the migrations after it
    ch._command("ALTER TABLE {db}.measurements DROP COLUMN credential")
    ch._command("ALTER TABLE {db}.schema_version DELETE WHERE version >= 5", settings={"mutations_sync": 2})
    assert (duck.schema_version(), ch.schema_version()) == (6, 4)
    duck.close()
    ch.close()
    read_only = DuckDBStore(path, read_only=True)  # not migrated: still readable
    assert read_only.probes() == [cred] and read_only.count() == 50
    read_only.close()
    for s in (DuckDBStore(path), ClickHouseStore(url)):
        try:
            assert s.count() == 50 and s.probes() == [cred]
            assert set(s.uid_credentials([r.measurement.uid for r in rows]).values()) == {None}
            s.insert(list(_small_world().rows())[50:60])
            assert s.count() == 60
        finally:
            _dispose(s)


def test_signal_series_lists_each_series_with_its_span_and_points(store: DuckDBStore | ClickHouseStore) -> None:
    t = datetime(2024, 1, 20, tzinfo=UTC)
    pts = [SignalPoint(time=t + timedelta(minutes=5 * i), country="PK", region=None, asn=17557, signal="bgp",
                       source="ioda", value=100.0) for i in range(6)]
    pts.append(SignalPoint(time=t, country="IR", region="Tehran", asn=None, signal="ping-slash24", source="ioda",
                           value=1.0))
    store.insert_signals(pts)
    got = {(s.country, s.signal): s for s in store.signal_series()}
    assert set(got) == {("PK", "bgp"), ("IR", "ping-slash24")}
    pk = got[("PK", "bgp")]
    assert (pk.first, pk.last, pk.points, pk.asn, pk.region) == (t, t + timedelta(minutes=25), 6, 17557, None)
    assert (got[("IR", "ping-slash24")].region, got[("IR", "ping-slash24")].asn) == ("Tehran", None)


# --- issue 23: one schema, checks made once for both backends, typed records, ClickHouse read-only -------------


def test_each_backends_measurements_table_has_the_schema_modules_columns(store: DuckDBStore | ClickHouseStore
                                                                         ) -> None:
    from observatory.store.schema import STORED_NAMES

    if isinstance(store, DuckDBStore):
        names = [r[0] for r in store._con.execute("DESCRIBE measurements").fetchall()]
    else:
        names = [r[0] for r in store._rows("SELECT name FROM system.columns WHERE database = {d:String} "
                                           "AND table = 'measurements' ORDER BY position", {"d": store._database})]
    assert tuple(names) == STORED_NAMES


@pytest.mark.parametrize("bucket", [0, -300])
def test_a_bucket_that_is_not_positive_is_refused_by_every_series_query(store: DuckDBStore | ClickHouseStore,
                                                                        bucket: int) -> None:
    _insert_all(store, list(_small_world().rows()))
    window = {"since": T0, "until": T0 + timedelta(hours=8), "bucket_seconds": bucket}
    for query in (store.series, store.network_series, store.failing_probes, store.technique_probes):
        with pytest.raises(ConfigError, match="bucket_seconds"):
            query(**window)  # type: ignore[operator]
    with pytest.raises(ConfigError, match="bucket_seconds"):
        store.down_counts(**window, series=[("PK", 17557, "twitter")])  # type: ignore[arg-type]


def test_an_unknown_export_format_is_refused_and_writes_nothing(store: DuckDBStore | ClickHouseStore,
                                                                tmp_path: Path) -> None:
    _insert_all(store, list(_small_world().rows())[:50])
    out = tmp_path / "out.jsonl"
    with pytest.raises(ConfigError, match="export format"):
        store.export(MeasurementFilter(), "jsonl", str(out))
    assert not out.exists()


def test_records_come_out_typed(store: DuckDBStore | ClickHouseStore) -> None:
    t = datetime(2024, 1, 20, 13, tzinfo=UTC)
    store.record_heartbeat(probe="lahore-1", time=t, country="PK", asn=17557, region="Punjab")
    store.add_user_report(UserReport(time=t, country="PK", region="Punjab", network="Jazz", platform="twitter"))
    _insert_all(store, list(_small_world().rows()))
    [beat] = store.heartbeats(since=t, until=t + timedelta(hours=1))
    assert (beat.probe, beat.time, beat.country, beat.asn, beat.region) == ("lahore-1", t, "PK", 17557, "Punjab")
    [reported] = store.user_report_counts(country="PK", since=t, until=t + timedelta(hours=1))
    assert (reported.country, reported.platform, reported.reports) == ("PK", "twitter", 1)
    down = store.down_counts(since=T0, until=T0 + timedelta(hours=8), bucket_seconds=3600,
                             series=[("PK", 17557, "twitter")])
    assert down and all(d.platform == "twitter" and 0 <= d.down_probes <= d.probes for d in down)


def test_a_clickhouse_store_opened_read_only_is_neither_created_nor_written(chdb_dir: Path) -> None:
    missing = f"chdb://{chdb_dir}?database=never_{os.getpid()}"
    with pytest.raises(StoreError, match="no such store"):
        open_store(missing, read_only=True)
    writer = open_store(missing)  # now it exists
    assert isinstance(writer, ClickHouseStore)
    writer.insert(list(_small_world().rows())[:20])
    reader = open_store(missing, read_only=True)
    try:
        assert reader.count() == 20 and reader.get_state("x") is None
        event = ContextEvent(id="e", country="PK", time=datetime(2024, 1, 20, tzinfo=UTC), title="t")
        for write in (lambda: reader.add_event(event), lambda: reader.set_state("x", "1"),
                      lambda: reader.insert(list(_small_world().rows())[20:30]), reader.refresh_rollup):
            with pytest.raises(StoreReadOnlyError):
                write()
        assert writer.count() == 20 and writer.events() == [] and writer.get_state("x") is None
    finally:
        reader.close()
        _dispose(writer)


# --- verdict provenance (issue #23): the rule that decided each verdict, and the rules version --------------

# one real document per rule: (verdict_cases name, the rule that decides it today)
_PROVENANCE_CASES = {"ok": "web.ok", "tcp_reset": "tcp.reset", "dns_bogon": "dns.bogon",
                     "throttling": "throttling.slow_download"}


def _ingest_cases(store: DuckDBStore | ClickHouseStore, tmp_path: Path) -> dict[str, str]:
    """The cases ingested as OONI documents; uid -> the rule that decides it."""
    from verdict_cases import case, envelope

    uids = {f"20240120T134500Z_webconnectivity_PK_17557_n1_{i:016x}": name for i, name in enumerate(_PROVENANCE_CASES)}
    f = tmp_path / "cases.jsonl"
    f.write_text("".join(json.dumps(envelope(case(name), uid=uid)) + "\n" for uid, name in uids.items()))
    assert ingest_paths(store, [f], rejects_path=tmp_path / "rejects.jsonl").accepted == len(uids)
    return {uid: _PROVENANCE_CASES[name] for uid, name in uids.items()}


def test_stored_verdicts_carry_the_deciding_rule_and_the_rules_version(
        store: DuckDBStore | ClickHouseStore, tmp_path: Path) -> None:
    from observatory.verdict import RULES_VERSION

    rules = _ingest_cases(store, tmp_path)
    got = store.verdicts(list(rules) + ["no-such-uid"])
    assert {uid: v.rule for uid, v in got.items()} == rules
    assert {v.rules_version for v in got.values()} == {RULES_VERSION}
    # rows written without provenance (an older writer's Row) are stored with none
    row = list(_small_world().rows())[0]
    store.insert([row])
    assert store.verdicts([row.measurement.uid])[row.measurement.uid][2:] == (None, None)


def test_reclassify_reports_a_changed_rule_by_rule(
        store: DuckDBStore | ClickHouseStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import observatory.verdict as verdict
    from observatory.reclassify import classify_stored, reclassify

    rules = _ingest_cases(store, tmp_path)
    reset_uid = next(u for u, r in rules.items() if r == "tcp.reset")
    # the rules of an older version, which had no tcp.reset rule: all-reset connects fell to tcp.timeout
    with monkeypatch.context() as m:
        m.setattr(verdict, "WEB_RULES", tuple(r for r in verdict.WEB_RULES if r.id != "tcp.reset"))
        assert store.reclassify(lambda raw: classify_stored(raw)._replace(rules_version="older")) == 1
    assert store.verdicts([reset_uid])[reset_uid] == ("tcp_blackhole", None, "tcp.timeout", "older")

    report = reclassify(store, batch_size=3)  # the current rules again
    assert report.changed == 1 and report.measurements == len(rules)
    assert [(t.from_rule, t.to_rule, t.from_verdict, t.to_verdict, t.measurements, t.examples)
            for t in report.by_rule] == [("tcp.timeout", "tcp.reset", "tcp_blackhole", "tcp_reset", 1, (reset_uid,))]
    assert report.by_verdict == (("tcp_blackhole", "tcp_reset", 1),)
    assert report.older_versions == (("older", len(rules)),) and report.rule_recorded == 0
    assert {u: v.rule for u, v in store.verdicts(list(rules)).items()} == rules
    assert {v.rules_version for v in store.verdicts(list(rules)).values()} == {report.rules_version}
    again = reclassify(store)
    assert (again.changed, again.by_rule, again.older_versions) == (0, (), ())


def test_a_store_from_before_verdict_provenance_is_migrated_and_its_rows_have_no_rule(
        tmp_path: Path, chdb_dir: Path) -> None:
    from observatory.reclassify import reclassify

    url = f"chdb://{chdb_dir}?database=norule_{os.getpid()}"
    path = str(tmp_path / "norule.duckdb")
    duck, ch = DuckDBStore(path), ClickHouseStore(url)
    rules: dict[str, str] = {}
    for s, sub in ((duck, "d"), (ch, "c")):
        (tmp_path / sub).mkdir()
        rules = _ingest_cases(s, tmp_path / sub)
    # the stores as they were before: no provenance columns, schema versions 7 and 5
    for column in ("verdict_rule", "rules_version"):
        duck._con.execute(f"ALTER TABLE measurements DROP COLUMN {column}")
        ch._command(f"ALTER TABLE {{db}}.measurements DROP COLUMN {column}")
    duck._con.execute("DELETE FROM schema_version WHERE version = 8")
    ch._command("ALTER TABLE {db}.schema_version DELETE WHERE version = 6", settings={"mutations_sync": 2})
    assert (duck.schema_version(), ch.schema_version()) == (7, 5)
    duck.close()
    ch.close()
    read_only = DuckDBStore(path, read_only=True)  # not migrated: still readable, no rule known
    assert {v.rule for v in read_only.verdicts(list(rules)).values()} == {None}
    read_only.close()
    for s in (DuckDBStore(path), ClickHouseStore(url)):
        try:
            stored = s.verdicts(list(rules))
            assert len(stored) == len(rules) and {(v.rule, v.rules_version) for v in stored.values()} == {(None, None)}
            report = reclassify(s)
            assert report.changed == 0 and report.by_rule == () and report.rule_recorded == len(rules)
            assert report.older_versions == ((None, len(rules)),)
            assert {u: v.rule for u, v in s.verdicts(list(rules)).items()} == rules
        finally:
            _dispose(s)
