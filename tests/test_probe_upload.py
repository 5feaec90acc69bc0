"""The spool and the uploader against a real collector (uvicorn on 127.0.0.1, DuckDB file): durable first,
deleted only when acknowledged, retried with backoff while the collector is away."""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from collector_app import make_app
from probe_net import UvicornThread, closed_port

from observatory.probe.spool import Spool
from observatory.probe.upload import Uploader, collector_endpoint
from observatory.store.duckdb import DuckDBStore
from observatory.web.auth import create_probe

SAMPLE = json.loads((Path(__file__).parent / "data" / "probe" / "measurement.json").read_text())


def sample(i: int, *, time: str | None = None) -> dict[str, Any]:
    doc = copy.deepcopy(SAMPLE)
    doc["measurement_uid"] = SAMPLE["measurement_uid"][:-5] + f"{i:05x}"
    doc["test_keys"]["requests"][0]["response"]["body"] = "<html><title>small</title></html>"
    if time:
        doc["measurement_start_time"] = doc["test_start_time"] = time
    return doc


@pytest.fixture
def collector(tmp_path: Path) -> Iterator[tuple[DuckDBStore, dict[str, str], UvicornThread]]:
    store = DuckDBStore(str(tmp_path / "c.duckdb"))
    cred = create_probe(store, "probe-1")
    server = UvicornThread(make_app(store, max_body_bytes=64 * 1024))
    yield store, cred, server
    server.stop()
    store.close()


def test_spool_writes_whole_files_durably(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    paths = [spool.put(sample(i)) for i in range(3)]
    assert spool.pending() == paths  # oldest first
    assert [json.loads(p.read_bytes())["measurement_uid"] for p in paths] == [sample(i)["measurement_uid"]
                                                                            for i in range(3)]
    assert not [p for p in os.listdir(spool.dir) if p.startswith(".")]  # no temporary files left behind
    assert len(Spool(tmp_path / "spool")) == 3  # a new process sees them


def test_collector_endpoint() -> None:
    assert collector_endpoint("http://c/") == "http://c/api/v1/measurements"
    assert collector_endpoint("https://c/base") == "https://c/base/api/v1/measurements"
    assert collector_endpoint("http://c/api/v1/measurements/") == "http://c/api/v1/measurements"


def test_offline_for_a_day_then_everything_uploads(tmp_path: Path, collector: Any) -> None:
    store, cred, server = collector
    spool = Spool(tmp_path / "spool")
    # a day of measurements every 15 minutes, taken while the network was shut down
    for i in range(96):
        spool.put(sample(i, time=f"2024-01-20 {i // 4:02d}:{(i % 4) * 15:02d}:00"))
    waits: list[float] = []
    closed = closed_port()
    offline = Uploader(spool, f"http://127.0.0.1:{closed}/", token=cred["token"], secret=cred["secret"],
                       retries=3, backoff=1.0, sleep=waits.append)
    report = offline.upload_all()
    assert report.error and report.remaining == 96 and report.accepted == 0
    assert len(waits) == 3 and waits[0] < waits[2]  # exponential backoff (with jitter)
    assert all(0.5 <= w / (2 ** k) <= 1.0 for k, w in enumerate(waits))

    online = Uploader(spool, server.url + "/", token=cred["token"], secret=cred["secret"], batch_size=40)
    report = online.upload_all()
    assert report.error is None and report.accepted == 96 and report.remaining == 0
    assert store.count() == 96
    assert len(spool) == 0


def test_rejected_items_set_aside_with_reason(tmp_path: Path, collector: Any) -> None:
    store, cred, server = collector
    spool = Spool(tmp_path / "spool")
    spool.put(sample(1))
    bad = spool.put(sample(2) | {"probe_cc": "Pakistan"})
    report = Uploader(spool, server.url, token=cred["token"], secret=cred["secret"]).upload_all()
    assert (report.accepted, report.rejected, report.remaining) == (1, 1, 0)
    kept = spool.rejected_dir / bad.name
    assert kept.exists() and "probe_cc" in (spool.rejected_dir / (bad.name + ".reason")).read_text()
    assert store.count() == 1


def test_refused_probe_keeps_its_spool(tmp_path: Path, collector: Any) -> None:
    store, cred, server = collector
    spool = Spool(tmp_path / "spool")
    spool.put(sample(1))
    waits: list[float] = []
    wrong_token = Uploader(spool, server.url, token="nope", secret=cred["secret"], sleep=waits.append)
    report = wrong_token.upload_all()
    assert report.error and "401" in report.error and not waits  # no point retrying a refusal
    forged = Uploader(spool, server.url, token=cred["token"], secret="not-the-secret", sleep=waits.append)
    assert "403" in (forged.upload_all().error or "")
    assert len(spool) == 1 and store.count() == 0


def test_batches_shrink_when_the_collector_says_413(tmp_path: Path, collector: Any) -> None:
    store, cred, server = collector  # this collector takes at most 64 KiB per request
    spool = Spool(tmp_path / "spool")
    for i in range(40):
        spool.put(sample(i))  # ~3 KB each: 40 in one batch is over the limit
    up = Uploader(spool, server.url, token=cred["token"], secret=cred["secret"], batch_size=40)
    report = up.upload_all()
    assert report.error is None and report.accepted == 40 and up.batch_size < 40
    assert store.count() == 40


def test_a_write_cut_short_is_never_uploaded(tmp_path: Path, collector: Any) -> None:
    """A probe killed while writing leaves only its temporary file: never taken for a measurement."""
    store, cred, server = collector
    spool = Spool(tmp_path / "spool")
    whole = spool.put(sample(1))
    (spool.dir / ("." + whole.name.replace("00001", "00002") + ".tmp")).write_bytes(whole.read_bytes()[:100])
    assert spool.pending() == [whole]
    report = Uploader(spool, server.url, token=cred["token"], secret=cred["secret"]).upload_all()
    assert (report.accepted, report.rejected, report.error) == (1, 0, None)
    assert store.count() == 1
