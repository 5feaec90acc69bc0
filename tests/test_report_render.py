"""Charts (a real PNG of sane size), the self-contained HTML report, the other renderings, and the Atom feed
parsed back with feedparser."""

from __future__ import annotations

import io
import json
import re
from datetime import timedelta

import feedparser
import pytest
from PIL import Image
from report_world import cells, incident, utc

from observatory.errors import ConfigError
from observatory.report import atom_feed, build_report, render, render_html_fragment
from observatory.report.charts import chart_window, incident_chart
from observatory.store.base import ContextEvent

START, END = utc(2024, 1, 20, 14, 5), utc(2024, 1, 20, 17, 10)


@pytest.fixture(scope="module")
def report_parts():  # type: ignore[no-untyped-def]
    inc = incident(start=START, end=END, status="ended")
    earlier = [incident(id="a", start=utc(2023, 12, 17, 15), end=utc(2023, 12, 17, 22), status="ended"),
               incident(id="b", start=utc(2024, 1, 7, 13), end=utc(2024, 1, 7, 18, 30), status="ended")]
    day_start, day_end = chart_window(inc)
    series = cells(start=day_start, end=day_end, blocked=[(START, END)], bucket=timedelta(minutes=15))
    events = [ContextEvent(id="e", country="PK", time=utc(2024, 1, 20, 15), title="the PTI virtual rally",
                           url="https://example.org/rally")]
    return inc, earlier, series, events


def test_chart_window_is_the_local_day() -> None:
    start, end = chart_window(incident(start=utc(2024, 1, 20, 8), end=utc(2024, 1, 20, 12)))
    assert start == utc(2024, 1, 19, 19, 0)  # midnight PKT
    assert end - start == timedelta(days=1)
    # an evening incident ending 22:10 PKT: stretched past midnight so its end and recovery show
    start, end = chart_window(incident(start=START, end=END))
    assert start == utc(2024, 1, 19, 19, 0) and end == END + timedelta(hours=3)


def test_chart_is_a_png_of_phone_friendly_size(report_parts) -> None:  # type: ignore[no-untyped-def]
    inc, earlier, series, _ = report_parts
    png = incident_chart(inc, series, previous=earlier)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    img = Image.open(io.BytesIO(png))
    width, height = img.size
    assert 900 <= width <= 1400  # legible on a phone without being a poster
    assert height > width  # panels stacked for scrolling
    assert 30_000 < len(png) < 2_000_000
    # not a blank canvas: many distinct colours (lines, shading, legend)
    assert len(img.convert("RGB").getcolors(maxcolors=1 << 20) or []) > 50


def test_chart_without_history_and_for_a_shutdown(report_parts) -> None:  # type: ignore[no-untyped-def]
    inc, _, series, _ = report_parts
    shutdown = inc.with_(kind="connectivity_loss", platforms=())
    png = incident_chart(shutdown, series)
    assert Image.open(io.BytesIO(png)).size[0] >= 900


def test_html_is_self_contained_with_the_chart_embedded(report_parts) -> None:  # type: ignore[no-untyped-def]
    inc, earlier, series, events = report_parts
    r = build_report(inc, history_candidates=earlier, events=events, cells=series, chart=True)
    html = render(r, "html")
    assert isinstance(html, str)
    assert '<img alt="Reachability' in html and "data:image/png;base64," in html
    # nothing fetched from elsewhere: no src/href to another origin, no scripts or stylesheets by URL
    assert not re.search(r'(src|href)\s*=\s*"(https?:)?//', html)
    assert "<script" not in html and "<link" not in html
    assert "third disruption in just over a month" in html
    assert "PTI virtual rally" in html and "World Bank WDI, CC BY 4.0" in html
    fragment = render_html_fragment(r)
    assert fragment.startswith('<section class="obs-report">') and "<html" not in fragment


def test_text_markdown_and_json_say_the_same_thing(report_parts) -> None:  # type: ignore[no-untyped-def]
    inc, earlier, series, events = report_parts
    r = build_report(inc, history_candidates=earlier, events=events, cells=series)
    text, md, js = render(r, "text"), render(r, "md"), json.loads(str(render(r, "json")))
    assert isinstance(text, str) and isinstance(md, str)
    assert text.startswith(r.statement)
    assert r.statement in md and md.startswith("# Ended: platform restriction")
    assert js["statement"] == r.statement
    assert js["incident"]["id"] == inc.id
    assert js["history"]["ordinal"] == 3 and js["history"]["previous"] == ["a", "b"]
    assert [e["title"] for e in js["events"]] == ["the PTI virtual rally"]
    assert js["networks_measured"] == 6
    assert js["cost"]["usd_low"] < js["cost"]["usd_high"]
    assert js["assessment"]["claim"] == "technical_fault" and js["assessment"]["against"]


