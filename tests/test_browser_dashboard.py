"""The dashboard in real headless Chromium (Debian's /usr/bin/chromium driven by Playwright).

Screenshots go to test-artifacts/ for people to look at. Skipped, with the reason, when Chromium is absent.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from observatory.store.duckdb import DuckDBStore
from observatory.web import WebSettings, create_app
from observatory.web.server import ServerThread

sys.path.insert(0, str(Path(__file__).parent))
import web_synth as synth  # noqa: E402

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium "
                                                     "(scripts/sysdeps.sh installs it)"),
]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, DuckDBStore]]:
    store = DuckDBStore(str(Path(tmp_path_factory.mktemp("browser")) / "obs.duckdb"))
    synth.pakistan_scene(store)
    settings = WebSettings(detect_every_seconds=0, poll_seconds=1)
    server = ServerThread(create_app(settings, store, detector=None))
    port = server.start()
    yield f"http://127.0.0.1:{port}", store
    server.stop()
    store.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser: object) -> Iterator[object]:
    # bypass_csp: lets the test evaluate its own probes; the pages themselves run under the CSP.
    context = browser.new_context(viewport={"width": 1280, "height": 900}, bypass_csp=True)  # type: ignore
    p = context.new_page()
    errors: list[str] = []
    p.on("pageerror", lambda e: errors.append(str(e)))
    p.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    yield p
    context.close()
    assert not errors, errors


def shot(page: object, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)  # type: ignore[attr-defined]


def test_overview_lists_pakistan_as_disrupted(site: tuple[str, DuckDBStore], page: object) -> None:
    url, _ = site
    page.goto(url + "/")  # type: ignore[attr-defined]
    row = page.locator("tr[data-country=PK]")  # type: ignore[attr-defined]
    assert row.locator(".badge").inner_text() == "confirmed"
    assert "Pakistan" in row.inner_text()
    assert "restricted in Pakistan" in row.inner_text()
    assert page.locator("tr[data-country=IN] .badge").inner_text() == "normal"  # type: ignore[attr-defined]
    # Disrupted countries come first.
    assert page.locator("#countries tbody tr").first.get_attribute("data-country") == "PK"  # type: ignore
    shot(page, "overview.png")


def test_country_chart_shows_the_dip_for_the_four_platforms(site: tuple[str, DuckDBStore], page: object) -> None:
    url, _ = site
    page.goto(url + "/country/PK?window=3d")  # type: ignore[attr-defined]
    page.wait_for_function(  # type: ignore[attr-defined]
        "document.querySelectorAll('#charts figure .plot svg path.line').length >= 30")
    lowest, median = {}, {}
    for platform in (*synth.SOCIAL, "whatsapp", "control"):
        plot = page.locator(f"figure[data-platform={platform}] .plot")  # type: ignore[attr-defined]
        lowest[platform] = float(plot.get_attribute("data-lowest"))
        median[platform] = float(plot.get_attribute("data-median"))
        assert plot.locator("path.line:not(.all)").count() == len(synth.NETWORKS)
        assert plot.locator("path.line.all").count() == 1
        # both incidents are shaded on the social platforms' charts
        shades = plot.locator("rect.shade").count()
        assert shades == (2 if platform in synth.SOCIAL else 0), platform
    # The four platforms dip to (almost) nothing during the incidents, from a normal level near 100%.
    for platform in synth.SOCIAL:
        assert lowest[platform] < 0.2 and median[platform] > 0.9, (platform, lowest, median)
    assert median["control"] > 0.9 and median["whatsapp"] > 0.9, median
    label = page.locator("figure[data-platform=twitter] svg").get_attribute("aria-label")  # type: ignore
    assert label.startswith("X/Twitter reachability by network: lowest")
    assert page.locator("#country-status").inner_text() == "confirmed"  # type: ignore[attr-defined]
    assert page.locator("#legend span").count() == len(synth.NETWORKS) + 3  # type: ignore[attr-defined]
    shot(page, "country-pk.png")


def test_country_page_updates_live_without_reload(site: tuple[str, DuckDBStore], page: object) -> None:
    url, store = site
    page.goto(url + "/country/PK")  # type: ignore[attr-defined]
    page.wait_for_function("document.getElementById('charts').dataset.updated")  # type: ignore[attr-defined]
    before = page.evaluate("document.getElementById('charts').dataset.updated")  # type: ignore[attr-defined]
    page.evaluate("window.__marker = 42")  # type: ignore[attr-defined]
    # Forty-five more minutes of measurements arrive (the block goes on).
    synth.insert(store, synth.rows(start=synth.T_NOW, end=synth.T_NOW + timedelta(minutes=45),
                                   dip=(synth.T_NOW, synth.T_NOW + timedelta(hours=1)), seed=11))
    page.wait_for_function(  # type: ignore[attr-defined]
        f"document.getElementById('charts').dataset.updated !== '{before}'", timeout=15_000)
    after = page.evaluate("document.getElementById('charts').dataset.updated")  # type: ignore[attr-defined]
    assert after == "2024-01-20T16:00:00Z"
    assert page.evaluate("window.__marker") == 42  # the same page: no reload  # type: ignore[attr-defined]


def test_incident_page_shows_the_statement(site: tuple[str, DuckDBStore], page: object) -> None:
    url, _ = site
    page.goto(f"{url}/incident/{synth.ONGOING_ID}")  # type: ignore[attr-defined]
    statement = page.locator("#statement").inner_text()  # type: ignore[attr-defined]
    assert statement.startswith("Confirmed: metrics show a nation-scale disruption to social media platforms "
                                "across Pakistan, including X/Twitter, Facebook, Instagram and YouTube")
    page.wait_for_function(  # type: ignore[attr-defined]
        "document.querySelectorAll('#charts figure .plot svg').length === 5")
    assert page.locator(".timeline li.done").count() == 2  # suspected, confirmed; not ended  # type: ignore
    shot(page, "incident.png")


def test_phone_layout_and_keyboard(site: tuple[str, DuckDBStore], browser: object) -> None:
    url, _ = site
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True,  # type: ignore
                                  device_scale_factor=2, bypass_csp=True)
    p = context.new_page()
    p.goto(url + "/country/PK")
    p.wait_for_function("document.querySelectorAll('#charts figure .plot svg').length >= 6")
    width = p.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the page scrolls sideways on a phone ({width}px)"
    shot(p, "country-pk-phone.png")
    p.keyboard.press("Tab")
    assert p.evaluate("document.activeElement.className") == "skip"
    p.keyboard.press("Tab")
    assert p.evaluate("document.activeElement.textContent") == "observatory"
    for control in p.locator("select, input").all():
        cid = control.get_attribute("id")
        assert cid and p.locator(f"label[for={cid}]").count() == 1, cid
    context.close()
