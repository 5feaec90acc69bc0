"""The collector over a real uvicorn server on 127.0.0.1 and a real DuckDB file: auth, signatures, limits,
malformed bodies, per-item answers, idempotent retries."""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from collector_app import make_app
from probe_net import UvicornThread

from observatory.measurement import measurement_from_dict
from observatory.store import MeasurementFilter
from observatory.store.base import BatchBuilder
from observatory.store.duckdb import DuckDBStore
from observatory.web.auth import create_probe, hash_token, sign
from observatory.web.collector import store_batch
from observatory.web.groupcommit import GroupCommit

SAMPLE = json.loads((Path(__file__).parent / "data" / "probe" / "measurement.json").read_text())


def sample(i: int) -> dict[str, Any]:
    doc = copy.deepcopy(SAMPLE)
    doc["measurement_uid"] = SAMPLE["measurement_uid"][:-4] + f"{i:04x}"
    return doc


class Service:
    def __init__(self, tmp: Path) -> None:
        self.store = DuckDBStore(str(tmp / "collector.duckdb"))
        self.cred = create_probe(self.store, "p1")
        self.server = UvicornThread(make_app(self.store, max_body_bytes=2 * 1024 * 1024, max_items=50))
        self.url = self.server.url + "/api/v1/measurements"
        self.client = httpx.Client(timeout=10)

    def post(self, body: bytes, *, token: str | None = None, secret: str | None = None,
             signature: str | None = None, auth: bool = True) -> httpx.Response:
        headers = {"Content-Type": "application/json"}
        if auth:
            headers["Authorization"] = f"Bearer {token or self.cred['token']}"
            headers["X-Observatory-Signature"] = signature or sign(body, secret or self.cred["secret"])
        return self.client.post(self.url, content=body, headers=headers)

    def upload(self, docs: list[Any], **kw: Any) -> httpx.Response:
        return self.post(json.dumps({"measurements": docs}).encode(), **kw)

    def close(self) -> None:
        self.client.close()
        self.server.stop()
        self.store.close()


@pytest.fixture
def svc(tmp_path: Path) -> Iterator[Service]:
    s = Service(tmp_path)
    yield s
    s.close()


def test_accepts_a_signed_batch_after_storing_it(svc: Service) -> None:
    docs = [sample(i) for i in range(3)]
    r = svc.upload(docs)
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["accepted"], body["duplicates"], body["rejected"]) == (3, 0, 0)
    assert [x["status"] for x in body["results"]] == ["accepted"] * 3
    assert [x["measurement_uid"] for x in body["results"]] == [d["measurement_uid"] for d in docs]
    assert svc.store.count() == 3  # acknowledged means stored
    stored = svc.store.measurements(MeasurementFilter(), limit=10, offset=0)
    assert {m["verdict"] for m in stored} == {"ok"}


def test_an_upload_is_stored_with_the_rule_that_decided_and_the_rules_version(svc: Service) -> None:
    from observatory.verdict import RULES_VERSION

    docs = [sample(i) for i in range(2)]
    assert svc.upload(docs).json()["accepted"] == 2
    stored = svc.store.verdicts([d["measurement_uid"] for d in docs])
    assert {(v.verdict, v.rule, v.rules_version) for v in stored.values()} == {("ok", "web.ok", RULES_VERSION)}


def test_retry_is_idempotent(svc: Service) -> None:
    docs = [sample(i) for i in range(4)]
    assert svc.upload(docs[:2]).json()["accepted"] == 2
    r = svc.upload(docs).json()  # a retry after a lost answer, plus new ones
    assert (r["accepted"], r["duplicates"]) == (2, 2)
    assert [x["status"] for x in r["results"]] == ["duplicate", "duplicate", "accepted", "accepted"]
    assert svc.store.count() == 4


def test_duplicates_within_a_batch(svc: Service) -> None:
    r = svc.upload([sample(1), sample(1)]).json()
    assert [x["status"] for x in r["results"]] == ["accepted", "duplicate"]
    assert svc.store.count() == 1


def test_bad_items_rejected_with_reasons_good_ones_kept(svc: Service) -> None:
    bad_cc = sample(2) | {"probe_cc": "PAK"}
    bad_asn = sample(3) | {"probe_asn": "seventeen"}
    r = svc.upload([sample(1), bad_cc, "not an object", bad_asn, sample(4)])
    assert r.status_code == 200
    res = r.json()["results"]
    assert [x["status"] for x in res] == ["accepted", "rejected", "rejected", "rejected", "accepted"]
    assert "measurements[1]" in res[1]["reason"] and "probe_cc" in res[1]["reason"]
    assert "expected a JSON object" in res[2]["reason"]
    assert "probe_asn" in res[3]["reason"]
    assert svc.store.count() == 2


def test_probe_address_never_stored(svc: Service) -> None:
    doc = sample(5) | {"probe_ip": "203.0.113.77"}
    doc["test_keys"]["requests"][0]["response"]["headers"]["X-Seen-From"] = "203.0.113.77"
    assert svc.upload([doc]).json()["accepted"] == 1
    raw = b"".join(svc.store.documents(MeasurementFilter()))
    assert b"203.0.113.77" not in raw and b"probe_ip" not in raw


