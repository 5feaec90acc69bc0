"""`observatory serve --webhook`: each detection run sends new confirmations and ends, signed, never twice."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from observatory.ingest import ingest_paths
from observatory.report.deliver import Webhook
from observatory.service import alerting_detector
from observatory.simulate.output import write_simulation
from observatory.simulate.scenario import load_scenario
from observatory.store.duckdb import DuckDBStore

SCENARIO = Path(__file__).parent / "data" / "pk-short.toml"


class _Receiver(BaseHTTPRequestHandler):
    got: list[tuple[bytes, str]] = []

    def log_message(self, *args: object) -> None:
        pass

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.got.append((body, self.headers.get("X-Observatory-Signature", "")))
        self.send_response(200)
        self.end_headers()


def test_detection_runs_alert_once_with_signed_payloads(tmp_path: Path) -> None:
    sim = tmp_path / "m.jsonl"
    write_simulation(load_scenario(SCENARIO), out=str(sim))
    store = DuckDBStore(str(tmp_path / "o.duckdb"))
    ingest_paths(store, [sim])
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Receiver.got = []
    try:
        hook = Webhook(url=f"http://127.0.0.1:{server.server_address[1]}/hook", secret="s3cret")
        detect = alerting_detector([hook], "http://127.0.0.1:8000/")
        detect(store)
        first = list(_Receiver.got)
        assert first, "the confirmed disruption is announced"
        for body, signature in first:
            assert signature == hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
        events = [json.loads(body)["event"] for body, _ in first]
        assert "incident.confirmed" in events
        assert all(json.loads(b)["statement"].startswith(("Confirmed", "Restored", "Suspected")) for b, _ in first)
        detect(store)  # nothing new: nothing re-sent
        assert _Receiver.got == first
    finally:
        server.shutdown()
        server.server_close()
        store.close()
