"""`observatory classify` on files (no store) and `observatory reclassify` on a real DuckDB store."""

from __future__ import annotations

import gzip
import json
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from verdict_cases import case, envelope

from observatory.ingest import ingest_paths
from observatory.store import MeasurementFilter
from observatory.store.duckdb import DuckDBStore

OONI = Path(__file__).parent / "data" / "ooni"
CONTRACT_KEYS = {"line", "measurement_uid", "test_name", "input", "platform", "verdict", "ooni_blocking"}


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Callable[..., Result]:
    """The real entry point (observatory.cli.main: argument parsing, error mapping, exit codes), in-process:
    a subprocess per call costs seconds of imports on a loaded machine."""
    with warnings.catch_warnings():
        # typer imports names click 8.2 deprecated; a third-party import, nothing of ours
        warnings.simplefilter("ignore", DeprecationWarning)
        from observatory.cli import main

    def _run(*args: str) -> Result:
        capsys.readouterr()
        monkeypatch.setattr(sys, "argv", ["observatory", *args])
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        out = capsys.readouterr()
        return Result(code, out.out, out.err)

    return _run


def _write(path: Path, docs: list[object], *, bad_at: int | None = None) -> Path:
    lines = [json.dumps(d) for d in docs]
    if bad_at is not None:
        lines.insert(bad_at - 1, '{"test_name": "web_connectivity", "measurement_start_time": ')
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_classify_prints_one_contract_object_per_line(tmp_path: Path, run: Callable[..., Result]) -> None:
    docs = [envelope(case("ok"), uid="u-ok"), envelope(case("tcp_reset"), uid="u-rst"),
            envelope(case("blockpage_pk"), url="http://www.facebook.com/", uid="u-bp")]
    f = _write(tmp_path / "m.jsonl", docs)
    out = run("classify", str(f), "--format", "json")
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert [r["line"] for r in rows] == [1, 2, 3]
    assert all(CONTRACT_KEYS <= r.keys() for r in rows)
    assert [(r["measurement_uid"], r["verdict"]) for r in rows] == [
        ("u-ok", "ok"), ("u-rst", "tcp_reset"), ("u-bp", "http_blockpage")]
    assert rows[0]["platform"] == "facebook" and rows[0]["test_name"] == "web_connectivity"
    assert rows[1]["ooni_blocking"] == "tcp_ip"


def test_malformed_lines_are_reported_with_file_line_and_the_rest_classified(
        tmp_path: Path, run: Callable[..., Result]) -> None:
    docs = [envelope(case("ok"), uid="a"), envelope(case("dns_nxdomain"), uid="b")]
    f = _write(tmp_path / "bad.jsonl", docs, bad_at=2)
    out = run("classify", str(f))
    assert out.returncode == 1
    assert f"{f}:2:" in out.stderr and "invalid JSON" in out.stderr
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert [(r["line"], r["verdict"]) for r in rows] == [(1, "ok"), (3, "dns_tampering")]


def test_classify_reads_gzip_and_real_ooni_files_and_tables(tmp_path: Path, run: Callable[..., Result]) -> None:
    gz = tmp_path / "m.jsonl.gz"
    with gzip.open(gz, "wt", encoding="utf-8") as fh:
        fh.write((OONI / "measurements.jsonl").read_text(encoding="utf-8"))
    out = run("classify", str(gz))
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert len(rows) == 76
    by_line = {r["line"]: r for r in rows}
    assert by_line[24]["verdict"] == "dns_tampering" and by_line[24]["ooni_blocking"] == "dns"
    assert by_line[47]["ooni_blocking"]["telegram_web_status"] == "blocked"
    table = run("classify", str(OONI / "netem_qa" / "dnsBlockingNXDOMAIN" / "measurement.json"), "-f", "table")
    assert table.returncode == 0 and "dns_tampering" in table.stdout and "dns.nxdomain" in table.stdout


def test_classify_help_ends_with_an_example_and_bad_format_is_a_clear_error(
        tmp_path: Path, run: Callable[..., Result]) -> None:
    for cmd in ("classify", "reclassify"):
        out = run(cmd, "--help")
        assert out.returncode == 0 and "Example: observatory " + cmd in out.stdout
    f = _write(tmp_path / "m.jsonl", [envelope(case("ok"))])
    out = run("classify", str(f), "--format", "xml")
    assert out.returncode == 2 and "--format 'xml'" in out.stderr
    out = run("classify", str(tmp_path / "missing.jsonl"))
    assert out.returncode == 1 and "missing.jsonl" in out.stderr


