"""Imported signals seen in real headless Chromium: the country page and the incident page draw them under the
measurements, each normalised to its usual level, and the incident names the signals that dropped."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from observatory.service import run_detection
from observatory.signals import SignalPoint
from observatory.signals.formats import read_signal_file
from observatory.store.duckdb import DuckDBStore
from observatory.web import WebSettings, create_app
from observatory.web.server import ServerThread

sys.path.insert(0, str(Path(__file__).parent))
from test_browser_dashboard import ARGS, CHROMIUM, shot  # noqa: E402
from test_signal_formats import ioda_export  # noqa: E402

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium"),
]
CUT = (datetime(2026, 1, 8, 16, 30, tzinfo=UTC), datetime(2026, 1, 10, 20, 0, tzinfo=UTC))


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    folder = Path(tmp_path_factory.mktemp("signals"))
    store = DuckDBStore(str(folder / "obs.duckdb"))
    f = ioda_export(folder, start=datetime(2025, 12, 1, tzinfo=UTC), days=42, blackout=CUT)
    store.insert_signals([p for p in read_signal_file(str(f)).points if isinstance(p, SignalPoint)])
    [inc] = [i for i in run_detection(store).saved if i.kind == "connectivity_loss"]
    server = ServerThread(create_app(WebSettings(detect_every_seconds=0, poll_seconds=60), store, detector=None))
    port = server.start()
    yield f"http://127.0.0.1:{port}", inc.id
    server.stop()
    store.close()


@pytest.fixture
def page() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        p = b.new_page(viewport={"width": 1280, "height": 900})
        errors: list[str] = []
        p.on("pageerror", lambda e: errors.append(str(e)))
        yield p
        b.close()
        assert not errors, errors


def _lowest(page: object, name: str) -> list[float]:
    """The lowest point of each drawn line, read back from the SVG as drawn (y grows downwards)."""
    return page.evaluate(  # type: ignore[attr-defined, no-any-return]
        "() => [...document.querySelectorAll('svg.signals-chart polyline')].map(l => "
        "Math.max(...l.getAttribute('points').trim().split(' ').map(p => parseFloat(p.split(',')[1]))))")


def test_country_page_draws_the_signals_with_the_blackout(site: tuple[str, str], page: object) -> None:
    base, _ = site
    page.goto(f"{base}/country/IR?window=30d&until=2026-01-12T00:00Z")  # type: ignore[attr-defined]
    chart = page.locator("svg.signals-chart")  # type: ignore[attr-defined]
    assert chart.count() == 1 and page.locator("svg.signals-chart polyline").count() == 4  # type: ignore
    key = page.locator(".signals-key").inner_text()  # type: ignore[attr-defined]
    assert "BGP" in key and "Active probing" in key and "Telescope" in key and "Google" in key
    # every connectivity signal falls far below its usual line during the blackout: its lowest point is drawn
    # near the bottom of the plot (0 at y=148 in the viewBox), the usual level at y=~61
    assert all(y > 100 for y in _lowest(page, "country"))
    assert page.locator("svg.signals-chart rect.shade").count() >= 1  # type: ignore[attr-defined]
    shot(page, "signals-country.png")


def test_incident_page_draws_and_names_the_signals(site: tuple[str, str], page: object) -> None:
    base, inc_id = site
    page.goto(f"{base}/incident/{inc_id}")  # type: ignore[attr-defined]
    assert page.locator("svg.signals-chart polyline").count() == 4  # type: ignore[attr-defined]
    named = page.locator("#signals-evidence").inner_text()  # type: ignore[attr-defined]
    assert "ioda bgp" in named and "ioda ping-slash24" in named
    shot(page, "signals-incident.png")
