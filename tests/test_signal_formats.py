"""Signals as their sources let people download them: IODA's dashboard export, IODA's API v2 JSON, Cloudflare
Radar's API JSON; the whole imported history examined; no incident from the end of the data.

The IODA exports here are built in the exact format of the real sample in tests/data/ioda/ (its header and its
ordinary day, repeated with noise), with a blackout placed at a known time: detection is judged against it."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from observatory.service import run_detection
from observatory.signals import SignalPoint
from observatory.signals.formats import Entity, read_signal_file
from observatory.store.duckdb import DuckDBStore

SAMPLE = Path(__file__).parent / "data" / "ioda" / "format-sample-IR-2025-12-01.csv"
# how deep each IODA signal falls in a national blackout (Iran, January 2026, as IODA's dashboard showed it)
BLACKOUT_DEPTH = {"BGP": 0.35, "Active Probing": 0.05, "Telescope": 0.1, "Google": 0.02, "Mozilla": 0.1}


def _sample() -> tuple[str, list[tuple[timedelta, list[str]]]]:
    lines = SAMPLE.read_text(encoding="utf-8").splitlines()
    rows = []
    for line in lines[1:]:
        time, *values = line.split(",")
        t = datetime.strptime(time.strip('"'), "%Y-%m-%d %H:%M:%S")
        rows.append((timedelta(hours=t.hour, minutes=t.minute), values))
    return lines[0], rows


def _cell(value: str, factor: float) -> str:
    if not value:
        return ""
    v = float(value) * factor
    return str(int(v)) if v.is_integer() else repr(v)


def ioda_export(folder: Path, *, start: datetime, days: int, blackout: tuple[datetime, datetime] | None = None,
                seed: int = 7, name: str | None = None) -> Path:
    """A normalised IODA export for Iran in the sample's exact format: the sample's day repeated, with noise."""
    header, day = _sample()
    columns = [c.strip('"') for c in header.split(",")[1:]]
    rnd = random.Random(seed)
    out = [header]
    for d in range(days):
        # days differ (Iran's weekend is Friday; each signal's level wanders a few percent), points are noisy
        level = [(0.85 if (start + timedelta(days=d)).weekday() == 4 and c.startswith("Google") else 1.0)
                 * (1 + rnd.gauss(0, 0.03)) for c in columns]
        for tod, values in day:
            t = start + timedelta(days=d) + tod
            cut = blackout is not None and blackout[0] <= t < blackout[1]
            cells = []
            for i, (col, v) in enumerate(zip(columns, values, strict=True)):
                depth = next(f for k, f in BLACKOUT_DEPTH.items() if col.startswith(k)) if cut else 1.0
                cells.append(_cell(v, depth * level[i] * (1 + rnd.gauss(0, 0.02))))
            out.append(f'"{t:%Y-%m-%d %H:%M:%S}",' + ",".join(cells))
    end = start + timedelta(days=days)
    path = folder / (name or f"ioda-iran-(islamic-republic-of)-{end:%y-%m-%d-%H-%M}-normalized.csv")
    path.write_text("\n".join(out) + "\n", encoding="utf-8")
    return path


def cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "observatory", *map(str, args)], capture_output=True, text=True,
                          timeout=600)


def incidents_json(db: Path, *extra: str) -> list[dict[str, object]]:
    done = cli("detect", "--db", db, "--format", "json", *extra)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def losses(found: list[dict[str, object]], cc: str = "IR") -> list[dict[str, object]]:
    return [i for i in found if i["kind"] == "connectivity_loss" and i["country"] == cc]


# --- formats ---------------------------------------------------------------------------------------------------


def test_the_real_sample_reads_with_iodas_signal_names_and_missing_cells_left_out(tmp_path: Path) -> None:
    f = tmp_path / "ioda-iran-(islamic-republic-of)-26-01-01-00-00-normalized.csv"
    f.write_bytes(SAMPLE.read_bytes())
    got = read_signal_file(str(f))
    pts = [p for p in got.points if isinstance(p, SignalPoint)]
    assert (got.format, got.source) == ("ioda-csv", "ioda") and len(pts) == len(got.points)
    by = {s: [p for p in pts if p.signal == s] for s in {p.signal for p in pts}}
    assert sorted(by) == ["bgp", "gtr.WEB_SEARCH", "merit-nt", "mozilla", "ping-slash24"]
    assert {p.country for p in pts} == {"IR"} and len(by["bgp"]) == 48
    assert len(by["mozilla"]) == 24  # Mozilla has a value on the hour only: the empty half hours are not zeros
    first = min(by["bgp"], key=lambda p: p.time)
    assert first.time == datetime(2025, 12, 1, tzinfo=UTC) and first.value == pytest.approx(99.62301301445518)


def test_flags_name_the_entity_and_override_the_file_name(tmp_path: Path) -> None:
    f = tmp_path / "export.csv"
    f.write_bytes(SAMPLE.read_bytes())
    got = read_signal_file(str(f), entity=Entity(country="PK", asn=17557))
    pts = [p for p in got.points if isinstance(p, SignalPoint)]
    assert {(p.country, p.asn) for p in pts} == {("PK", 17557)}


IODA_V2 = {
    "type": "signals", "metadata": {"requestTime": "2026-01-12T00:00:00+00:00"},
    "requestParameters": {"entityType": "country", "entityCode": "IR", "from": "1767225600",
                          "until": "1767229200"},
    "error": None, "perf": None,
    "data": [[
        {"entityType": "country", "entityCode": "IR", "entityName": "Iran", "entityFqid": "asia.IR",
         "datasource": "bgp", "subtype": "", "from": 1767225600, "until": 1767229200, "step": 300,
         "nativeStep": 300, "values": [4010, 4012, None, 4011]},
        {"entityType": "country", "entityCode": "IR", "entityName": "Iran", "entityFqid": "asia.IR",
         "datasource": "ping-slash24", "subtype": "", "from": 1767225600, "until": 1767229200, "step": 600,
         "nativeStep": 600, "values": [1500, 1490]},
        {"entityType": "country", "entityCode": "IR", "entityName": "Iran", "entityFqid": "asia.IR",
         "datasource": "gtr", "subtype": "WEB_SEARCH", "from": 1767225600, "until": 1767229200, "step": 1800,
         "nativeStep": 1800, "values": [0.91]},
    ]],
}


def test_ioda_api_v2_json_gives_one_series_per_datasource_and_skips_empty_bins(tmp_path: Path) -> None:
    f = tmp_path / "ir.json"
    f.write_text(json.dumps(IODA_V2))
    got = read_signal_file(str(f))
    pts = [p for p in got.points if isinstance(p, SignalPoint)]
    assert got.format == "ioda-json" and len(pts) == len(got.points) == 6
    bgp = sorted((p.time, p.value) for p in pts if p.signal == "bgp")
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    assert bgp == [(t0, 4010.0), (t0 + timedelta(minutes=5), 4012.0), (t0 + timedelta(minutes=15), 4011.0)]
    assert {p.signal for p in pts} == {"bgp", "ping-slash24", "gtr.WEB_SEARCH"}
    assert {(p.country, p.source) for p in pts} == {("IR", "ioda")}


def test_ioda_api_v2_country_cannot_be_relabelled_by_a_flag(tmp_path: Path) -> None:
    f = tmp_path / "ir.json"
    f.write_text(json.dumps(IODA_V2))
    with pytest.raises(Exception, match="IR's, not PK"):
        read_signal_file(str(f), entity=Entity(country="PK"))
    assert {p.country for p in read_signal_file(str(f), entity=Entity(country="IR")).points  # type: ignore[union-attr]
            } == {"IR"}


def test_ioda_api_v2_asn_series_takes_its_network_and_needs_a_country(tmp_path: Path) -> None:
    doc = {"type": "signals", "error": None, "data": [[
        {"entityType": "asn", "entityCode": "44244", "entityName": "Irancell", "datasource": "ping-slash24",
         "subtype": "", "from": 1767225600, "until": 1767226200, "step": 600, "values": [120]}]]}
    f = tmp_path / "as.json"
    f.write_text(json.dumps(doc))
    with pytest.raises(Exception, match="give --country"):
        read_signal_file(str(f))
    [p] = read_signal_file(str(f), entity=Entity(country="IR")).points
    assert isinstance(p, SignalPoint) and (p.country, p.asn, p.signal) == ("IR", 44244, "ping-slash24")


RADAR = {"success": True, "errors": [], "messages": [], "result": {
    "meta": {"aggInterval": "ONE_HOUR", "dateRange": [{"startTime": "2024-02-07T00:00:00Z",
                                                        "endTime": "2024-02-07T03:00:00Z"}],
             "lastUpdated": "2024-02-09T00:00:00Z", "normalization": "MIN0_MAX",
             "confidenceInfo": {"level": 5, "annotations": []}},
    "serie_0": {"timestamps": ["2024-02-07T00:00:00Z", "2024-02-07T01:00:00Z", "2024-02-07T02:00:00Z"],
                "values": ["0.612", "0.598", "0.2"]}}}


@pytest.mark.parametrize(("name", "signal"), [("radar-netflows-pk.json", "netflows"),
                                              ("radar-http-pk.json", "http_requests")])
def test_radar_json_with_the_location_from_the_flags(tmp_path: Path, name: str, signal: str) -> None:
    f = tmp_path / name
    f.write_text(json.dumps(RADAR))
    got = read_signal_file(str(f), entity=Entity(country="PK", asn=17557))
    pts = [p for p in got.points if isinstance(p, SignalPoint)]
    assert got.format == "radar-json" and len(pts) == 3
    assert {(p.country, p.asn, p.source, p.signal) for p in pts} == {("PK", 17557, "radar", signal)}
    assert pts[2].value == 0.2 and pts[2].time == datetime(2024, 2, 7, 2, tzinfo=UTC)


# --- bad input: one line, exit 2, nothing stored ------------------------------------------------------------------


def _bad_files(tmp_path: Path) -> dict[str, tuple[Path, tuple[str, ...], str]]:
    other = tmp_path / "prices.csv"
    other.write_text("date,open,close\n2024-01-01,1,2\n")
    radar_err = tmp_path / "radar-netflows.json"
    radar_err.write_text(json.dumps({"success": False, "errors": [{"code": 10000, "message": "Authentication error"}],
                                     "messages": [], "result": None}))
    nameless = tmp_path / "download.csv"
    nameless.write_bytes(SAMPLE.read_bytes())
    return {"csv of another kind": (other, (), "not a signals file"),
            "radar error object": (radar_err, ("--country", "PK"), "Authentication error"),
            "ioda without entity": (nameless, (), "give --country")}


@pytest.mark.parametrize("case", ["csv of another kind", "radar error object", "ioda without entity"])
def test_bad_input_is_one_line_exit_2_and_nothing_stored(tmp_path: Path, case: str) -> None:
    path, flags, words = _bad_files(tmp_path)[case]
    db = tmp_path / "o.duckdb"
    done = cli("signals", "import", path, "--db", db, *flags)
    assert done.returncode == 2, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0] and "Traceback" not in done.stderr
    assert not db.exists()  # nothing stored: the store is not even created


# --- detection on imported history ---------------------------------------------------------------------------------


def test_a_blackout_placed_in_an_ioda_export_is_found_national_with_its_start_and_end(tmp_path: Path) -> None:
    cut = (datetime(2026, 1, 8, 16, 30, tzinfo=UTC), datetime(2026, 1, 10, 20, 0, tzinfo=UTC))
    f = ioda_export(tmp_path, start=datetime(2025, 12, 1, tzinfo=UTC), days=42, blackout=cut)
    db = tmp_path / "o.duckdb"
    done = cli("signals", "import", f, "--db", db)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["country"] == "IR"
    [inc] = losses(incidents_json(db))
    assert inc["scope"] == "national" and inc["status"] == "ended"
    assert inc["start"] == "2026-01-08T16:30:00Z"
    assert inc["end"] is not None and abs((_t(inc["end"]) - cut[1]).total_seconds()) <= 3600
    named = {s["signal"] for s in inc["evidence"]["signals"]}  # type: ignore[index]
    assert {"bgp", "ping-slash24", "merit-nt"} <= named


def _t(v: object) -> datetime:
    return datetime.fromisoformat(str(v).replace("Z", "+00:00"))


def test_whole_history_first_and_full_runs_find_a_blackout_two_months_back(tmp_path: Path) -> None:
    """Two months and more of signals, the blackout early on: only a trailing window would miss it."""
    cut = (datetime(2025, 11, 12, 10, 0, tzinfo=UTC), datetime(2025, 11, 12, 22, 0, tzinfo=UTC))
    f = ioda_export(tmp_path, start=datetime(2025, 11, 1, tzinfo=UTC), days=72, blackout=cut)
    db = tmp_path / "o.duckdb"
    assert cli("signals", "import", f, "--db", db).returncode == 0
    [first] = losses(incidents_json(db))
    assert first["start"] == "2025-11-12T10:00:00Z" and first["scope"] == "national"
    store = DuckDBStore(str(db))
    try:  # incremental: nothing new, nothing re-examined
        assert run_detection(store).saved == ()
    finally:
        store.close()
    [full] = losses(incidents_json(db, "--full"))
    assert full["id"] == first["id"] and full["start"] == first["start"]


def test_whole_history_without_an_import_note_first_and_full_runs(tmp_path: Path) -> None:
    """Series stored without the importer's note (a store filled before, the pinger, a library caller): the
    first run and a full run still look at all of them, from the first point."""
    cut = (datetime(2025, 11, 12, 10, 0, tzinfo=UTC), datetime(2025, 11, 12, 22, 0, tzinfo=UTC))
    f = ioda_export(tmp_path, start=datetime(2025, 11, 1, tzinfo=UTC), days=72, blackout=cut)
    store = DuckDBStore(str(tmp_path / "o.duckdb"))
    try:
        store.insert_signals([p for p in read_signal_file(str(f)).points if isinstance(p, SignalPoint)])
        [first] = [i for i in run_detection(store).saved if i.kind == "connectivity_loss"]
        assert first.start == cut[0] and first.scope == "national"
        [full] = [i for i in run_detection(store, full=True).saved if i.kind == "connectivity_loss"]
        assert (full.id, full.start) == (first.id, first.start)
    finally:
        store.close()


def test_an_old_history_imported_into_a_used_store_is_examined_where_it_lies(tmp_path: Path) -> None:
    """A store already detected on (newer signals of another country), then an old history imported: the
    incremental run looks at the time the import describes, not only before the newest point."""
    store = DuckDBStore(str(tmp_path / "o.duckdb"))
    try:
        t0 = datetime(2026, 3, 1, tzinfo=UTC)
        store.insert_signals([SignalPoint(time=t0 + timedelta(hours=h), country="KE", region=None, asn=None,
                                          signal="bgp", source="ioda", value=1000.0) for h in range(72)])
        run_detection(store)
    finally:
        store.close()
    cut = (datetime(2025, 12, 20, 4, 0, tzinfo=UTC), datetime(2025, 12, 20, 9, 0, tzinfo=UTC))
    f = ioda_export(tmp_path, start=datetime(2025, 12, 1, tzinfo=UTC), days=30, blackout=cut)
    db = tmp_path / "o.duckdb"
    assert cli("signals", "import", f, "--db", db).returncode == 0
    [inc] = losses(incidents_json(db))
    assert inc["start"] == "2025-12-20T04:00:00Z"


def test_five_ordinary_ioda_rows_then_detect_adds_no_loss_at_the_end_of_the_data(tmp_path: Path) -> None:
    """#21 as the README's tour met it: OONI's real measurements (some from later years) and the simulated
    Pakistani case in one store, then five ordinary IODA rows. Detection used to report a confirmed national
    connectivity loss where Pakistan's data ends (the later data of other countries stretching the examined
    time): nothing was measured after that end, so nothing was seen."""
    scenario = Path(__file__).parent / "data" / "pk-short.toml"
    sim, truth = tmp_path / "pk.jsonl.gz", tmp_path / "truth.json"
    assert cli("simulate", scenario, "--out", sim, "--truth", truth).returncode == 0
    assert {t["kind"] for t in json.loads(truth.read_text())} == {"platform_restriction"}
    db = tmp_path / "o.duckdb"
    for f in (Path(__file__).parent / "data" / "ooni" / "measurements.jsonl", sim):
        assert cli("ingest", f, "--db", db).returncode in (0, 1)
    assert [i["id"] for i in incidents_json(db) if i["kind"] == "connectivity_loss"] == []
    rows = tmp_path / "ioda-pk.csv"
    rows.write_text("time,country,region,asn,signal,value\n" + "".join(
        f"2024-01-20T1{h}:00:00Z,PK,,,bgp,{1000 + h}\n" for h in range(5)))
    assert cli("signals", "import", rows, "--source", "ioda", "--db", db).returncode == 0
    found = incidents_json(db)
    assert [i["id"] for i in found if i["kind"] == "connectivity_loss"] == []
    assert [i["kind"] for i in found if i["country"] == "PK"] == ["platform_restriction"]  # the truth's one


def test_heartbeats_after_the_newest_beat_are_not_a_silence(tmp_path: Path) -> None:
    """The collector's heartbeats end where its data ends; five ordinary rows of another source, newer than
    that, do not turn the time after the last beat into silence."""
    store = DuckDBStore(str(tmp_path / "o.duckdb"))
    t0 = datetime(2024, 1, 16, tzinfo=UTC)
    end = t0 + timedelta(days=4)
    try:
        t = t0
        while t < end:  # six probes heard every five minutes for four days, then the data ends
            for p in range(6):
                store.record_heartbeat(probe=f"p{p}", time=t + timedelta(seconds=p), country="PK", asn=17557,
                                       region="Punjab")
            t += timedelta(minutes=5)
        run_detection(store)
        rows = [SignalPoint(time=end + timedelta(hours=6, minutes=30 * i), country="PK", region=None, asn=None,
                            signal="bgp", source="ioda", value=1000.0 + i) for i in range(5)]
        store.insert_signals(rows)
        again = run_detection(store)
        assert [i for i in again.saved if i.kind == "connectivity_loss"] == []
    finally:
        store.close()


def test_import_output_as_json_for_scripts_or_text_for_people(tmp_path: Path) -> None:
    f = tmp_path / "ioda-iran-(islamic-republic-of)-26-01-01-00-00-normalized.csv"
    f.write_bytes(SAMPLE.read_bytes())
    db = tmp_path / "s.duckdb"
    first = cli("signals", "import", f, "--db", db)
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["accepted"] > 0
    again = cli("signals", "import", f, "--db", db, "--format", "text")
    assert again.returncode == 0, again.stderr
    assert again.stdout.startswith("ioda-csv: 0 points stored in 5 series (bgp, ") and "IR;" in again.stdout
    assert cli("signals", "import", f, "--db", db, "--format", "yaml").returncode == 2
