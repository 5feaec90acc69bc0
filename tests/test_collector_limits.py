"""Abuse resistance of the collector: per-address and per-probe rate limits (429 with Retry-After), and the
heartbeat each accepted upload leaves (when each probe was last heard from)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from collector_app import make_app
from probe_net import UvicornThread
from test_collector_api import sample

from observatory.store.duckdb import DuckDBStore
from observatory.web.auth import create_probe, sign
from observatory.web.collector import HeartbeatThrottle
from observatory.web.ratelimit import AddressKeys, KeyedLimiter


def _post(client: httpx.Client, url: str, cred: dict, docs: list) -> httpx.Response:
    body = json.dumps({"measurements": docs}).encode()
    return client.post(url, content=body, headers={"Authorization": f"Bearer {cred['token']}",
                                                    "X-Observatory-Signature": sign(body, cred["secret"])})


def test_flood_from_one_address_gets_429_before_any_work(tmp_path: Path) -> None:
    store = DuckDBStore(str(tmp_path / "c.duckdb"))
    server = UvicornThread(make_app(store, address_rate=1, address_burst=3))
    try:
        with httpx.Client(timeout=10) as c:
            codes = [c.post(server.url + "/api/v1/measurements", content=b"{}").status_code for _ in range(6)]
            assert codes[:3] == [401, 401, 401] and set(codes[3:]) == {429}
            r = c.post(server.url + "/api/v1/measurements", content=b"{}")
            assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
    finally:
        server.stop()
        store.close()


def test_one_probe_cannot_flood_and_others_still_get_in(tmp_path: Path) -> None:
    store = DuckDBStore(str(tmp_path / "c.duckdb"))
    greedy, other = create_probe(store, "greedy"), create_probe(store, "other")
    server = UvicornThread(make_app(store, probe_rate=1, probe_burst=5))
    url = server.url + "/api/v1/measurements"
    try:
        with httpx.Client(timeout=10) as c:
            assert _post(c, url, greedy, [sample(i) for i in range(5)]).status_code == 200
            flood = _post(c, url, greedy, [sample(i) for i in range(5, 10)])
            assert flood.status_code == 429 and "greedy" in flood.json()["error"]
            assert _post(c, url, other, [sample(i) for i in range(10, 13)]).status_code == 200
        assert store.count() == 8, "nothing of the refused batch was stored"
    finally:
        server.stop()
        store.close()


def test_accepted_upload_records_a_heartbeat_without_the_address(tmp_path: Path) -> None:
    store = DuckDBStore(str(tmp_path / "c.duckdb"))
    cred = create_probe(store, "lahore-1")
    server = UvicornThread(make_app(store))
    try:
        with httpx.Client(timeout=10) as c:
            assert _post(c, server.url + "/api/v1/measurements", cred, [sample(1)]).status_code == 200
        now = datetime.now(UTC)
        [(probe, t, cc, asn, _region)] = store.heartbeats(since=now - timedelta(minutes=5), until=now + timedelta(1))
        doc = sample(1)
        assert (probe, cc, f"AS{asn}") == ("lahore-1", doc["probe_cc"], doc["probe_asn"])
    finally:
        server.stop()
        store.close()
    assert b"127.0.0.1" not in (tmp_path / "c.duckdb").read_bytes()


def test_limiter_refills_and_forgets_old_callers() -> None:
    now = [0.0]
    lim = KeyedLimiter(rate=2, burst=2, max_keys=3, clock=lambda: now[0])
    assert [lim.allow("a")[0] for _ in range(3)] == [True, True, False]
    now[0] += 0.5
    assert lim.allow("a")[0]
    for k in "bcde":
        lim.allow(k)
    assert "a" not in lim._buckets and len(lim._buckets) == 3
    keys = AddressKeys()
    assert keys("203.0.113.7") == keys("203.0.113.7") and "203.0.113.7" not in keys("203.0.113.7")


def test_heartbeat_is_written_once_a_second_per_probe_and_again_when_it_moves() -> None:
    now = [0.0]
    beats = HeartbeatThrottle(every=1.0, clock=lambda: now[0])
    lahore = ("PK", 17557, "Punjab")
    assert beats.due("lahore-1", lahore)
    assert not beats.due("lahore-1", lahore), "a second batch in the same second adds nothing"
    assert beats.due("karachi-1", lahore), "each probe has its own heartbeat"
    assert beats.due("lahore-1", ("PK", 45669, "Punjab")), "a probe seen from another network is recorded"
    now[0] += 1.0
    assert beats.due("lahore-1", ("PK", 45669, "Punjab"))
