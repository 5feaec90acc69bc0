"""People's reports: a form and an API, rate-limited per address, with no address stored anywhere."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from observatory.store.duckdb import DuckDBStore
from observatory.web import WebSettings, create_app
from observatory.web.server import ServerThread
from observatory.web.userreports import PER_ADDRESS, _Limiter


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[httpx.Client, Path]]:
    path = tmp_path / "obs.duckdb"
    store = DuckDBStore(str(path))
    import observatory.web.userreports as ur

    ur._limiter = _Limiter()  # a fresh limiter per test
    server = ServerThread(create_app(WebSettings(detect_every_seconds=0), store, detector=None), "127.0.0.1", 0)
    port = server.start()
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
        yield client, path
    server.stop()
    store.close()


def test_report_is_counted_by_region_and_platform(served: tuple[httpx.Client, Path]) -> None:
    client, _ = served
    for region in ("Lahore", "Lahore", "Karachi"):
        r = client.post("/api/v1/user-reports", json={"country": "pk", "platform": "twitter", "region": region,
                                                      "network": "Jazz", "text": "X does not load"})
        assert r.status_code == 201, r.text
    counts = client.get("/api/v1/user-reports", params={"country": "PK"}).json()["counts"]
    assert counts == [{"country": "PK", "region": "Lahore", "platform": "twitter", "reports": 2},
                      {"country": "PK", "region": "Karachi", "platform": "twitter", "reports": 1}]


@pytest.mark.parametrize("body,field", [
    ({"country": "Pakistan", "platform": "twitter"}, "country"),
    ({"country": "PK", "platform": "myspace"}, "platform"),
    ({"country": "PK", "platform": "control"}, "platform"),
    ({"country": "PK", "platform": "twitter", "text": "x" * 5000}, "text"),
    ({"platform": "twitter"}, "country"),
])
def test_bad_reports_are_refused_clearly(served: tuple[httpx.Client, Path], body: dict, field: str) -> None:
    client, _ = served
    r = client.post("/api/v1/user-reports", json=body)
    assert 400 <= r.status_code < 500 and field in r.json()["error"], r.text


def test_rate_limited_per_address_and_no_address_stored(served: tuple[httpx.Client, Path]) -> None:
    client, path = served
    codes = [client.post("/api/v1/user-reports", json={"country": "PK", "platform": "youtube"}).status_code
             for _ in range(PER_ADDRESS + 2)]
    assert codes[:PER_ADDRESS] == [201] * PER_ADDRESS and codes[PER_ADDRESS:] == [429, 429]
    assert b"127.0.0.1" not in path.read_bytes()


def test_form_page_works_without_javascript(served: tuple[httpx.Client, Path]) -> None:
    client, _ = served
    page = client.get("/report-a-problem", headers={"accept": "text/html"})
    assert page.status_code == 200 and 'name="platform"' in page.text
    done = client.post("/report-a-problem", data={"country": "PK", "platform": "facebook", "region": "Islamabad"},
                       headers={"accept": "text/html"})
    assert done.status_code == 200 and "Thank you" in done.text
    assert client.get("/api/v1/user-reports").json()["counts"][0]["region"] == "Islamabad"


def test_reports_quote_users_for_the_incidents_platforms_only() -> None:
    from datetime import UTC, datetime

    from observatory.incident import Assessment, Incident
    from observatory.report.crowd import user_reports_sentence

    inc = Incident(id="PK-x", country="PK", kind="platform_restriction", scope="national", asns=(17557,),
                   regions=(), platforms=("twitter", "facebook"), techniques=("tls_interference",),
                   start=datetime(2024, 1, 20, 13, 40, tzinfo=UTC), end=None, status="confirmed",
                   confirmed_at=None, confidence=0.9, assessment=Assessment(deliberate=0.9))
    counts = [("PK", "Islamabad", "twitter", 6), ("PK", "Lahore", "twitter", 4), ("PK", "Karachi", "facebook", 3),
              ("PK", "Quetta", "facebook", 1), ("PK", "Lahore", "telegram", 50), ("IN", "Delhi", "twitter", 9)]
    assert user_reports_sentence(inc, counts) == ("Users also reported difficulty reaching X/Twitter and Facebook "
                                                  "in Islamabad, Lahore and Karachi (14 reports).")
    assert user_reports_sentence(inc, [("PK", "Lahore", "telegram", 5)]) == ""
