"""The JSON API, pages, feed and metrics over a real DuckDB file, served by uvicorn on loopback."""

from __future__ import annotations

import io
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import feedparser
import httpx
import pyarrow.parquet as pq
import pytest

from observatory.incident import iso
from observatory.store.duckdb import DuckDBStore
from observatory.web import WebSettings, create_app
from observatory.web.server import ServerThread

sys.path.insert(0, str(Path(__file__).parent))
import web_synth as synth  # noqa: E402

ADMIN = "test-admin-token-0123456789"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[httpx.Client, DuckDBStore]]:
    path = Path(tmp_path_factory.mktemp("web")) / "obs.duckdb"
    store = DuckDBStore(str(path))
    synth.pakistan_scene(store)
    # An incident of its own for the review tests, so they change nothing the other tests read.
    store.save_incidents([synth.incident(id="IN-review-me", cc="IN", start=synth.T_NOW - timedelta(hours=5),
                                         end=synth.T_NOW - timedelta(hours=4), status="ended")])
    app = create_app(WebSettings(admin_token=ADMIN, detect_every_seconds=0), store, detector=None)
    server = ServerThread(app, "127.0.0.1", 0)
    port = server.start()
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
        yield client, store
    server.stop()
    store.close()


@pytest.fixture
def client(served: tuple[httpx.Client, DuckDBStore]) -> httpx.Client:
    return served[0]


# --- incidents ------------------------------------------------------------------------------------------


def test_incidents_are_the_contract_json_newest_first(client: httpx.Client) -> None:
    r = client.get("/api/v1/incidents", params={"country": "PK"})
    assert r.status_code == 200
    got = r.json()
    assert [i["id"] for i in got] == [synth.ONGOING_ID, synth.EARLIER_ID]
    ongoing = got[0]
    assert ongoing["end"] is None and ongoing["status"] == "confirmed"
    assert ongoing["start"] == "2024-01-20T13:45:00Z"
    assert set(ongoing) >= {"id", "country", "kind", "scope", "asns", "regions", "platforms", "techniques",
                            "start", "end", "status", "confirmed_at", "confidence", "assessment", "evidence"}
    assert ongoing["asns"][0].startswith("AS")


@pytest.mark.parametrize(("params", "expected"), [
    ({"status": "confirmed"}, [synth.ONGOING_ID]),
    ({"status": "ended", "country": "pk"}, [synth.EARLIER_ID]),
    ({"platform": "twitter", "country": "PK"}, [synth.ONGOING_ID, synth.EARLIER_ID]),
    ({"platform": "telegram"}, []),
    ({"kind": "connectivity_loss"}, []),
    ({"since": "2024-01-19T00:00:00Z", "country": "PK"}, [synth.ONGOING_ID]),
    ({"until": "2024-01-19", "country": "PK"}, [synth.EARLIER_ID]),
    ({"country": "IN"}, ["IN-review-me"]),
])
def test_incident_filters(client: httpx.Client, params: dict[str, str], expected: list[str]) -> None:
    r = client.get("/api/v1/incidents", params=params)
    assert r.status_code == 200, r.text
    assert [i["id"] for i in r.json()] == expected


def test_incident_paging_gives_a_next_link(client: httpx.Client) -> None:
    first = client.get("/api/v1/incidents", params={"country": "PK", "limit": 1})
    assert [i["id"] for i in first.json()] == [synth.ONGOING_ID]
    link = first.headers["link"]
    assert 'rel="next"' in link and "offset=1" in link
    nxt = client.get(link[link.index("<") + 1:link.index(">")])
    assert [i["id"] for i in nxt.json()] == [synth.EARLIER_ID]


def test_one_incident_and_unknown_id(client: httpx.Client) -> None:
    assert client.get(f"/api/v1/incidents/{synth.EARLIER_ID}").json()["end"] == "2024-01-18T19:00:00Z"
    r = client.get("/api/v1/incidents/no-such-incident")
    assert r.status_code == 404
    assert "no-such-incident" in r.json()["error"]