def test_png_without_series_is_a_clear_error() -> None:
    r = build_report(incident(), chart=True)
    with pytest.raises(ConfigError, match="no measurement series"):
        render(r, "png")
    assert "No measurement series" in str(render(r, "text"))


def test_atom_feed_validates_and_has_an_entry_per_stage() -> None:
    ended = incident(id="PK-1", start=START, end=END, status="ended")
    confirmed = incident(id="PK-2", start=utc(2024, 1, 21, 10), status="confirmed")
    suspected = incident(id="IR-1", country="IR", start=utc(2024, 1, 21, 11), status="suspected", confirmed_at=None,
                         platforms=("telegram",), asns=(197207,), evidence={})
    outage = incident(id="WW-1", country=None, kind="platform_outage", start=utc(2024, 1, 22, 8), asns=(),
                      platforms=("facebook",), evidence={}, confirmed_at=utc(2024, 1, 22, 8, 20))
    xml = atom_feed([ended, confirmed, suspected, outage], "https://observatory.example.org/")
    feed = feedparser.parse(xml)
    assert not feed.bozo, feed.bozo_exception
    assert feed.version == "atom10"
    assert feed.feed.title and feed.feed.id == "https://observatory.example.org/feed.atom"
    ids = [e.id for e in feed.entries]
    assert ids == [
        "https://observatory.example.org/incident/WW-1#confirmed", "https://observatory.example.org/incident/WW-1#new",
        "https://observatory.example.org/incident/IR-1#new", "https://observatory.example.org/incident/PK-2#confirmed",
        "https://observatory.example.org/incident/PK-2#new", "https://observatory.example.org/incident/PK-1#ended",
        "https://observatory.example.org/incident/PK-1#confirmed", "https://observatory.example.org/incident/PK-1#new",
    ]
    by_id = {e.id: e for e in feed.entries}
    pk_ended = by_id["https://observatory.example.org/incident/PK-1#ended"]
    assert pk_ended.title == "Ended: X/Twitter, Facebook, Instagram and YouTube restricted in Pakistan"
    assert pk_ended.summary.startswith("Restored:")
    assert pk_ended.link == "https://observatory.example.org/incident/PK-1"
    # the "new" entry says what was known then: suspected, not yet confirmed or over
    assert by_id["https://observatory.example.org/incident/PK-1#new"].summary.startswith("Suspected:")
    assert "Global outage of Facebook" in by_id["https://observatory.example.org/incident/WW-1#new"].title
    assert {t.term for t in pk_ended.tags} >= {"ended", "platform_restriction", "PK"}


def test_atom_feed_escapes_and_handles_empty() -> None:
    feed = feedparser.parse(atom_feed([], "http://127.0.0.1:8000", now=START))
    assert not feed.bozo and feed.entries == []
    weird = incident(id='x"<&>', platforms=("twitter",))
    parsed = feedparser.parse(atom_feed([weird], "http://127.0.0.1:8000"))
    assert not parsed.bozo and parsed.entries[0].id.endswith('x"<&>#confirmed')


def test_report_imports_only_from_its_left_and_renderers_do_no_io() -> None:
    """Data flows one way (measurement -> verdict -> ingest -> store -> detect -> report -> web); the renderers
    never touch the network, the store's implementations or the clock."""
    import ast
    from pathlib import Path

    import observatory.report as pkg

    root = Path(pkg.__file__).parent
    io_modules = {"gather.py", "deliver.py"}
    for path in root.glob("*.py"):
        tree = ast.parse(path.read_text())
        names = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        names |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        assert not {m for m in names if m.startswith(("observatory.web", "observatory.cli"))}, path.name
        if path.name not in io_modules:
            forbidden = {"httpx", "socket", "urllib.request", "observatory.store.duckdb", "duckdb"}
            assert not names & forbidden, (path.name, names & forbidden)
            assert "datetime.now" not in path.read_text(), path.name
