"""Per-probe quotas in measurements and bytes per hour and per day, and heartbeats only from accepted new
measurements (issue #22), over the real collector on 127.0.0.1 and a real DuckDB file."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from probe_net import UvicornThread
from test_collector_api import sample

from observatory.errors import ConfigError
from observatory.measurement import MAX_DOCUMENT_BYTES
from observatory.settings import load_settings
from observatory.store.duckdb import DuckDBStore
from observatory.web import WebSettings, create_app
from observatory.web.auth import create_probe, sign
from observatory.web.collector import ProbeQuotas, make_collector_router


class Clock:
    def __init__(self) -> None:
        self.now = 1_699_920_800.0  # 00:13:20 UTC: windows are clock hours and UTC days

    def __call__(self) -> float:
        return self.now


class Service:
    def __init__(self, tmp: Path, quotas: ProbeQuotas) -> None:
        self.store = DuckDBStore(str(tmp / "q.duckdb"))
        app = FastAPI()
        app.include_router(make_collector_router(lambda: self.store, quotas=quotas))
        self.server = UvicornThread(app)
        self.client = httpx.Client(timeout=60)

    def post(self, cred: dict[str, str], docs: list[Any], raw: bytes | None = None) -> httpx.Response:
        body = raw if raw is not None else json.dumps({"measurements": docs}).encode()
        return self.client.post(self.server.url + "/api/v1/measurements", content=body, headers={
            "Authorization": f"Bearer {cred['token']}", "X-Observatory-Signature": sign(body, cred["secret"])})

    def beats(self) -> list[tuple[str, datetime, str, int, str | None]]:
        now = datetime.now(UTC)
        return self.store.heartbeats(since=now - timedelta(hours=1), until=now + timedelta(hours=1))

    def close(self) -> None:
        self.client.close()
        self.server.stop()
        self.store.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def svc(tmp_path: Path, clock: Clock) -> Iterator[Service]:
    s = Service(tmp_path, ProbeQuotas(per_hour=5, per_day=8, bytes_per_hour=20 << 20, bytes_per_day=40 << 20,
                                      clock=clock))
    yield s
    s.close()


def test_measurements_per_hour_and_per_day(svc: Service, clock: Clock) -> None:
    p1, p2 = create_probe(svc.store, "p1"), create_probe(svc.store, "p2")
    assert svc.post(p1, [sample(i) for i in range(4)]).json()["accepted"] == 4
    r = svc.post(p1, [sample(i) for i in range(4, 6)])
    assert r.status_code == 429 and "quota of 5 measurements per hour" in r.json()["error"]
    assert 1 <= int(r.headers["retry-after"]) <= 3600
    assert svc.store.count() == 4, "nothing of the refused batch was stored"
    assert svc.post(p2, [sample(i) for i in range(10, 13)]).json()["accepted"] == 3  # another probe's own quota
    # a retry of what is stored already costs nothing: duplicates and rejected items are given back
    assert svc.post(p1, [sample(0)]).json()["duplicates"] == 1
    assert svc.post(p1, [sample(0) | {"probe_cc": "PAK"}]).json()["rejected"] == 1
    assert svc.post(p1, [sample(4)]).json()["accepted"] == 1
    assert svc.post(p1, [sample(5)]).status_code == 429
    clock.now += 3600  # the next hour: the hourly quota is new, the day's is not (8)
    assert svc.post(p1, [sample(i) for i in range(20, 23)]).json()["accepted"] == 3
    r = svc.post(p1, [sample(23)])
    assert r.status_code == 429 and "quota of 8 measurements per day" in r.json()["error"]
    clock.now += 86400
    assert svc.post(p1, [sample(23)]).json()["accepted"] == 1


def test_bytes_per_hour_and_per_day(tmp_path: Path, clock: Clock) -> None:
    s = Service(tmp_path, ProbeQuotas(bytes_per_hour=250_000, bytes_per_day=400_000, clock=clock))
    try:
        p1 = create_probe(s.store, "p1")

        def big(i: int) -> dict[str, Any]:  # ~175 kB
            doc = sample(i)
            doc["test_keys"]["requests"][0]["response"]["body"] = "x" * 150_000
            return doc

        assert s.post(p1, [big(1)]).json()["accepted"] == 1
        r = s.post(p1, [big(2)])
        assert r.status_code == 429 and "quota of 250000 bytes per hour" in r.json()["error"]
        clock.now += 3600
        assert s.post(p1, [big(2)]).json()["accepted"] == 1
        clock.now += 3600
        r = s.post(p1, [big(3)])
        assert r.status_code == 429 and "quota of 400000 bytes per day" in r.json()["error"]
        assert s.store.count() == 2
    finally:
        s.close()


def test_one_measurement_over_the_document_limit_is_rejected(tmp_path: Path) -> None:
    s = Service(tmp_path, ProbeQuotas(bytes_per_hour=64 << 20, bytes_per_day=64 << 20))
    try:
        p1 = create_probe(s.store, "p1")
        huge = sample(1)
        huge["test_keys"]["requests"][0]["response"]["body"] = "z" * (MAX_DOCUMENT_BYTES + 1)
        r = s.post(p1, [huge, sample(2)])
        assert r.status_code == 200
        res = r.json()["results"]
        assert res[0]["status"] == "rejected" and "byte limit" in res[0]["reason"]
        assert res[1]["status"] == "accepted" and s.store.count() == 1
    finally:
        s.close()


def test_a_relay_has_no_per_probe_quota(svc: Service) -> None:
    relay = create_probe(svc.store, "relay", relay=True)
    assert svc.post(relay, [sample(i) for i in range(12)]).json()["accepted"] == 12


def test_heartbeat_only_from_accepted_new_measurements(svc: Service) -> None:
    p1 = create_probe(svc.store, "p1", country="PK", asns=[17557])
    assert svc.post(p1, [sample(1)]).json()["accepted"] == 1
    assert len(svc.beats()) == 1
    time.sleep(1.1)  # past the heartbeat throttle
    assert svc.post(p1, [sample(1)]).json()["duplicates"] == 1  # a replay
    assert svc.post(p1, [sample(2) | {"probe_asn": "AS45669"}]).json()["rejected"] == 1  # not its network
    assert len(svc.beats()) == 1, "a replayed or refused batch must not say the probe is alive"
    assert svc.post(p1, [sample(3)]).json()["accepted"] == 1
    assert len(svc.beats()) == 2


def test_quotas_come_from_the_run_settings(tmp_path: Path) -> None:
    """The quotas are settings like the others: config file < environment, bad values one error."""
    config = tmp_path / "observatory.toml"
    config.write_text("[collector]\nper_hour = 5\nbytes_per_day = 1000\n")
    settings = load_settings(config, env={"OBSERVATORY_PROBE_PER_HOUR": "7"})
    web = WebSettings.from_settings(settings)
    assert (web.probe_per_hour, web.probe_per_day, web.probe_bytes_per_day) == (7, 100_000, 1000)
    with pytest.raises(ConfigError, match="OBSERVATORY_PROBE_PER_DAY"):
        load_settings(config, env={"OBSERVATORY_PROBE_PER_DAY": "lots"})
    with pytest.raises(ConfigError, match="positive"):
        WebSettings.from_settings(load_settings(config, env={"OBSERVATORY_PROBE_PER_DAY": "0"}))


def test_the_app_applies_the_quotas_of_its_settings(tmp_path: Path) -> None:
    """create_app's collector refuses a probe over the hourly quota its settings give (here 2)."""
    store = DuckDBStore(str(tmp_path / "q.duckdb"))
    cred = create_probe(store, "tiny")
    app = create_app(WebSettings(detect_every_seconds=0, probe_per_hour=2), store, detector=None)
    server = UvicornThread(app)
    answers = []
    try:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            for i in range(2):
                body = json.dumps({"measurements": [sample(10 + 2 * i), sample(11 + 2 * i)]}).encode()
                answers.append(http.post("/api/v1/measurements", content=body, headers={
                    "Authorization": f"Bearer {cred['token']}", "Content-Type": "application/json",
                    "X-Observatory-Signature": sign(body, cred["secret"])}).status_code)
    finally:
        server.stop()
        store.close()
    assert answers == [200, 429]