BAD_REQUESTS = [
    ("/api/v1/incidents?country=XX1", 400, "two-letter"),
    ("/api/v1/incidents?country=ZZ", 400, "unknown country"),
    ("/api/v1/incidents?since=2024-01-21T00:00:00Z&until=2024-01-20T00:00:00Z", 400, "inverted"),
    ("/api/v1/incidents?limit=501", 400, "maximum page size"),
    ("/api/v1/incidents?limit=0", 400, "at least 1"),
    ("/api/v1/incidents?offset=-1", 400, "negative"),
    ("/api/v1/incidents?limit=abc", 422, "limit"),
    ("/api/v1/incidents?platform=twitter'%20OR%201=1%20--", 400, "unknown platform"),
    ("/api/v1/incidents?country=PK';DROP%20TABLE%20incidents;--", 400, "country"),
    ("/api/v1/incidents?kind=1%20UNION%20SELECT%20*%20FROM%20probe_credentials", 400, "unknown incident kind"),
    ("/api/v1/incidents?status=open", 400, "unknown status"),
    ("/api/v1/incidents?since=yesterday", 400, "expected a time"),
    ("/api/v1/series", 422, "country"),
    ("/api/v1/series?country=QQ", 400, "unknown country"),
    ("/api/v1/series?country=PK&bucket=7m", 400, "multiple of 5 minutes"),
    ("/api/v1/series?country=PK&bucket=abc", 400, "duration"),
    ("/api/v1/series?country=PK&window=90d&bucket=5m", 400, "more than"),
    ("/api/v1/series?country=PK&window=1y", 400, "window"),
    ("/api/v1/series?country=PK&asn=AS1%20OR%201=1", 400, "network number"),
    ("/api/v1/series?country=PK&since=2024-01-20&until=2024-01-19", 400, "inverted"),
    (f"/api/v1/incidents/{synth.EARLIER_ID}/measurements?limit=100000", 400, "maximum page size"),
    (f"/api/v1/incidents/{synth.EARLIER_ID}/measurements?format=xml", 400, "choose json"),
    ("/api/v1/incidents/x'%20OR%20'1'='1/measurements", 404, "no incident"),
    ("/api/v1/nothing-here", 404, "no such page"),
]


@pytest.mark.parametrize(("url", "status", "words"), BAD_REQUESTS)
def test_bad_requests_get_a_clear_4xx(client: httpx.Client, url: str, status: int, words: str) -> None:
    r = client.get(url)
    assert r.status_code == status, r.text
    body = r.json()
    assert words.lower() in body["error"].lower()
    assert body["status"] == status


def test_sql_ish_strings_change_nothing(served: tuple[httpx.Client, DuckDBStore]) -> None:
    client, store = served
    before = store.count()
    for url, _, _ in BAD_REQUESTS:
        client.get(url)
    assert store.count() == before
    assert len(client.get("/api/v1/incidents").json()) == 3


def test_never_500_on_odd_input(client: httpx.Client) -> None:
    odd = ["", " ", "%00", "'", '"', "\\", "null", "[]", "{}", "9" * 60, "é", "🇵🇰", "../../etc/passwd",
           "2024-13-45", "-1", "1e309"]
    for value in odd:
        for path, name in [("/api/v1/incidents", "country"), ("/api/v1/incidents", "since"),
                           ("/api/v1/incidents", "limit"), ("/api/v1/series", "country"),
                           ("/api/v1/series?country=PK", "bucket"), ("/api/v1/series?country=PK", "until"),
                           ("/incidents", "kind"), ("/country/PK", "window")]:
            r = client.get(path, params={name: value})
            assert r.status_code < 500, (path, name, value, r.text)
        for path in (f"/incident/{value}", f"/country/{value}", f"/api/v1/incidents/{value}"):
            r = client.get(path)
            assert r.status_code < 500, (path, r.text)


# --- series ---------------------------------------------------------------------------------------------


