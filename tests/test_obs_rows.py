"""OONI's observation rows (obs_web) in: real rows of Kenya, autumn 2023 (a national Telegram block from 8 to
24 November), and a small hand-written CSV of grouping edge cases. Real DuckDB stores, the real command."""

from __future__ import annotations

import csv
import gzip
import json
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from observatory.ingest import ingest_paths
from observatory.store import MeasurementFilter
from observatory.store.duckdb import DuckDBStore
from observatory.verdict import classify_raw
from observatory.verdict.obsweb import obs_verdict

DATA = Path(__file__).parent / "data" / "ooni-observations"
TELEGRAM = DATA / "2023-KE-telegram.csv.gz"
WEB = DATA / "2023-KE-web_connectivity-telegram.org.csv.gz"
EDGES = DATA / "edge-cases.csv"
BLOCK_START, BLOCK_END = datetime(2023, 11, 8, tzinfo=UTC), datetime(2023, 11, 25, tzinfo=UTC)


@pytest.fixture(scope="module")
def kenya(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DuckDBStore]:
    store = DuckDBStore(str(tmp_path_factory.mktemp("ke") / "ke.duckdb"))
    t0 = time.perf_counter()
    summary = ingest_paths(store, [TELEGRAM, WEB], processes=1)
    took = time.perf_counter() - t0
    print(f"\ningest of the Kenya rows (131,496 rows): {took:.2f} s")  # reported, not asserted: a shared machine
    assert summary.rejected == 0 and summary.accepted == 2344 + 1228
    yield store
    store.close()


def _rows(store: DuckDBStore, sql: str) -> list[tuple]:
    return store._con.execute(sql).fetchall()


def test_the_files_interleave_and_repeat_rows_of_a_measurement() -> None:
    """What the grouping must cope with, checked on the real file rather than assumed."""
    with gzip.open(TELEGRAM, "rt", newline="") as fh:
        uids = [r["measurement_uid"] for r in csv.DictReader(fh)]
    runs = [u for i, u in enumerate(uids) if i == 0 or uids[i - 1] != u]
    assert len(set(uids)) == 2344 and len(runs) > 2 * 2300, "most measurements come in two separate runs of rows"


def test_kenya_rows_become_measurements_like_any_other(kenya: DuckDBStore) -> None:
    by = dict(((t, p, s), n) for t, p, s, n in _rows(
        kenya, "SELECT test_name, platform, source, count(*) FROM measurements GROUP BY ALL"))
    assert by == {("telegram", "telegram", "ooni"): 2344, ("web_connectivity", "telegram", "ooni"): 1228}
    assert kenya.stats()["by_country"] == {"KE": 3572}
    keys = _rows(kenya, "SELECT count(*) FILTER (WHERE probe_key NOT LIKE 'r:%'), count(DISTINCT probe_key), "
                        "count(DISTINCT asn), min(t), max(t) FROM measurements")[0]
    assert keys[0] == 0, "report_id is the witness"
    assert keys[1] == 2344 + 1161 and keys[2] == 27  # distinct report_ids of the two files; their networks
    assert keys[3] >= datetime(2023, 10, 15) and keys[4] < datetime(2023, 11, 30)


def test_a_measurement_keeps_all_its_rows_once(kenya: DuckDBStore) -> None:
    uid = "20231106104051.175583_KE_telegram_2c7305bb103037de"  # its rows come in two runs, far apart
    docs = [json.loads(d) for d in kenya.documents(MeasurementFilter(country="KE", since=datetime(2023, 11, 6, 10),
                                                                     until=datetime(2023, 11, 6, 11)))]
    doc = next(d for d in docs if d["measurement_uid"] == uid)
    with gzip.open(TELEGRAM, "rt", newline="") as fh:
        lines = [i for i, r in enumerate(csv.DictReader(fh), start=2) if r["measurement_uid"] == uid]
    obs = doc["x_obs_web"]
    assert len(obs["rows"]) + obs["duplicate_rows"] == len(lines)
    assert obs["duplicate_rows"] > 0 and set(obs["lines"]) <= set(lines)
    assert max(lines) - min(lines) + 1 > len(lines), "its rows are not adjacent in the file"


def test_a_file_split_in_partitions_gives_the_same_measurements() -> None:
    """The bounded-memory path (rows split by measurement_uid into temporary files) changes nothing."""
    from observatory.sources.obsrows import BadRow, read_measurements
    from observatory.verdict import classify

    def outcome(partitions: int) -> list[tuple]:
        out = []
        for m in read_measurements(TELEGRAM, "csv", partitions=partitions):
            assert not isinstance(m, BadRow)
            obs = m.doc["x_obs_web"]
            out.append((m.uid, m.start_time, m.probe_asn, m.probe_key, m.platform, classify(m).verdict,
                        json.dumps(obs, sort_keys=True)))
        return sorted(out)

    whole = outcome(1)
    assert len(whole) == 2344 and outcome(3) == whole


