"""The report commands over a real DuckDB store filled from a small simulated day (simulator -> ingest), with
incidents saved and context events entered through the CLI: report in every format, assess, events add/import
(CSV and ICS, all or nothing), alert with dedupe, and clear errors."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image
from report_world import incident, utc

from observatory.ingest import ingest_paths
from observatory.simulate.generator import generate
from observatory.simulate.scenario import load_scenario
from observatory.store.duckdb import DuckDBStore

with warnings.catch_warnings():
    # typer imports a click helper click 8.2 deprecates: a third-party import-time warning, not our code's
    warnings.simplefilter("ignore", DeprecationWarning)
    from typer.testing import CliRunner

    from observatory.cli import app

SCENARIO = """
name = "report-cli-day"
seed = 7
start = "2024-01-19T12:00:00Z"
end = "2024-01-21T00:00:00Z"
interval_minutes = 30
targets = ["twitter", "facebook", "control"]

[[country]]
code = "PK"
timezone = "Asia/Karachi"

  [[country.network]]
  asn = 17557
  name = "Pakistan Telecommunication Company Limited"
  type = "fixed"
  probes = 2
  regions = ["Punjab"]

  [[country.network]]
  asn = 45669
  name = "Mobilink-PK"
  type = "mobile"
  probes = 2
  regions = ["Sindh"]