def _reachability(points: list[list[int]], lo: str, hi: str) -> float:
    from observatory.measurement import parse_time

    a, b = parse_time(lo).timestamp(), parse_time(hi).timestamp()
    ok = judged = 0
    for t, _total, k, down, anomalous in points:
        if a <= t < b:
            ok += k
            judged += k + down + anomalous
    return ok / judged


def test_series_shows_the_dip_for_the_four_platforms(client: httpx.Client) -> None:
    r = client.get("/api/v1/series", params={"country": "PK", "window": "3d"})
    assert r.status_code == 200, r.text
    data = r.json()
    assert data["as_of"] == "2024-01-20T15:15:00Z"  # the newest measurement: the replay's present
    assert data["bucket_seconds"] == 1800
    lines = data["series"]
    assert {s["asn"] for s in lines} == {f"AS{a}" for a in synth.NETWORKS}
    for platform in synth.SOCIAL:
        mine = [s for s in lines if s["platform"] == platform]
        assert len(mine) == len(synth.NETWORKS)
        for s in mine:
            assert _reachability(s["points"], "2024-01-19T00:00:00Z", "2024-01-20T12:00:00Z") > 0.9
            assert _reachability(s["points"], "2024-01-20T14:00:00Z", "2024-01-20T15:30:00Z") < 0.25
    for s in lines:
        if s["platform"] in ("control", "whatsapp"):
            assert _reachability(s["points"], "2024-01-20T14:00:00Z", "2024-01-20T15:30:00Z") > 0.85


def test_series_filters_one_network_and_platform_and_sums_match(
    served: tuple[httpx.Client, DuckDBStore],
) -> None:
    client, store = served
    r = client.get("/api/v1/series", params={"country": "PK", "asn": "AS17557", "platform": "twitter",
                                             "since": "2024-01-18T00:00:00Z", "until": "2024-01-21T00:00:00Z",
                                             "bucket": "1h"})
    lines = r.json()["series"]
    assert [(s["asn"], s["platform"]) for s in lines] == [("AS17557", "twitter")]
    total = sum(p[1] for p in lines[0]["points"])
    cells = store.series(since=synth.T_START, until=synth.T_NOW + timedelta(hours=1), bucket_seconds=3600,
                         countries=["PK"])
    assert total == sum(c.total for c in cells if c.asn == 17557 and c.platform == "twitter")


def test_series_picks_up_new_measurements_without_a_restart(served: tuple[httpx.Client, DuckDBStore]) -> None:
    client, store = served
    params = {"country": "NO", "since": "2024-01-20T00:00:00Z", "until": "2024-01-21T00:00:00Z"}
    assert client.get("/api/v1/series", params=params).json()["series"] == []
    synth.insert(store, synth.rows(start=synth.T_NOW - timedelta(hours=2), end=synth.T_NOW - timedelta(hours=1),
                                   dip=None, cc="NO"))
    lines = client.get("/api/v1/series", params=params).json()["series"]
    assert {s["platform"] for s in lines} == set(synth.PLATFORMS)


# --- measurements of an incident ------------------------------------------------------------------------


def test_incident_measurements_paged_and_exported(client: httpx.Client) -> None:
    base = f"/api/v1/incidents/{synth.EARLIER_ID}/measurements"
    seen: list[str] = []
    url: str | None = base + "?limit=500"
    while url:
        page = client.get(url).json()
        seen += [m["uid"] for m in page["measurements"]]
        url = page["next"]
    # 4 hours x 4 per hour x 4 networks x 2 probes x 4 social platforms
    assert len(seen) == len(set(seen)) == 4 * 4 * 4 * 2 * 4
    first = client.get(base, params={"limit": 2}).json()["measurements"][0]
    assert first["platform"] in synth.SOCIAL and first["t"] >= "2024-01-18T15:00:00Z" and "raw" not in first

    csv = client.get(base, params={"format": "csv"})
    assert csv.status_code == 200 and csv.headers["content-type"].startswith("text/csv")
    lines = csv.text.strip().splitlines()
    assert lines[0].startswith("uid,t,cc,asn") and len(lines) == len(seen) + 1
    assert "attachment" in csv.headers["content-disposition"]

    parquet = client.get(base, params={"format": "parquet"})
    table = pq.read_table(io.BytesIO(parquet.content))
    assert table.num_rows == len(seen)
    assert set(table.column("uid").to_pylist()) == set(seen)


