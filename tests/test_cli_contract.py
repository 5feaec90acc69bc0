"""The command line's contract with the people and scripts that use it (README, "Exit status"):

0 all good; 1 done, but some input was rejected (counted, with file:line, the good part kept); 2 a usage or input
error (one line, no traceback); 3 the store is unavailable. Commands that only read never create a store; country
codes are ISO 3166-1; and the smaller promises a newcomer trips over (issue 21).

Commands run through the real entry point (`observatory.cli.main`, its error handling included) on real DuckDB
files; `serve` and `probe` run as processes on real sockets.
"""

from __future__ import annotations

import gzip
import json
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import click
import httpx
import pytest
import typer
from conftest import Result

from observatory import __version__
from observatory.cli import app
from observatory.ingest import ingest_paths
from observatory.store.duckdb import DuckDBStore
from tests.report_world import incident

ROOT = Path(__file__).resolve().parent.parent
OONI = ROOT / "tests" / "data" / "ooni"
LONG_ID = "PK-20231217-1455-platform_restriction"

# Every command that takes --db is one or the other: a new command must say which (see the test below).
CREATES_STORE = {"ingest", "events add", "events import", "probes add", "ooni sync", "signals import", "pinger",
                 "serve", "demo", "lab run"}
NEEDS_STORE = {  # command -> the other arguments it needs to get as far as opening the store
    "stats": [], "detect": [], "report": [LONG_ID], "assess": [LONG_ID], "events list": [], "reclassify": [],
    "probes list": [], "probes revoke": ["lahore-1"], "probes purge": ["lahore-1"],
    "alert": ["--webhook", "http://127.0.0.1:9/"], "export": ["--out", "{tmp}/out.jsonl"], "signals list": [],
}


