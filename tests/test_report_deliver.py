"""Webhook delivery against a real HTTP receiver on 127.0.0.1: signed, retried on 500 and timeouts with
backoff, not retried on a 4xx, Slack-style payloads, and never re-sent after a restart (state in DuckDB)."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from report_world import incident, utc

from observatory.errors import ConfigError
from observatory.report.deliver import DELIVERY_HEADER, SIGNATURE_HEADER, Webhook
from observatory.service import deliver
from observatory.store.duckdb import DuckDBStore

SECRET = "s3cret-for-tests"


class Receiver:
    """A webhook receiver: answers the scripted statuses in turn (then 200), optionally stalling first."""

    def __init__(self, statuses: list[int] | None = None, stall_first: float = 0.0) -> None:
        self.statuses = list(statuses or [])
        self.stall_first = stall_first
        self.requests: list[dict[str, Any]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.requests.append({"headers": dict(self.headers), "body": body, "at": time.monotonic()})
                if receiver.stall_first and len(receiver.requests) == 1:
                    time.sleep(receiver.stall_first)
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def db(tmp_path: Path) -> str:
    return str(tmp_path / "alerts.duckdb")


def _incidents():  # type: ignore[no-untyped-def]
    ended = incident(id="PK-1", start=utc(2024, 1, 20, 14, 5), end=utc(2024, 1, 20, 17, 10), status="ended")
    confirmed = incident(id="PK-2", start=utc(2024, 1, 21, 9))
    suspected = incident(id="PK-3", start=utc(2024, 1, 21, 12), status="suspected", confirmed_at=None)
    return [ended, confirmed, suspected]


def test_retried_on_500_and_signed(db: str) -> None:
    delays: list[float] = []
    with Receiver(statuses=[500, 503]) as rx:
        store = DuckDBStore(db)
        try:
            hook = Webhook(url=rx.url, secret=SECRET, backoff=0.25)
            results = deliver(store, _incidents()[1:2], [hook], sleep=delays.append)
        finally:
            store.close()
    assert [(r.incident, r.stage, r.ok, r.attempts, r.status) for r in results] == [("PK-2", "confirmed", True, 3, 200)]
    assert delays == [0.25, 0.5]  # exponential backoff between the three attempts
    assert len(rx.requests) == 3
    bodies = {r["body"] for r in rx.requests}
    assert len(bodies) == 1  # the same signed body on every attempt
    for r in rx.requests:
        sig = r["headers"][SIGNATURE_HEADER]
        assert hmac.compare_digest(sig, hmac.new(SECRET.encode(), r["body"], hashlib.sha256).hexdigest())
        assert r["headers"][DELIVERY_HEADER].endswith(":PK-2:confirmed")
    doc = json.loads(rx.requests[0]["body"])
    assert doc["event"] == "incident.confirmed" and doc["incident"]["id"] == "PK-2"
    assert doc["statement"].startswith("Confirmed: metrics show a nation-scale disruption")


def test_a_wrong_secret_does_not_verify(db: str) -> None:
    with Receiver() as rx:
        store = DuckDBStore(db)
        try:
            deliver(store, _incidents()[1:2], [Webhook(url=rx.url, secret=SECRET)], sleep=lambda s: None)
        finally:
            store.close()
    body, sig = rx.requests[0]["body"], rx.requests[0]["headers"][SIGNATURE_HEADER]
    assert sig != hmac.new(b"another-secret", body, hashlib.sha256).hexdigest()
    assert sig != hmac.new(SECRET.encode(), body + b" ", hashlib.sha256).hexdigest()


def test_timeout_is_retried(db: str) -> None:
    with Receiver(stall_first=1.5) as rx:
        store = DuckDBStore(db)
        try:
            results = deliver(store, _incidents()[1:2], [Webhook(url=rx.url, secret=SECRET, timeout=0.5)],
                              sleep=lambda s: None)
        finally:
            store.close()
    assert results[0].ok and results[0].attempts == 2


def test_client_error_is_not_retried_and_not_marked(db: str) -> None:
    with Receiver(statuses=[400]) as rx:
        store = DuckDBStore(db)
        try:
            first = deliver(store, _incidents()[1:2], [Webhook(url=rx.url)], sleep=lambda s: None)
            second = deliver(store, _incidents()[1:2], [Webhook(url=rx.url)], sleep=lambda s: None)
        finally:
            store.close()
    assert (first[0].ok, first[0].attempts, first[0].status) == (False, 1, 400)
    assert second[0].ok  # not marked as sent, so the next run tries again


def test_gives_up_after_attempts_and_retries_next_run(db: str) -> None:
    with Receiver(statuses=[500] * 3) as rx:
        store = DuckDBStore(db)
        try:
            failed = deliver(store, _incidents()[1:2], [Webhook(url=rx.url, attempts=3)], sleep=lambda s: None)
            later = deliver(store, _incidents()[1:2], [Webhook(url=rx.url, attempts=3)], sleep=lambda s: None)
        finally:
            store.close()
    assert not failed[0].ok and failed[0].error == "HTTP 500"
    assert later[0].ok and len(rx.requests) == 4


def test_restart_never_resends(db: str) -> None:
    with Receiver() as rx:
        hook = Webhook(url=rx.url, secret=SECRET)
        store = DuckDBStore(db)
        try:
            sent = deliver(store, _incidents(), [hook], sleep=lambda s: None)
        finally:
            store.close()
        # the default stages: confirmed and ended (PK-1 both, PK-2 confirmed; PK-3 only suspected)
        assert sorted((r.incident, r.stage) for r in sent) == [("PK-1", "confirmed"), ("PK-1", "ended"),
                                                               ("PK-2", "confirmed")]
        store = DuckDBStore(db)  # a restart: a new process would open the same file
        try:
            again = deliver(store, _incidents(), [hook], sleep=lambda s: None)
            # PK-2 ends later: only the new stage goes out
            ended = _incidents()[1].with_(end=utc(2024, 1, 21, 11), status="ended")
            update = deliver(store, [ended], [hook], sleep=lambda s: None)
        finally:
            store.close()
    assert again == []
    assert [(r.incident, r.stage) for r in update] == [("PK-2", "ended")]
    assert len(rx.requests) == 4


def test_slack_payload_is_text(db: str) -> None:
    with Receiver() as rx:
        store = DuckDBStore(db)
        try:
            deliver(store, _incidents()[:1], [Webhook(url=rx.url, style="slack")], stages_wanted=("ended",),
                    base_url="https://obs.example.org", sleep=lambda s: None)
        finally:
            store.close()
    doc = json.loads(rx.requests[0]["body"])
    assert set(doc) == {"text"}
    assert doc["text"].startswith("*Ended: X/Twitter, Facebook, Instagram and YouTube restricted in Pakistan*\n"
                                  "Restored:")
    assert "<https://obs.example.org/incident/PK-1|Details>" in doc["text"]
    assert SIGNATURE_HEADER not in rx.requests[0]["headers"]  # no secret, no signature


def test_bad_webhook_settings_are_clear_errors() -> None:
    with pytest.raises(ConfigError, match="http:// or https://"):
        Webhook(url="ftp://example.org")
    with pytest.raises(ConfigError, match="style"):
        Webhook(url="http://127.0.0.1:1/", style="teams")