[[event]]
kind = "platform_restriction"
country = "PK"
platforms = ["twitter", "facebook"]
technique = "tls_interference"
start = "2024-01-20T14:00:00Z"
end = "2024-01-20T17:00:00Z"
coverage = 1.0
"""
INCIDENT_ID = "PK-20240120-1400-platform_restriction"
runner = CliRunner()


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("report_cli")
    (root / "day.toml").write_text(SCENARIO)
    lines = b"".join(line if line.endswith(b"\n") else line + b"\n"
                     for _, line in generate(load_scenario(root / "day.toml")))
    (root / "day.jsonl").write_bytes(lines)
    path = str(root / "obs.duckdb")
    store = DuckDBStore(path)
    try:
        summary = ingest_paths(store, [root / "day.jsonl"], rejects_path=root / "rejects.jsonl")
        assert summary.accepted > 500
        inc = incident(id=INCIDENT_ID, start=utc(2024, 1, 20, 14), end=utc(2024, 1, 20, 17), status="ended",
                       asns=(17557, 45669), platforms=("twitter", "facebook"),
                       evidence={"by_technique": {"tls_interference": 40}})
        earlier = incident(id="PK-20240107-1300-platform_restriction", start=utc(2024, 1, 7, 13),
                           end=utc(2024, 1, 7, 18), status="ended", asns=(17557, 45669), platforms=("twitter",))
        store.save_incidents([earlier, inc])
    finally:
        store.close()
    yield path


def test_entry_point_runs_as_a_process(db: str) -> None:
    res = subprocess.run([sys.executable, "-m", "observatory", "report", "PK-nope", "--db", db],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and res.stderr.startswith("error: incident 'PK-nope' is not in the store")


def test_events_add_and_report_text_mentions_it(db: str) -> None:
    res = runner.invoke(app, ["events", "add", "--db", db, "--country", "pk", "--time", "2024-01-20T15:00:00Z",
                              "--title", "the PTI virtual rally", "--url", "https://example.org/rally"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["report", INCIDENT_ID, "--db", db, "--format", "text"])
    assert res.exit_code == 0, res.output
    first = res.output.splitlines()[0]
    assert first.startswith("Restored: X/Twitter and Facebook are reachable again across Pakistan as of 22:00 PKT")
    assert "on all 2 networks measured" in first  # counted from the stored series
    assert "This is the second disruption in 13 days, after 7 January." in first
    assert "It began 1 hour before the PTI virtual rally (20:00 PKT)." in first
    assert "control sites stayed" in res.output  # control reachability read from the series
    assert "Estimated cost: US$" in res.output and "World Bank WDI, CC BY 4.0" in res.output


def test_report_png_and_html(db: str, tmp_path: Path) -> None:
    png, html = tmp_path / "r.png", tmp_path / "r.html"
    assert runner.invoke(app, ["report", INCIDENT_ID, "--db", db, "--format", "png", "--out", str(png)]).exit_code == 0
    img = Image.open(io.BytesIO(png.read_bytes()))
    assert img.format == "PNG" and 900 <= img.size[0] <= 1400 and png.stat().st_size > 30_000
    res = runner.invoke(app, ["report", INCIDENT_ID, "--db", db, "--format", "html", "--out", str(html)])
    assert res.exit_code == 0
    page = html.read_text()
    assert "data:image/png;base64," in page and "<script" not in page


def test_report_json_and_assess(db: str) -> None:
    res = runner.invoke(app, ["report", INCIDENT_ID, "--db", db, "--format", "json"])
    doc = json.loads(res.output)
    assert doc["incident"]["id"] == INCIDENT_ID and doc["networks_measured"] == 2
    res = runner.invoke(app, ["assess", INCIDENT_ID, "--db", db, "--claim", "technical_fault", "--format", "json"])
    a = json.loads(res.output)
    assert {p["test"] for p in a["against"]} >= {"targeting", "simultaneity", "technique"}
    assert a["conclusion"].startswith("The data contradicts a technical fault")
    text = runner.invoke(app, ["assess", INCIDENT_ID, "--db", db]).output
    assert "Against the claim:" in text and "Conclusion:" in text


def test_events_import_csv_and_ics(db: str, tmp_path: Path) -> None:
    csv_file = tmp_path / "ev.csv"
    csv_file.write_text("time,country,title,url\n2024-01-19T10:00:00Z,PK,Court hearing,\n"
                        "2024-01-21T09:00:00+05:00,PK,Press conference,https://example.org/pc\n")
    assert runner.invoke(app, ["events", "import", str(csv_file), "--db", db]).exit_code == 0
    ics = tmp_path / "ev.ics"
    ics.write_text("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nBEGIN:VEVENT\r\nDTSTART;TZID=Asia/Karachi:20240120T190000\r\n"
                   "SUMMARY:Opposition\\, online\r\n  town hall\r\nLOCATION:PK\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n")
    assert runner.invoke(app, ["events", "import", str(ics), "--db", db]).exit_code == 0
    listed = [json.loads(x) for x in runner.invoke(app, ["events", "list", "--db", db, "--country", "PK",
                                                        "--format", "json"]).output.splitlines()]
    titles = {e["title"]: e for e in listed}
    assert titles["Press conference"]["time"] == "2024-01-21T04:00:00Z"
    assert titles["Opposition, online town hall"]["time"] == "2024-01-20T14:00:00Z"
    # importing again replaces rather than duplicates
    assert runner.invoke(app, ["events", "import", str(csv_file), "--db", db]).exit_code == 0
    again = runner.invoke(app, ["events", "list", "--db", db, "--format", "json"]).output.splitlines()
    assert len(again) == len(listed)


def test_bad_event_file_names_the_line_and_stores_nothing(db: str, tmp_path: Path, run) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("time,country,title\n2024-02-01T10:00:00Z,PK,Fine\n2024-02-02,Pakistan,Bad country\n")
    res = run("events", "import", str(bad), "--db", db)
    assert res.code == 2
    assert f"{bad}:3" in res.err and "two-letter" in res.err
    listed = runner.invoke(app, ["events", "list", "--db", db, "--format", "json"]).output
    assert "Fine" not in listed


def test_unknown_incident_and_bad_flags_are_clear_errors(db: str, run) -> None:
    res = run("report", "PK-nope", "--db", db)
    assert res.code == 2 and "incident 'PK-nope' is not in the store" in res.err
    res = run("report", INCIDENT_ID, "--db", db, "--format", "pdf")
    assert res.code == 2 and "--format 'pdf'" in res.err
    res = run("assess", INCIDENT_ID, "--db", db, "--claim", "aliens")
    assert res.code == 2 and "technical_fault" in res.err
    res = run("events", "add", "--db", db, "--country", "PK", "--time", "yesterday", "--title", "x")
    assert res.code == 2 and "--time" in res.err


def test_alert_command_sends_once(db: str, tmp_path: Path, run) -> None:  # type: ignore[no-untyped-def]
    from test_report_deliver import Receiver

    with Receiver(statuses=[500]) as rx:
        first = run("alert", "--db", db, "--webhook", rx.url, "--secret", "k", "--since", "2024-01-20")
        second = run("alert", "--db", db, "--webhook", rx.url, "--secret", "k", "--since", "2024-01-20")
    assert first.code == 0, first.err
    assert "2 sent, 0 failed" in first.err  # confirmed and ended of the one incident since the 20th
    assert "0 sent, 0 failed" in second.err
    assert len(rx.requests) == 3  # one 500 retried, then two deliveries; nothing on the second run


@pytest.mark.parametrize("command", [["report"], ["assess"], ["events", "add"], ["events", "import"],
                                     ["events", "list"], ["alert"]])
def test_help_ends_with_an_example(command: list[str]) -> None:
    res = runner.invoke(app, [*command, "--help"], terminal_width=200)
    assert res.exit_code == 0
    assert "Example: observatory " in res.output
