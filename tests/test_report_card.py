"""The share card: 1200x675, the finding as its title, one pooled line per platform, its source counted from the
cells it draws; from the CLI and from the dashboard."""

from __future__ import annotations

import struct
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from report_world import PK_NETWORKS, cells, incident, utc

from observatory.report.card import card_lines, card_title, share_card
from observatory.report.render import build_report, render
from observatory.store.duckdb import DuckDBStore
from observatory.web import WebSettings, create_app
from observatory.web.server import ServerThread

sys.path.insert(0, str(Path(__file__).parent))
import web_synth as synth  # noqa: E402

START, END = utc(2024, 1, 20, 14, 0), utc(2024, 1, 20, 17, 0)


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


@pytest.mark.parametrize(("changes", "title"), [
    ({}, "X/Twitter, Facebook, Instagram and YouTube restricted across Pakistan"),
    ({"kind": "throttling", "platforms": ("twitter",)}, "X/Twitter throttled across Pakistan"),
    ({"scope": "regional", "regions": ("Balochistan",)},
     "X/Twitter, Facebook, Instagram and YouTube restricted in Balochistan, Pakistan"),
    ({"scope": "network", "asns": (17557,), "platforms": ("youtube",)},
     "YouTube restricted on PTCL (AS17557) in Pakistan"),
    ({"scope": "network", "asns": (17557, 45669, 24499), "platforms": ("telegram",)},
     "Telegram restricted on 3 networks in Pakistan"),  # more than two are counted: a headline, not a list
    ({"kind": "connectivity_loss", "platforms": ()}, "Internet connectivity lost across Pakistan"),
    ({"kind": "platform_outage", "country": None, "platforms": ("facebook", "instagram")},
     "Facebook and Instagram down worldwide"),
])
def test_title_states_the_finding(changes: dict, title: str) -> None:
    assert card_title(incident(**changes)) == title


def test_card_is_1200_by_675_for_hours_and_for_days() -> None:
    inc = incident(start=START, end=END, status="ended")
    data = share_card(inc, cells(start=START - timedelta(hours=14), end=END + timedelta(hours=4),
                                 blocked=[(START, END)]))
    assert png_size(data) == (1200, 675)
    days = incident(start=START, end=END + timedelta(days=2), status="ended")
    assert png_size(share_card(days, cells(start=START, end=END + timedelta(days=2), blocked=[(START, END)]))) \
        == (1200, 675)


def test_lines_pool_every_network_so_one_networks_dip_is_not_an_outage() -> None:
    inc = incident(start=START, end=END, status="ended")
    # only PTCL loses the platforms, fully: the pooled line drops by about one network in six, not to zero
    series = cells(start=START - timedelta(hours=2), end=END + timedelta(hours=2), blocked=[(START, END)],
                   blocked_asns=[17557], block_share=1.0)
    lines, _ = card_lines(inc, series)
    assert list(lines)[-1] == "control"
    during = [y for t, y in lines["twitter"] if START + timedelta(minutes=30) <= t < END]
    assert during and all(70 <= y <= 90 for y in during), during
    assert all(y >= 90 for t, y in lines["control"])


def test_source_line_counts_what_is_drawn() -> None:
    inc = incident(start=START, end=END, status="ended")
    series = cells(start=START - timedelta(hours=2), end=END + timedelta(hours=2), blocked=[(START, END)])
    # cells of another country and of a platform not drawn are not counted
    foreign = cells(start=START, end=END, seed=3)
    for c in foreign:
        c.country = "IN"
    _, source = card_lines(inc, series + foreign)
    drawn = sum(c.total for c in series)
    assert source == f"Source: observatory, {drawn:,} measurements from {len(PK_NETWORKS)} networks. " \
                     "Shaded: the incident."


def test_report_card_format_and_html_title() -> None:
    inc = incident(start=START, end=END, status="ended")
    series = cells(start=START - timedelta(hours=2), end=END + timedelta(hours=2), blocked=[(START, END)])
    r = build_report(inc, cells=series, card=True)
    assert png_size(render(r, "card")) == (1200, 675)  # type: ignore[arg-type]
    html = render(r, "html")
    assert "<title>Ended: X/Twitter, Facebook, Instagram and YouTube restricted across Pakistan</title>" in html


def test_cli_writes_the_card(tmp_path: Path) -> None:
    db = tmp_path / "obs.duckdb"
    store = DuckDBStore(str(db))
    synth.pakistan_scene(store)
    store.close()
    out = tmp_path / "card.png"
    run = subprocess.run([sys.executable, "-m", "observatory", "report", synth.EARLIER_ID, "--db", str(db),
                          "--format", "card", "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert png_size(out.read_bytes()) == (1200, 675)


def test_incident_page_links_a_card_the_server_draws(tmp_path: Path) -> None:
    store = DuckDBStore(str(tmp_path / "obs.duckdb"))
    synth.pakistan_scene(store)
    server = ServerThread(create_app(WebSettings(detect_every_seconds=0), store, detector=None), "127.0.0.1", 0)
    port = server.start()
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
            page = client.get(f"/incident/{synth.EARLIER_ID}")
            assert f'href="/incident/{synth.EARLIER_ID}/card.png"' in page.text
            assert 'id="confidence-note"' in page.text and 'id="deliberate-note"' in page.text
            card = client.get(f"/incident/{synth.EARLIER_ID}/card.png")
            assert card.status_code == 200 and card.headers["content-type"] == "image/png"
            assert png_size(card.content) == (1200, 675)
            assert client.get("/incident/nope/card.png").status_code == 404
    finally:
        server.stop()
        store.close()
