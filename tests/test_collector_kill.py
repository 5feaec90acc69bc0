"""Kill -9 the collector in the middle of an upload, restart it, upload again: nothing lost, nothing
duplicated. The collector is a real process (uvicorn over a DuckDB file) on 127.0.0.1."""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from probe_net import closed_port

from observatory.probe.spool import Spool
from observatory.probe.upload import Uploader, UploadReport
from observatory.store import MeasurementFilter
from observatory.store.duckdb import DuckDBStore
from observatory.web.auth import create_probe

HERE = Path(__file__).parent
SAMPLE = json.loads((HERE / "data" / "probe" / "measurement.json").read_text())
N = 600


def sample(i: int) -> dict[str, Any]:
    doc = copy.deepcopy(SAMPLE)
    doc["measurement_uid"] = SAMPLE["measurement_uid"][:-5] + f"{i:05x}"
    doc["test_keys"]["requests"][0]["response"]["body"] = "<html><title>small</title></html>"
    return doc


def start_collector(db: Path, port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, str(HERE / "collector_app.py"), str(db), "127.0.0.1", str(port)],
                            cwd=HERE.parent, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.post(f"http://127.0.0.1:{port}/api/v1/measurements", timeout=1)
            return proc
        except httpx.TransportError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"collector did not start: {proc.stderr.read() if proc.stderr else ''}") from None
            time.sleep(0.1)


def test_kill_mid_upload_nothing_lost_nothing_duplicated(tmp_path: Path) -> None:
    db = tmp_path / "collector.duckdb"
    setup = DuckDBStore(str(db))
    cred = create_probe(setup, "probe-1")
    setup.close()
    spool = Spool(tmp_path / "spool")
    for i in range(N):
        spool.put(sample(i))
    port = closed_port()
    proc = start_collector(db, port)
    url = f"http://127.0.0.1:{port}/"

    result: list[UploadReport] = []
    up = Uploader(spool, url, token=cred["token"], secret=cred["secret"], batch_size=20, retries=2,
                  backoff=0.05, timeout=5)
    worker = threading.Thread(target=lambda: result.append(up.upload_all()))
    worker.start()
    # kill while batches are flowing: some acknowledged, one probably in flight
    deadline = time.monotonic() + 60
    while len(spool) > N * 2 // 3 and time.monotonic() < deadline:
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    worker.join(60)
    first = result[0]
    assert first.error is not None, "the upload should have been cut short by the kill"
    assert 0 < first.remaining < N
    left_after_kill = len(spool)

    proc = start_collector(db, port)  # restart on the same store
    try:
        second = Uploader(spool, url, token=cred["token"], secret=cred["secret"], batch_size=100).upload_all()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    assert second.error is None and second.remaining == 0 and len(spool) == 0
    # every measurement the probe took is stored exactly once; items committed just before the kill whose
    # answer was lost came back as duplicates
    assert second.accepted + second.duplicates == left_after_kill
    store = DuckDBStore(str(db))
    try:
        assert store.count() == N
        uids = [json.loads(d)["measurement_uid"] for d in store.documents(MeasurementFilter())]
    finally:
        store.close()
    assert len(uids) == N and set(uids) == {sample(i)["measurement_uid"] for i in range(N)}