def test_reclassify_recomputes_stored_verdicts_from_raw_documents(tmp_path: Path, run: Callable[..., Result]) -> None:
    db = str(tmp_path / "obs.duckdb")
    docs = [envelope(case(n), uid=f"u{i}") for i, n in enumerate(["ok", "tcp_reset", "dns_bogon", "throttling"])]
    f = _write(tmp_path / "m.jsonl", docs)
    store = DuckDBStore(db)
    try:
        ingest_paths(store, [f], rejects_path=tmp_path / "rejects.jsonl")
        before = {r["uid"]: r["verdict"] for r in store.measurements(MeasurementFilter(), limit=10, offset=0)}
        assert before == {"u0": "ok", "u1": "tcp_reset", "u2": "dns_tampering", "u3": "throttling"}
        # simulate verdicts written by older rules: reclassify must put the right ones back
        store._con.execute("UPDATE measurements SET verdict = 'unknown', kbps = NULL")  # type: ignore[attr-defined]
    finally:
        store.close()
    out = run("reclassify", "--db", db, "--format", "json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["changed"] == 4
    store = DuckDBStore(db)
    try:
        after = {r["uid"]: (r["verdict"], r["kbps"])
                 for r in store.measurements(MeasurementFilter(), limit=10, offset=0)}
    finally:
        store.close()
    assert {u: v for u, (v, _) in after.items()} == before
    assert after["u3"][1] == 256.0 and after["u1"][1] is None
    again = run("reclassify", "--db", db, "--format", "json")
    assert json.loads(again.stdout)["changed"] == 0


def test_reclassify_tells_what_changed_by_rule_and_which_rows_older_rules_decided(
        tmp_path: Path, run: Callable[..., Result]) -> None:
    db = str(tmp_path / "obs.duckdb")
    f = _write(tmp_path / "m.jsonl",
               [envelope(case(n), uid=f"u{i}") for i, n in enumerate(["ok", "tcp_reset", "dns_bogon", "throttling"])])
    store = DuckDBStore(db)
    try:
        ingest_paths(store, [f], rejects_path=tmp_path / "rejects.jsonl")
        # as an older version of the rules left them: u1 decided by tcp.timeout; u2 stored before rules were kept
        con = store._con  # type: ignore[attr-defined]
        con.execute("UPDATE measurements SET verdict = 'tcp_blackhole', verdict_rule = 'tcp.timeout', "
                    "rules_version = 'older' WHERE uid = 'u1'")
        con.execute("UPDATE measurements SET verdict_rule = NULL, rules_version = NULL WHERE uid = 'u2'")
    finally:
        store.close()
    out = run("reclassify", "--db", db, "--format", "json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["changed"] == 1 and report["measurements"] == 4 and report["rule_recorded"] == 1
    assert report["by_rule"] == [{"from_rule": "tcp.timeout", "to_rule": "tcp.reset", "from_verdict": "tcp_blackhole",
                                  "to_verdict": "tcp_reset", "measurements": 1, "examples": ["u1"]}]
    assert report["by_verdict"] == [{"from_verdict": "tcp_blackhole", "to_verdict": "tcp_reset", "measurements": 1}]
    assert report["older_rules"] == 2 and report["older_rules_versions"] == [
        {"rules_version": "older", "measurements": 1}, {"rules_version": None, "measurements": 1}]
    again = run("reclassify", "--db", db)  # text; every row now carries the current version
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines() == ["reclassified: 0 verdicts changed",
                                         f"4 measurements judged by rules version {report['rules_version']}"]
    store = DuckDBStore(db)
    try:
        store._con.execute("UPDATE measurements SET verdict = 'tcp_blackhole', verdict_rule = 'tcp.timeout', "  # type: ignore[attr-defined]
                           "rules_version = 'older' WHERE uid = 'u1'")
    finally:
        store.close()
    text = run("reclassify", "--db", db, "--format", "text").stdout
    assert "decided by an older rules version: 1 (older: 1)" in text
    assert "by rule (old -> new):\n  1  tcp.timeout -> tcp.reset  (tcp_blackhole -> tcp_reset; e.g. u1)" in text
    assert "by verdict (old -> new):\n  1  tcp_blackhole -> tcp_reset" in text