def _failure_share(store: DuckDBStore, test: str, days: str) -> tuple[int, int]:
    return _rows(store, f"""SELECT count(*), count(*) FILTER (WHERE verdict NOT IN ('ok', 'unknown'))
                            FROM measurements WHERE test_name = '{test}' AND {days}""")[0]


def test_kenya_verdicts_are_plausible(kenya: DuckDBStore) -> None:
    quiet_n, quiet_bad = _failure_share(kenya, "telegram", "t < '2023-11-08'")
    assert quiet_n > 1000 and quiet_bad / quiet_n < 0.02, (quiet_n, quiet_bad)  # the ordinary weeks: ~1%
    exam_days = "t >= '2023-11-08' AND t < '2023-11-25' AND strftime(t, '%d') NOT IN ('11', '18')"
    block_n, block_bad = _failure_share(kenya, "telegram", exam_days)
    assert block_bad / block_n > 0.2, (block_n, block_bad)
    for saturday in ("2023-11-11", "2023-11-18"):  # no exams, no block
        n, bad = _failure_share(kenya, "telegram", f"strftime(t, '%Y-%m-%d') = '{saturday}'")
        assert n > 25 and bad <= 1, (saturday, n, bad)
    techniques = Counter(v for (v,) in _rows(kenya, "SELECT verdict FROM measurements WHERE test_name = 'telegram' "
                                                    f"AND {exam_days} AND verdict NOT IN ('ok', 'unknown')"))
    assert techniques.most_common(1)[0][0] == "http_interference", techniques
    # web_connectivity rows carry no control: a failure there is never called a technique
    assert {v for (v,) in _rows(kenya, "SELECT DISTINCT verdict FROM measurements "
                                       "WHERE test_name = 'web_connectivity'")} == {"ok", "unknown"}


def test_stored_verdicts_are_recomputed_from_the_stored_document(kenya: DuckDBStore) -> None:
    stored = dict(_rows(kenya, "SELECT uid, verdict FROM measurements"))
    docs = list(kenya.documents(MeasurementFilter(since=datetime(2023, 11, 13), until=datetime(2023, 11, 15))))
    assert len(docs) > 100
    assert all(classify_raw(d)[0] == stored[json.loads(d)["measurement_uid"]] for d in docs)


def test_detection_finds_the_kenyan_telegram_block_and_nothing_before(kenya: DuckDBStore) -> None:
    """#19's regression test on real data: the block of 8-24 November 2023, no alarm in the weeks before."""
    from observatory.service import run_detection
    from observatory.store import IncidentFilter

    run_detection(kenya, full=True)
    incidents = kenya.incidents(IncidentFilter(limit=1000))
    found = [(i.country, i.kind, i.platforms, i.start, i.end) for i in incidents]
    telegram = [i for i in incidents if i.country == "KE" and "telegram" in i.platforms
                and i.kind == "platform_restriction"]
    assert telegram, found
    assert all(BLOCK_START <= i.start < BLOCK_END for i in telegram), found
    assert not [i for i in incidents if i.start < BLOCK_START], found


# --- edge cases -------------------------------------------------------------------------------------------


def test_edge_cases_group_reject_and_judge(duck: DuckDBStore, tmp_path: Path) -> None:
    summary = ingest_paths(duck, [EDGES], rejects_path=tmp_path / "rejects.jsonl", processes=1)
    assert [(r.line, r.reason) for r in summary.rejects] == [
        (7, "measurement uid-c-bad-port: port: 'eighty' is not a number"),
        (10, "measurement uid-d-disagrees: probe_cc 'UG' differs from its earlier rows' 'KE'"),
        (11, "measurement_uid is empty: the row belongs to no measurement"),
        (12, "3 fields where the header has 51"),
    ]
    assert all(r.file == str(EDGES) for r in summary.rejects)
    assert len((tmp_path / "rejects.jsonl").read_text().splitlines()) == 4, "rejects are written, not lost"
    verdicts = dict(_rows(duck, "SELECT uid, verdict FROM measurements"))
    assert verdicts == {
        "uid-a-ok": "ok",
        "uid-b-dc-blocked": "tcp_blackhole",  # no connect to any data centre
        "uid-c-bad-port": "unknown",  # ok but for a rejected row: not ok
        "uid-d-disagrees": "unknown",
        "uid-e-web-no-control": "unknown",  # a failed connect, but no control
    }
    docs = {json.loads(d)["measurement_uid"]: json.loads(d) for d in duck.documents(MeasurementFilter())}
    a = docs["uid-a-ok"]["x_obs_web"]
    assert a["lines"] == [2, 4, 14] and a["duplicate_rows"] == 1 and a["file"] == "edge-cases.csv"
    assert docs["uid-c-bad-port"]["x_obs_web"]["rejected_rows"] == 1


