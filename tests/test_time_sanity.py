"""Time sanity (issue #22): a measurement dated before OONI or ahead of the receiving clock is refused with a
reason, by the collector and by ingest; a bad time stored before these checks cannot make detection raise or
move the dashboard's "now"; no time a client sends to the API gives a 500."""

from __future__ import annotations

import copy
import json
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from collector_app import make_app
from probe_net import UvicornThread
from test_collector_api import sample

from observatory.ingest import ingest_paths, to_row
from observatory.measurement import measurement_from_dict
from observatory.service import run_detection
from observatory.store.duckdb import DuckDBStore
from observatory.web import WebSettings, create_app
from observatory.web.auth import create_probe, sign
from observatory.web.server import ServerThread

sys.path.insert(0, str(Path(__file__).parent))
import web_synth as synth  # noqa: E402

BAD_TIMES = {
    "year 1": "0001-01-01 00:00:00",
    "year 1 with an offset": "0001-01-01T00:00:00+05:00",
    "year 9999": "9999-12-31 23:59:59",
    "year 9999 with an offset": "9999-12-31T23:59:59-05:00",
    "before OONI": "2011-12-31 23:59:59",
    "2099": "2099-01-01 00:00:00",
}


def _dated(i: int, when: str) -> dict[str, Any]:
    doc = sample(i)
    doc["measurement_start_time"] = when
    return doc


def test_collector_refuses_times_before_ooni_or_in_the_future_with_a_reason(tmp_path: Path) -> None:
    store = DuckDBStore(str(tmp_path / "c.duckdb"))
    cred = create_probe(store, "p1")
    server = UvicornThread(make_app(store))
    soon = (datetime.now(UTC) + timedelta(minutes=2)).strftime("%Y-%m-%d %H:%M:%S")  # a clock a bit ahead
    late = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%d %H:%M:%S")
    docs = [sample(0), *(_dated(i + 1, t) for i, t in enumerate(BAD_TIMES.values())), _dated(90, soon),
            _dated(91, late)]
    body = json.dumps({"measurements": docs}).encode()
    try:
        r = httpx.post(server.url + "/api/v1/measurements", content=body, timeout=30,
                       headers={"Authorization": f"Bearer {cred['token']}",
                                "X-Observatory-Signature": sign(body, cred["secret"])})
        assert r.status_code == 200, r.text
        res = r.json()["results"]
        assert [x["status"] for x in res] == ["accepted", *["rejected"] * len(BAD_TIMES), "accepted", "rejected"]
        for x in res[1:-2] + res[-1:]:
            assert "measurement_start_time" in x["reason"], x
        assert "before 2012-01-01" in res[1]["reason"] and "ahead of the receiving clock" in res[-1]["reason"]
        assert store.count() == 2
    finally:
        server.stop()
        store.close()


def test_an_upload_far_older_than_the_stored_data_is_refused_but_a_relays_replay_is_not(tmp_path: Path) -> None:
    """One 2012 measurement among 2024's makes every detection run re-examine twelve years (40 s instead of
    0.7 s a run, measured on tests/data/forged-witness.toml)."""
    store = DuckDBStore(str(tmp_path / "c.duckdb"))
    cred, relay = create_probe(store, "p1"), create_probe(store, "replay", relay=True)
    server = UvicornThread(make_app(store))
    newest = datetime.fromisoformat(sample(0)["measurement_start_time"]).replace(tzinfo=UTC)

    def post(c: dict[str, str], docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        body = json.dumps({"measurements": docs}).encode()
        r = httpx.post(server.url + "/api/v1/measurements", content=body, timeout=30, headers={
            "Authorization": f"Bearer {c['token']}", "X-Observatory-Signature": sign(body, c["secret"])})
        assert r.status_code == 200, r.text
        return list(r.json()["results"])

    try:
        assert post(cred, [sample(0)])[0]["status"] == "accepted"
        late = (newest - timedelta(days=29)).strftime("%Y-%m-%d %H:%M:%S")  # a spool uploaded after a shutdown
        [ok, old] = post(cred, [_dated(1, late), _dated(2, "2012-06-01 00:00:00")])
        assert ok["status"] == "accepted"
        assert old["status"] == "rejected" and "more than 30 days older than the newest" in old["reason"]
        assert post(relay, [_dated(2, "2012-06-01 00:00:00")])[0]["status"] == "accepted"
    finally:
        server.stop()
        store.close()


def test_ingest_rejects_bad_times_with_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    docs = [sample(0), _dated(1, BAD_TIMES["year 1"]), _dated(2, BAD_TIMES["year 9999"]), sample(3)]
    path.write_text("\n".join(json.dumps(d) for d in docs) + "\n")
    store = DuckDBStore(str(tmp_path / "i.duckdb"))
    try:
        summary = ingest_paths(store, [path], processes=1)
        assert (summary.accepted, summary.rejected) == (2, 2)
        assert [r.line for r in summary.rejects] == [2, 3]
        assert all("measurement_start_time" in r.reason for r in summary.rejects)
    finally:
        store.close()


def _stored_anyway(store: DuckDBStore, when: datetime, i: int) -> None:
    """A row with a bad time written straight into the store, as one stored before the checks would be."""
    doc = copy.deepcopy(sample(i))
    m = measurement_from_dict(doc)
    store.insert([to_row(m.__class__(**{f: getattr(m, f) for f in m.__struct_fields__} | {"start_time": when}))])


@pytest.mark.parametrize("when", [datetime(1, 1, 1, tzinfo=UTC), datetime(9999, 12, 31, 23, 59, tzinfo=UTC),
                                  datetime(2099, 1, 1, tzinfo=UTC)], ids=["year1", "year9999", "2099"])
def test_a_stored_bad_time_neither_breaks_detection_nor_moves_now(tmp_path: Path, when: datetime) -> None:
    store = DuckDBStore(str(tmp_path / "d.duckdb"))
    try:
        store.insert([to_row(measurement_from_dict(sample(i))) for i in range(3)])
        _stored_anyway(store, when, 50)
        run_detection(store)  # incremental
        run_detection(store, full=True)
        newest = store.latest_time()
        assert newest is not None and newest <= datetime.now(UTC) + timedelta(minutes=11)
    finally:
        store.close()


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    store = DuckDBStore(str(Path(tmp_path_factory.mktemp("web")) / "obs.duckdb"))
    synth.pakistan_scene(store)
    _stored_anyway(store, datetime(9999, 12, 31, tzinfo=UTC), 60)
    server = ServerThread(create_app(WebSettings(detect_every_seconds=0), store, detector=None), "127.0.0.1", 0)
    port = server.start()
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as c:
        yield c
    server.stop()
    store.close()


@pytest.mark.parametrize("path", ["/api/v1/series?country=PK&until={t}", "/api/v1/series?country=PK&since={t}",
                                  "/api/v1/incidents?since={t}", "/api/v1/incidents?until={t}",
                                  "/country/PK?until={t}", "/api/v1/countries", "/", "/country/PK"])
@pytest.mark.parametrize("t", ["0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "2099-01-01T00:00:00Z",
                               "0001-01-01T00:00:00%2B05:00"])
def test_no_time_a_client_sends_gives_a_500(client: httpx.Client, path: str, t: str) -> None:
    r = client.get(path.format(t=t))
    assert r.status_code < 500, (r.status_code, r.text[:300])
