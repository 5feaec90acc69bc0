"""Names that came from outside (a probe's network name, an event title) reach webhooks, Markdown reports and
CSV exports as text: no Slack <!channel>, no link with a false label, no raw HTML, no spreadsheet formula."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from report_world import incident, utc
from store_world import document

from observatory.encoding import csv_cell, markdown_text, slack_text
from observatory.report import build_report, render
from observatory.report.deliver import payload
from observatory.store.base import ContextEvent, MeasurementFilter
from observatory.store.duckdb import DuckDBStore
from observatory.web.collector import store_batch

EVIL_NET = "<!channel> <https://evil.example|click here> @here [login](https://evil.example) <b>x</b>"
START, END = utc(2024, 1, 20, 14, 5), utc(2024, 1, 20, 17, 10)


def _evil_incident():  # type: ignore[no-untyped-def]
    """A network-level incident on one network whose name (as the probes sent it) is an injection attempt."""
    return incident(scope="network", asns=(17557,), evidence={
        "networks_measured": 6, "networks": [{"asn": "AS17557", "name": EVIL_NET, "onset": "2024-01-20T14:05:00Z"}]})


def test_the_hostile_name_reaches_the_statement() -> None:
    """The premise of the tests below: the name is in what the channels are sent."""
    text = payload(_evil_incident(), "confirmed", style="json", base_url=None)["statement"]
    assert "<!channel>" in text


def test_slack_payload_neutralises_mentions_and_links() -> None:
    text = payload(_evil_incident(), "confirmed", style="slack", base_url="https://obs.example.org")["text"]
    assert "<!channel>" not in text and "&lt;!channel&gt;" in text
    assert "<https://evil.example" not in text
    assert "@here" not in text, "Mattermost's room mention is broken by a zero-width space"
    assert "](https://evil.example)" not in text
    assert text.endswith("<https://obs.example.org/incident/PK-test|Details>"), "our own link is still a link"
    assert text.startswith("*Confirmed: ")


def test_matrix_payload_is_escaped_html() -> None:
    doc = payload(_evil_incident(), "confirmed", style="matrix", base_url="https://obs.example.org")
    assert doc["msgtype"] == "m.notice" and doc["format"] == "org.matrix.custom.html"
    html = doc["formatted_body"]
    assert "<b>x</b>" not in html and "&lt;b&gt;x&lt;/b&gt;" in html
    assert html.startswith("<b>Confirmed: ") and '<a href="https://obs.example.org/incident/PK-test">' in html
    assert "@room" not in payload(incident(id="@room"), "confirmed", style="matrix", base_url="https://o.example")[
        "formatted_body"]


def test_markdown_report_escapes_html_and_links() -> None:
    inc = _evil_incident().with_(start=START, end=END, status="ended")
    events = [ContextEvent(id="e", country="PK", time=utc(2024, 1, 20, 15),
                           title="<script>alert(1)</script> [click](javascript:alert(1))", url=None)]
    md = str(render(build_report(inc, events=events), "md"))
    assert "<script>" not in md and "&lt;script&gt;" in md
    assert "[click](javascript" not in md
    assert "<b>x</b>" not in md and "<!channel>" not in md


def test_csv_export_neutralises_formulas(tmp_path: Path) -> None:
    store = DuckDBStore(str(tmp_path / "obs.duckdb"))
    try:
        values = {"UID": "u1", "TIME": "2024-01-15 10:00:00", "CC": "PK", "ASN": "AS17557",
                  "NET": '=HYPERLINK(\\"https://evil.example\\",\\"x\\")', "INPUT": "https://x.com/",
                  "REGION": "@SUM(A1)", "PROBE": "p", "TLSFAIL": "null"}
        other = dict(values, UID="u2", NET="-2+3", REGION="\\tcmd")
        assert store_batch(store, [json.loads(document(v)) for v in (values, other)])["accepted"] == 2
        out = tmp_path / "x.csv"
        store.export(MeasurementFilter(), "csv", str(out))
        rows = list(csv.DictReader(out.open(newline="")))
    finally:
        store.close()
    assert [r["network"] for r in rows] == ["'=HYPERLINK(\"https://evil.example\",\"x\")", "'-2+3"]
    assert [r["region"] for r in rows] == ["'@SUM(A1)", "'\tcmd"]
    assert rows[0]["input"] == "https://x.com/" and float(rows[0]["kbps"]) > 0, "plain cells are unchanged"


def test_encoders() -> None:
    assert csv_cell("=1+2") == "'=1+2" and csv_cell("AS17557") == "AS17557" and csv_cell("") == ""
    assert slack_text("a & b <c>") == "a &amp; b &lt;c&gt;"
    assert markdown_text("<i>[a](b)</i> | c") == "&lt;i&gt;\\[a\\](b)&lt;/i&gt; \\| c"
    assert json.loads(json.dumps(slack_text("@channel")))[1] == "\u200b"