def test_parquet_rows_read_like_csv(duck: DuckDBStore, tmp_path: Path) -> None:
    """A Parquet dump has typed columns (numbers, booleans, times), not text."""
    with open(EDGES, newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["port"] != "eighty" and r["probe_cc"] and r["probe_asn"]]
    num = {"port": pa.float64(), "tcp_success": pa.float64(), "probe_asn": pa.int64(), "resolver_asn": pa.int64(),
           "tls_success": pa.bool_(), "ip_asn": pa.float64()}

    def column(name: str) -> pa.Array:
        values = [r[name] or None for r in rows]
        if name == "measurement_start_time":
            return pa.array([datetime.fromisoformat(v) if v else None for v in values], pa.timestamp("s", "UTC"))
        if name in num:
            kind = num[name]
            cast = (lambda v: v == "1") if kind == pa.bool_() else float if pa.types.is_floating(kind) else int
            return pa.array([cast(v) if v is not None else None for v in values], kind)
        return pa.array(values, pa.string())

    path = tmp_path / "rows.parquet"
    pq.write_table(pa.table({name: column(name) for name in rows[0]}), path)
    summary = ingest_paths(duck, [path], processes=1)
    assert summary.accepted == 5
    assert [(r.line, r.reason) for r in summary.rejects] == [
        (8, "measurement uid-d-disagrees: probe_cc 'UG' differs from its earlier rows' 'KE'"),
        (9, "measurement_uid is empty: the row belongs to no measurement")]
    assert dict(_rows(duck, "SELECT uid, verdict FROM measurements")) == {
        "uid-a-ok": "ok", "uid-b-dc-blocked": "tcp_blackhole", "uid-c-bad-port": "ok", "uid-d-disagrees": "unknown",
        "uid-e-web-no-control": "unknown"}
    assert dict(_rows(duck, "SELECT uid, strftime(t, '%Y-%m-%d %H:%M') FROM measurements"))["uid-a-ok"] == \
        "2023-11-13 08:00"
    from observatory.sources.obsrows import read_measurements

    def docs(partitions: int) -> list[str]:
        return sorted(json.dumps(m.doc, sort_keys=True) for m in read_measurements(path, "parquet",
                                                                                   partitions=partitions)
                      if not hasattr(m, "reason"))

    assert docs(2) == docs(1), "typed cells survive the trip through a partition file"


def test_tables_that_are_not_observation_rows_are_refused_in_one_line(duck: DuckDBStore, tmp_path: Path) -> None:
    other = tmp_path / "index.csv"
    other.write_text("name,value\na,1\n")
    pq.write_table(pa.table({"name": ["a"]}), tmp_path / "other.parquet")
    summary = ingest_paths(duck, [other, tmp_path / "other.parquet"], processes=1)
    assert [(r.line, r.reason.split(":")[0]) for r in summary.rejects] == [
        (0, "a CSV whose header is not OONI observation rows (obs_web)"),
        (0, "a Parquet file without OONI observation rows' columns (obs_web)")]
    assert duck.count() == 0


def test_a_directory_holds_rows_among_other_tables(duck: DuckDBStore, tmp_path: Path) -> None:
    (tmp_path / "index.csv").write_text("name,value\na,1\n")
    (tmp_path / "rows.csv").write_bytes(EDGES.read_bytes())
    summary = ingest_paths(duck, [tmp_path], processes=1)
    assert summary.files == 1 and summary.accepted == 5