def _good(uid: str, day: datetime | None = None) -> str:
    t = (day or datetime(2024, 1, 20, 13, 45, tzinfo=UTC)).strftime("%Y-%m-%d %H:%M:%S")
    return json.dumps({"measurement_uid": uid, "measurement_start_time": t, "probe_cc": "PK",
                       "probe_asn": "AS17557", "test_name": "web_connectivity", "input": "https://twitter.com/",
                       "test_keys": {}})


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Real OONI measurements, an incident with one of the longest ids detection makes, and 30 days of data."""
    root = tmp_path_factory.mktemp("contract")
    days = root / "days.jsonl"
    days.write_text("\n".join(_good(f"d{i}", datetime(2024, 1, 1, 12, tzinfo=UTC) + timedelta(days=i))
                              for i in range(30)) + "\n")
    path = str(root / "obs.duckdb")
    store = DuckDBStore(path)
    try:
        assert ingest_paths(store, [OONI / "measurements.jsonl", days], rejects_path=root / "r.jsonl").rejected == 0
        store.save_incidents([incident(id=LONG_ID, start=datetime(2023, 12, 17, 14, 55, tzinfo=UTC))])
    finally:
        store.close()
    return path


def _commands() -> dict[str, click.Command]:
    out: dict[str, click.Command] = {}

    def walk(cmd: click.Command, prefix: str) -> None:
        if isinstance(cmd, click.Group):
            for name, sub in cmd.commands.items():
                walk(sub, f"{prefix} {name}".strip())
        else:
            out[prefix] = cmd

    walk(typer.main.get_command(app), "")
    return out


def _one_line_error(r: Result) -> bool:
    return r.err.startswith("error: ") and r.err.count("\n") == 1 and "Traceback" not in r.err


# --- 2: usage errors, every command ---------------------------------------------------------------------------

def test_every_command_answers_a_usage_error_with_exit_2_and_one_line(run: Callable[..., Result]) -> None:
    bad = {}
    for name in _commands():
        r = run(*name.split(), "--no-such-option")
        if r.code != 2 or not _one_line_error(r) or r.out:
            bad[name] = (r.code, r.err)
    assert not bad, bad


def test_a_typo_is_answered_with_its_suggestion_once(run: Callable[..., Result]) -> None:
    for args, hint in ((["stat"], "'stats'"), (["probes", "lst"], "'list'"), (["detect", "--formt", "x"],
                                                                              "'--format'")):
        r = run(*args)
        assert r.code == 2 and _one_line_error(r) and r.err.count("Did you mean") == 1 and hint in r.err, r.err


def test_version(run: Callable[..., Result]) -> None:
    r = run("--version")
    assert r.code == 0 and r.out.strip() == f"observatory {__version__}"


# --- 3: the store ---------------------------------------------------------------------------------------------

def test_every_command_with_a_store_either_creates_it_or_needs_it() -> None:
    with_db = {name for name, cmd in _commands().items() if any("--db" in p.opts for p in cmd.params)}
    assert with_db == CREATES_STORE | set(NEEDS_STORE), (with_db - CREATES_STORE - set(NEEDS_STORE),
                                                         (CREATES_STORE | set(NEEDS_STORE)) - with_db)


def test_commands_that_need_a_store_never_create_one(tmp_path: Path, run: Callable[..., Result]) -> None:
    typo = tmp_path / "obs.duckb"
    bad = {}
    for name, extra in NEEDS_STORE.items():
        r = run(*name.split(), "--db", str(typo), *[a.format(tmp=tmp_path) for a in extra])
        if r.code != 3 or not _one_line_error(r) or str(typo) not in r.err or typo.exists():
            bad[name] = (r.code, r.err, typo.exists())
    assert not bad, bad


# --- 1: rejected input ----------------------------------------------------------------------------------------

def test_ingest_with_a_bad_line_exits_1_keeps_the_good_and_names_the_line(tmp_path: Path,
                                                                          run: Callable[..., Result]) -> None:
    f = tmp_path / "m.jsonl"
    f.write_text(_good("a") + "\n{bad\n" + _good("b") + "\n")
    db = str(tmp_path / "o.duckdb")
    r = run("ingest", str(f), "--db", db, "--format", "json")
    assert r.code == 1 and f"{f}:2" in r.err
    summary = json.loads(r.out)
    assert summary["accepted"] == 2 and summary["rejected"] == 1
    assert run("stats", "--db", db, "--format", "json").out.count('"measurements": 2') == 1


def test_ingest_of_a_gzip_cut_short_exits_1_and_keeps_what_came_before(tmp_path: Path,
                                                                      run: Callable[..., Result]) -> None:
    whole = gzip.compress(("\n".join(_good(f"u{i}") for i in range(3000)) + "\n").encode())
    f = tmp_path / "cut.jsonl.gz"
    f.write_bytes(whole[: len(whole) // 2])
    r = run("ingest", str(f), "--db", str(tmp_path / "o.duckdb"), "--format", "text")
    assert r.code == 1 and "cut short" in r.err
    assert "accepted 0 " not in r.out and r.out.startswith("files 1")


def test_a_clean_ingest_exits_0(tmp_path: Path, run: Callable[..., Result]) -> None:
    r = run("ingest", str(OONI / "measurements.jsonl"), "--db", str(tmp_path / "o.duckdb"))
    assert r.code == 0 and "rejected 0" in r.out


def test_the_readme_classify_exits_0_and_names_rows_by_their_file(run: Callable[..., Result],
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    r = run("classify", "tests/data/ooni/netem_qa", "--format", "table")
    assert r.code == 0, r.err
    cases = sorted(p.parent.name for p in (OONI / "netem_qa").glob("*/measurement.json"))
    assert all(f"{c}/measurement.json:1" in r.out for c in cases)


# --- 2: input errors ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("given,hint", [("Pakistan", "PK (Pakistan)"), ("XX", "not an ISO 3166-1"),
                                        ("Germny", "DE (Germany)")])
def test_a_country_that_is_not_an_iso_code_is_an_error_with_close_matches(
        db: str, given: str, hint: str, run: Callable[..., Result]) -> None:
    for cmd in (["detect"], ["export", "--out", "/dev/null"], ["events", "list"]):
        r = run(*cmd, "--db", db, "--country", given)
        assert r.code == 2 and _one_line_error(r) and hint in r.err, (cmd, r.err)


def test_alpha_3_codes_are_the_same_country(tmp_path: Path, run: Callable[..., Result]) -> None:
    db = str(tmp_path / "o.duckdb")
    added = run("events", "add", "--db", db, "--country", "pak", "--time", "2024-01-20T15:00:00Z", "--title", "rally")
    assert added.code == 0 and " PK " in added.out
    listed = run("events", "list", "--db", db, "--country", "PAK", "--format", "json")
    assert listed.code == 0 and json.loads(listed.out)["country"] == "PK"


def test_since_after_until_is_an_error_not_an_empty_answer(db: str, run: Callable[..., Result]) -> None:
    for cmd in (["detect"], ["export", "--out", "/dev/null"]):
        r = run(*cmd, "--db", db, "--since", "2024-01-21", "--until", "2024-01-20")
        assert r.code == 2 and _one_line_error(r) and "--since" in r.err, (cmd, r.err)


def test_report_into_a_missing_directory_is_one_line(db: str, run: Callable[..., Result]) -> None:
    r = run("report", LONG_ID, "--db", db, "--format", "png", "--out", "/missing/dir/x.png")
    assert r.code == 2 and _one_line_error(r) and "/missing/dir" in r.err


# --- smaller promises -----------------------------------------------------------------------------------------

def test_the_detect_table_keeps_ids_whole_on_a_narrow_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    from observatory.cli.detect import _table

    capsys.readouterr()
    _table([incident(id=LONG_ID)], width=100)
    assert LONG_ID in capsys.readouterr().out


def test_stats_tables_show_the_newest_days_first_and_say_where_they_stop(db: str,
                                                                        run: Callable[..., Result]) -> None:
    r = run("stats", "--db", db)
    assert r.code == 0
    days = [line.split()[0] for line in r.out.splitlines() if line.strip()[:4] in ("2023", "2024", "2025")]
    assert len(days) == 20 and days == sorted(days, reverse=True)
    assert "20 of " in r.out and "--format json for all" in r.out


def test_a_revoked_name_gets_advice_that_works(tmp_path: Path, run: Callable[..., Result]) -> None:
    db = str(tmp_path / "o.duckdb")
    assert run("probes", "add", "lahore-1", "--db", db).code == 0
    assert run("probes", "revoke", "lahore-1", "--db", db).code == 0
    again = run("probes", "add", "lahore-1", "--db", db)
    assert again.code == 2 and _one_line_error(again) and "lahore-1-2" in again.err
    advised = run("probes", "add", "lahore-1-2", "--db", db, "--format", "text")
    assert advised.code == 0 and "token " in advised.out and "secret " in advised.out


def _python_cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "observatory", *args]


def test_serve_on_a_busy_port_fails_before_saying_it_serves(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        r = subprocess.run(_python_cli("serve", "--db", str(tmp_path / "o.duckdb"), "--port", str(port)),
                           capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert r.returncode == 2 and "cannot listen" in r.stderr and "serving" not in r.stderr + r.stdout


class _Ok(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - the standard library's name
        body = b"<html><body>a page</body></html>"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def site() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Ok)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


def test_probe_without_a_helper_warns_that_verdicts_will_be_unknown(tmp_path: Path, site: str) -> None:
    targets = tmp_path / "targets.txt"
    targets.write_text(site + "\n")
    out = tmp_path / "mine.jsonl"
    r = subprocess.run(_python_cli("probe", "--targets", str(targets), "--once", "--out", str(out), "--cc", "PK",
                                   "--asn", "AS17557", "--state-dir", str(tmp_path), "--spool", str(tmp_path)),
                       capture_output=True, text=True, timeout=180, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert "no --helper" in r.stderr and "`unknown`" in r.stderr
    # and the warning is true: the measurement of a working site is judged unknown without the control
    verdicts = subprocess.run(_python_cli("classify", str(out)), capture_output=True, text=True, timeout=120,
                              cwd=ROOT)
    assert [json.loads(line)["verdict"] for line in verdicts.stdout.splitlines()] == ["unknown"]


# --- the demo's own probe and the collector's rate ------------------------------------------------------------

def test_the_services_own_replay_is_not_rate_limited_but_outside_probes_are(tmp_path: Path) -> None:
    from observatory.simulate.output import sign
    from observatory.web import WebSettings, create_app
    from observatory.web.auth import create_probe
    from observatory.web.collector import MAX_ITEMS, PROBE_BURST
    from observatory.web.server import ServerThread

    store = DuckDBStore(str(tmp_path / "o.duckdb"))
    # the demo registers its replay as a relay (no per-probe quota: it carries many probes)
    demo, outside = create_probe(store, "demo-1", relay=True), create_probe(store, "outside-1")
    application = create_app(WebSettings(detect_every_seconds=0), store, detector=None)
    application.state.unlimited_probes = {"demo-1"}  # what `observatory demo` sets for its replay
    server = ServerThread(application)
    base = f"http://127.0.0.1:{server.start()}"

    def send(cred: dict[str, str], batches: int) -> list[int]:
        """Status of each batch, sent back to back; stops at the first refusal."""
        codes: list[int] = []
        with httpx.Client(base_url=base, timeout=120) as http:
            while len(codes) < batches and 429 not in codes:
                items = [json.loads(_good(uuid.uuid4().hex)) for _ in range(MAX_ITEMS)]
                body = json.dumps({"measurements": items}).encode()
                codes.append(http.post("/api/v1/measurements", content=body, headers={
                    "Authorization": f"Bearer {cred['token']}", "X-Observatory-Signature": sign(body, cred["secret"]),
                    "Content-Type": "application/json"}).status_code)
        return codes

    try:
        # an outside probe sending as fast as it can is held back (by its rate or its hourly quota)...
        held = send(outside, 40)
        assert held[-1] == 429 and len(held) <= PROBE_BURST // MAX_ITEMS + 1, held
        # ...while the replay, sending more the same way, never is
        assert send(demo, len(held) + 1) == [200] * (len(held) + 1)
    finally:
        server.stop()
        store.close()