@pytest.mark.parametrize("header", [None, "Bearer nope", "Basic abc", "Bearer"])
def test_missing_or_unknown_token_is_401_and_nothing_stored(svc: Service, header: str | None) -> None:
    body = json.dumps({"measurements": [sample(1)]}).encode()
    headers = {"X-Observatory-Signature": sign(body, svc.cred["secret"])}
    if header is not None:
        headers["Authorization"] = header
    r = svc.client.post(svc.url, content=body, headers=headers)
    assert r.status_code == 401 and r.json()["error"]
    assert r.headers["www-authenticate"] == "Bearer"
    assert svc.store.count() == 0


def test_revoked_token_is_401(svc: Service) -> None:
    assert svc.store.revoke_probe("p1")
    r = svc.upload([sample(1)])
    assert r.status_code == 401 and "revoked" in r.json()["error"]
    assert svc.store.count() == 0


def test_forged_signature_is_403_and_nothing_stored(svc: Service) -> None:
    other = create_probe(svc.store, "p2")
    assert svc.upload([sample(1)], secret=other["secret"]).status_code == 403  # signed with another secret
    assert svc.upload([sample(1)], signature="00" * 32).status_code == 403
    body = json.dumps({"measurements": [sample(1)]}).encode()
    tampered = body.replace(b'"PK"', b'"IR"')
    r = svc.post(tampered, signature=sign(body, svc.cred["secret"]))  # signature of another body
    assert r.status_code == 403 and "signature" in r.json()["error"].lower()
    r = svc.client.post(svc.url, content=body, headers={"Authorization": f"Bearer {svc.cred['token']}"})
    assert r.status_code == 403
    assert svc.store.count() == 0


def test_token_stored_hashed(svc: Service) -> None:
    creds = svc.store.probes()
    assert creds[0].token_hash == hash_token(svc.cred["token"])
    assert all(svc.cred["token"] not in (c.token_hash, c.secret) for c in creds)


def test_too_large_is_413(svc: Service) -> None:
    docs = [sample(i) for i in range(40)]  # ~2.8 MB over the 2 MB limit of this service
    r = svc.upload(docs)
    assert r.status_code == 413 and "bytes" in r.json()["error"]
    small = [{"x": i} for i in range(51)]  # more items than the 50 allowed
    assert svc.upload(small).status_code == 413
    assert svc.store.count() == 0


@pytest.mark.parametrize(("body", "status"), [
    (b"{not json", 400), (b"\xff\xfe", 400), (b"[]", 422), (b'{"measurements": {}}', 422),
    (b'{"items": []}', 422), (b"", 400),
])
def test_malformed_bodies_are_4xx_with_a_message(svc: Service, body: bytes, status: int) -> None:
    r = svc.post(body)
    assert r.status_code == status, r.text
    assert r.json()["error"]
    assert svc.store.count() == 0


def test_empty_batch_is_fine(svc: Service) -> None:
    r = svc.upload([])
    assert r.status_code == 200 and r.json() == {"accepted": 0, "duplicates": 0, "rejected": 0, "results": []}


def test_uploads_compressed_in_their_own_threads_and_plain_ones_commit_together(tmp_path: Path) -> None:
    """Once the store has a zstd dictionary, each upload's thread compresses its documents (the store's one
    writer no longer does); a group commit may then hold compressed and plain tables at once."""
    store = DuckDBStore(str(tmp_path / "c.duckdb"))
    try:
        docs = [sample(i) for i in range(1200)]
        raws = [msgspec.Raw(json.dumps(d, separators=(",", ":")).encode()) for d in docs]
        assert store_batch(store, raws[:1000])["accepted"] == 1000  # big enough to train the dictionary
        assert store.document_encoder() is not None
        plain = BatchBuilder()
        for raw in raws[1000:1100]:
            plain.add(measurement_from_dict(json.loads(bytes(raw)), raw_json=bytes(raw)), "ok", None, "observatory")
        group = GroupCommit()
        done = threading.Event()
        threads = [threading.Thread(target=lambda: store_batch(store, raws[1100:], group)),
                   threading.Thread(target=lambda: (group.write(store, plain.take()), done.set()))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert done.is_set() and store.count() == 1200
        stored = {json.loads(d)["measurement_uid"]: d for d in store.documents(MeasurementFilter())}
        assert all(stored[d["measurement_uid"]] == bytes(r) for d, r in zip(docs, raws, strict=True))
    finally:
        store.close()


def test_a_bug_in_classification_is_a_logged_500_and_nothing_stored(
        svc: Service, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """A verdict rule that raises is our bug: the batch is not acknowledged (the probe keeps it and retries once
    the bug is fixed), nothing is stored under a verdict nobody decided, and the log says what failed."""
    import observatory.web.collector as collector

    def broken(m: Any) -> Any:
        raise ZeroDivisionError("a rule divided by zero")

    monkeypatch.setattr(collector, "classify", broken)
    with caplog.at_level("ERROR", logger="observatory.web.collector"):
        r = svc.upload([sample(i) for i in range(3)])
    assert r.status_code == 500, r.text
    assert "nothing from this batch was acknowledged" in r.json()["error"]
    assert svc.store.count() == 0
    assert any("ZeroDivisionError" in (rec.exc_text or "") or rec.exc_info and rec.exc_info[0] is ZeroDivisionError
               for rec in caplog.records)
    monkeypatch.undo()  # fixed: the same batch is then stored whole
    r = svc.upload([sample(i) for i in range(3)])
    assert r.status_code == 200 and r.json()["accepted"] == 3