def test_cli_ingest_and_export_say_the_rows(tmp_path: Path) -> None:
    db, out = tmp_path / "o.duckdb", tmp_path / "out.jsonl"
    run = [sys.executable, "-m", "observatory"]
    p = subprocess.run([*run, "ingest", str(EDGES), "--db", str(db), "--format", "json"], capture_output=True,
                       text=True, timeout=120)
    assert json.loads(p.stdout)["accepted"] == 5, p.stderr
    subprocess.run([*run, "export", "--db", str(db), "--format", "jsonl", "--out", str(out)], check=True,
                   capture_output=True, timeout=120)
    docs = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(docs) == 5
    for d in docs:
        assert d["annotations"]["source"] == "ooni obs_web observation rows"
        assert d["x_obs_web"]["source"] == "ooni obs_web observation rows" and d["x_obs_web"]["rows"]
        assert "probe_ip" not in d
    # the exported documents are measurements in their own right: ingested again, they are the same rows
    again = tmp_path / "again.duckdb"
    subprocess.run([*run, "ingest", str(out), "--db", str(again)], check=True, capture_output=True, timeout=120)
    query = "SELECT uid, t, cc, asn, probe_key, test_name, platform, verdict FROM measurements ORDER BY uid"
    first, second = DuckDBStore(str(db)), DuckDBStore(str(again))
    try:
        assert first._con.execute(query).fetchall() == second._con.execute(query).fetchall()
    finally:
        first.close()
        second.close()


# --- rules ------------------------------------------------------------------------------------------------


def _verdict(test: str, rows: list[dict], version: str = "0.3.1") -> tuple[str, str]:
    v = obs_verdict(test, version, {"rows": rows})
    return v.verdict.value, v.rule


def test_rules_for_each_test() -> None:
    dc = "149.154.175.50"
    assert _verdict("telegram", [{"ip": dc, "port": 80, "tcp_success": True},
                                 {"hostname": dc, "http_request_url": f"http://{dc}/",
                                  "http_failure": "generic_timeout_error"}]) == ("http_interference",
                                                                                  "obs.telegram.dc_http")
    assert _verdict("telegram", [{"ip": dc, "port": 80, "tcp_success": True},
                                 {"hostname": "web.telegram.org", "ip": "149.154.167.99", "port": 443,
                                  "tcp_success": True, "tls_failure": "connection_reset"}]) == \
        ("tls_interference", "obs.telegram.web")
    # an IPv6 address the probe has no route to says nothing about Telegram
    assert _verdict("telegram", [{"ip": dc, "port": 80, "tcp_success": True},
                                 {"hostname": "web.telegram.org", "ip": "2001:67c:4e8:f004::9", "port": 443,
                                  "tcp_success": False, "tcp_failure": "network_unreachable"}]) == \
        ("ok", "obs.telegram.ok")
    assert _verdict("whatsapp", [{"hostname": "e1.whatsapp.net", "ip": "1.2.3.4", "port": 443,
                                  "tcp_success": False, "tcp_failure": "connection_reset"},
                                 {"hostname": "e2.whatsapp.net", "ip": "1.2.3.5", "port": 5222,
                                  "tcp_success": False, "tcp_failure": "connection_reset"}]) == \
        ("tcp_reset", "obs.whatsapp.endpoints_tcp")
    cert = [{"hostname": "chat.signal.org", "ip": "1.2.3.4", "port": 443, "tcp_success": True,
             "tls_failure": "ssl_unknown_authority"}]
    assert _verdict("signal", cert, "0.2.4") == ("unknown", "obs.signal.stale_ca")
    assert _verdict("signal", cert, "0.2.5") == ("tls_mitm", "obs.signal.backend")
    assert _verdict("facebook_messenger", [{"hostname": "b-api.facebook.com", "dns_engine": "system",
                                            "ip": "10.10.34.35", "dns_answer": "10.10.34.35"}]) == \
        ("dns_tampering", "obs.facebook.dns_foreign")
    assert _verdict("web_connectivity", [{"hostname": "telegram.org", "http_request_url": "https://telegram.org/"}]) \
        == ("ok", "obs.web.https_ok")
    assert _verdict("web_connectivity", [{"hostname": "telegram.org", "http_request_url": "http://telegram.org/"}]) \
        == ("unknown", "obs.web.plain_http")
    assert _verdict("dnscheck", [{"hostname": "x"}]) == ("unknown", "obs.test.not_analysed")


def test_a_jsonl_file_whose_first_line_no_csv_reader_takes_is_read_as_measurements(tmp_path: Path) -> None:
    # found by the ingest fuzz test: a first line holding a bare CR made the header sniffing raise
    from observatory.ingest import ingest_paths

    good = json.dumps({"test_name": "web_connectivity", "measurement_start_time": "2023-01-01 00:00:00",
                       "probe_cc": "PK", "probe_asn": "AS1", "input": "https://x.com/", "report_id": "r",
                       "measurement_uid": "u1", "test_keys": {}})
    f = tmp_path / "mixed.jsonl"
    f.write_bytes(b"\x00\r\x00\n" + good.encode() + b"\n")
    store = DuckDBStore(":memory:")
    try:
        summary = ingest_paths(store, [f])
        assert (summary.accepted, summary.rejected, store.count()) == (1, 1, 1)
    finally:
        store.close()