# --- review -----------------------------------------------------------------------------------------------


def test_review_needs_the_admin_token(client: httpx.Client) -> None:
    url = "/api/v1/incidents/IN-review-me/review"
    body = {"action": "reviewed"}
    assert client.post(url, json=body).status_code == 401
    assert client.post(url, json=body, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.post(url, json=body, headers={"Authorization": ADMIN}).status_code == 401
    bad = client.post(url, json={"action": "delete"}, headers={"Authorization": f"Bearer {ADMIN}"})
    assert bad.status_code == 422 and "action" in bad.json()["error"]
    assert "review" not in client.get("/api/v1/incidents/IN-review-me").json()


def test_dismissal_needs_a_reason_and_shows_on_api_page_and_feed(client: httpx.Client) -> None:
    url = "/api/v1/incidents/IN-review-me/review"
    auth = {"Authorization": f"Bearer {ADMIN}"}
    r = client.post(url, json={"action": "dismissed"}, headers=auth)
    assert r.status_code == 400 and "reason" in r.json()["error"]
    client.post(url, json={"action": "annotate", "note": "checking with the ISP", "author": "amina"}, headers=auth)
    r = client.post(url, json={"action": "dismissed", "note": "a probe fault, not a block"}, headers=auth)
    assert r.status_code == 200
    review = r.json()["review"]
    assert review["state"] == "dismissed" and review["reason"] == "a probe fault, not a block"
    assert [n["action"] for n in review["notes"]] == ["annotate", "dismissed"]
    # It stays on record: the API still lists it, marked.
    listed = client.get("/api/v1/incidents", params={"country": "IN"}).json()
    assert listed[0]["review"]["state"] == "dismissed"
    page = client.get("/incident/IN-review-me", headers={"Accept": "text/html"}).text
    assert "Dismissed: a probe fault, not a block" in page and "checking with the ISP" in page
    feed = feedparser.parse(client.get("/feed.atom").text)
    entry = next(e for e in feed.entries if e.link.endswith("/incident/IN-review-me"))
    assert "[dismissed]" in entry.title and "a probe fault" in entry.summary


def test_admin_actions_are_off_without_a_token(tmp_path: Path) -> None:
    from observatory.errors import AuthError
    from observatory.web.review import check_admin

    with pytest.raises(AuthError, match="no admin token"):
        check_admin(f"Bearer {ADMIN}", None)


# --- pages, feed, metrics, health, docs -------------------------------------------------------------------


def test_overview_lists_pakistan_as_confirmed_and_india_normal(client: httpx.Client) -> None:
    data = client.get("/api/v1/countries").json()
    rows = {c["country"]: c for c in data["countries"]}
    assert rows["PK"]["status"] == "confirmed" and rows["PK"]["open"][0]["id"] == synth.ONGOING_ID
    assert rows["IN"]["status"] == "normal"
    assert data["countries"][0]["country"] == "PK"  # disrupted first
    spark = rows["PK"]["sparkline"]
    assert len(spark) == 24 and spark[-1] is not None and spark[-1] < 0.7 and max(p for p in spark if p) > 0.9
    html = client.get("/", headers={"Accept": "text/html"}).text
    assert "Pakistan" in html and 'class="row-confirmed"' in html


def test_pages_render(client: httpx.Client) -> None:
    h = {"Accept": "text/html"}
    country = client.get("/country/pk", params={"window": "7d"}, headers=h)
    assert country.status_code == 200 and "Pakistan" in country.text and "Mobilink-PK" in country.text
    incident = client.get(f"/incident/{synth.ONGOING_ID}", headers=h).text
    # The statement is observatory.report's, from the incident's data, in Pakistan's local time.
    assert "Confirmed: metrics show a nation-scale disruption to social media platforms across Pakistan" in incident
    assert "X/Twitter, Facebook, Instagram and YouTube, since 18:45 PKT on 20 January 2024" in incident
    assert "second disruption in 2 days" in incident
    assert "Estimated cost" in incident and "Was it a technical fault?" in incident
    assert "Copy text" in incident and "ongoing" in incident
    later = client.get(f"/incident/{synth.ONGOING_ID}", headers=h).text
    assert later == incident  # deterministic
    search = client.get("/incidents", params={"country": "PK", "status": "ended"}, headers=h).text
    assert synth.EARLIER_ID in search and synth.ONGOING_ID not in search
    for url in ("/country/XX", "/incident/nope"):
        r = client.get(url, headers=h)
        assert r.status_code == 404 and "<h1>404" in r.text
    bad = client.get("/incidents", params={"since": "2024-02-01", "until": "2024-01-01"}, headers=h)
    assert bad.status_code == 400 and "inverted" in bad.text


def test_pages_load_nothing_from_elsewhere(client: httpx.Client) -> None:
    import re

    for url in ("/", "/country/PK", f"/incident/{synth.ONGOING_ID}", "/incidents", "/docs"):
        r = client.get(url, headers={"Accept": "text/html"})
        assert "default-src 'self'" in r.headers["content-security-policy"]
        for ref in re.findall(r'(?:src|href)="([^"]+)"', r.text):
            assert not ref.startswith(("http://", "https://", "//")), (url, ref)


def test_feed_is_valid_atom(client: httpx.Client) -> None:
    r = client.get("/feed.atom")
    assert r.headers["content-type"].startswith("application/atom+xml")
    feed = feedparser.parse(r.text)
    assert not feed.bozo, feed.get("bozo_exception")
    titles = [e.title for e in feed.entries]
    assert any(t.startswith("Confirmed: X/Twitter, Facebook, Instagram and YouTube restricted in Pakistan")
               for t in titles)


def test_metrics_are_prometheus_text(served: tuple[httpx.Client, DuckDBStore]) -> None:
    client, store = served
    r = client.get("/metrics")
    assert r.headers["content-type"].startswith("text/plain")
    values = {}
    for line in r.text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    assert values["observatory_measurements_ingested_total"] == store.count()
    assert values['observatory_incidents_open{status="confirmed"}'] == 1
    assert "observatory_detection_lag_seconds" in values


def test_healthz_docs_and_openapi(client: httpx.Client) -> None:
    assert client.get("/healthz").json()["status"] == "ok"
    spec = client.get("/openapi.json").json()
    assert {"/api/v1/incidents", "/api/v1/series", "/api/v1/incidents/{incident_id}/measurements",
            "/metrics", "/healthz"} <= set(spec["paths"])
    docs = client.get("/docs", headers={"Accept": "text/html"}).text
    assert "/api/v1/series" in docs and "swagger" not in docs.lower()


def test_iso_helper_round_trip() -> None:
    assert iso(synth.T_NOW) == "2024-01-20T15:30:00Z"


def test_series_answer_is_reused_until_something_is_stored(served: tuple[httpx.Client, DuckDBStore]) -> None:
    client, store = served
    params = {"country": "SE", "since": "2024-01-20T00:00:00Z", "until": "2024-01-21T00:00:00Z"}
    first = client.get("/api/v1/series", params=params)
    assert first.headers["content-type"] == "application/json" and first.json()["series"] == []
    assert client.get("/api/v1/series", params=params).content == first.content
    # measurements older than the newest one stored change neither "now" nor the window: the answer must still
    # be computed again
    synth.insert(store, synth.rows(start=synth.T_NOW - timedelta(hours=2), end=synth.T_NOW - timedelta(hours=1),
                                   dip=None, cc="SE"))
    assert {s["platform"] for s in client.get("/api/v1/series", params=params).json()["series"]} == \
        set(synth.PLATFORMS)
