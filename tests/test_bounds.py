"""Attacks by anonymous clients on a real server on loopback: huge and endless bodies, deep JSON, slow headers,
too many connections, token guessing and request floods. Each is refused cheaply, with a 4xx that echoes
nothing, and honest clients are still served."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from collector_app import make_app
from probe_net import UvicornThread
from test_collector_api import sample

from observatory.store.duckdb import DuckDBStore
from observatory.web import WebSettings, create_app
from observatory.web.auth import create_probe, sign
from observatory.web.limits import ConnectionGuard, batch_items, json_depth_exceeds
from observatory.web.server import ServerThread

ADMIN = "bounds-admin-token-0123456789"
MARKER = "ECHO-ME-BACK-" * 4


@dataclass
class Served:
    url: str
    port: int
    guard: ConnectionGuard
    store: DuckDBStore


def _serve(tmp_path: Path, guard: ConnectionGuard | None = None, **settings: Any) -> Iterator[Served]:
    store = DuckDBStore(str(tmp_path / "obs.duckdb"))
    guard = guard or ConnectionGuard()
    app = create_app(WebSettings(admin_token=ADMIN, detect_every_seconds=0, **settings), store, detector=None)
    server = ServerThread(app, "127.0.0.1", 0, guard=guard)
    port = server.start()
    try:
        yield Served(f"http://127.0.0.1:{port}", port, guard, store)
    finally:
        server.stop()
        store.close()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    yield from _serve(tmp_path, ConnectionGuard(per_address=20, header_timeout=1.0, body_timeout=2.0))


def _connect(port: int, source: str = "127.0.0.1") -> socket.socket:
    s = socket.socket()
    s.bind((source, 0))
    s.settimeout(5)
    s.connect(("127.0.0.1", port))
    return s


def _answer(s: socket.socket, timeout: float = 5.0) -> bytes:
    """Everything the server sends until it closes or goes quiet."""
    s.settimeout(timeout)
    got = b""
    try:
        while chunk := s.recv(65536):
            got += chunk
            if b"\r\n\r\n" in got and b"content-length" in got.lower():
                head, _, body = got.partition(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                if len(body) >= length:
                    break
    except (TimeoutError, ConnectionResetError):
        pass
    return got


def _closed(s: socket.socket, within: float) -> bool:
    """Whether the server closed the connection (EOF or reset) within `within` seconds."""
    s.settimeout(within)
    try:
        return s.recv(1024) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


# --- bodies ----------------------------------------------------------------------------------------------------


def test_huge_declared_body_is_refused_unread_and_not_echoed(served: Served) -> None:
    s = _connect(served.port)
    started = time.monotonic()
    s.sendall(b"POST /api/v1/user-reports HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Content-Length: 104857600\r\n\r\n" + b'{"text": "' + MARKER.encode() * 100)
    answer = _answer(s)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert MARKER.encode() not in answer
    assert time.monotonic() - started < 2, "refused on its Content-Length, before reading 100 MB"
    assert _closed(s, 2), "the connection is closed: the rest of the body is never read"
    s.close()


def test_endless_chunked_body_is_cut_at_the_limit(served: Served) -> None:
    """No Content-Length: the server reads up to the limit (16 KB here), answers 413 and hangs up, however
    much the client still wants to send."""
    s = _connect(served.port)
    s.sendall(b"POST /api/v1/incidents/x/review HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Transfer-Encoding: chunked\r\n\r\n")
    chunk = b"%x\r\n%s\r\n" % (65536, b"[" * 65536)
    sent = 0
    try:
        while sent < 100 * 1024 * 1024:
            s.sendall(chunk)
            sent += 65536
    except (BrokenPipeError, ConnectionResetError):
        pass
    answer = _answer(s)
    s.close()
    assert sent < 16 * 1024 * 1024, f"the server kept reading: {sent:,} bytes accepted"
    assert answer == b"" or answer.startswith(b"HTTP/1.1 413"), answer[:200]


def test_validation_errors_do_not_echo_what_was_sent(served: Served) -> None:
    with httpx.Client(base_url=served.url, timeout=10) as c:
        r = c.post("/api/v1/user-reports", json={"country": MARKER, "platform": ["twitter", MARKER],
                                                  "region": MARKER * 10})
        assert r.status_code == 422
        assert MARKER not in r.text and len(r.content) < 1000
        assert "country" in r.json()["error"], "the field is still named"
        r = c.post("/api/v1/user-reports", json={"country": "PK", "platform": MARKER[:40]})
        assert r.status_code == 400 and MARKER[:20] not in r.text and r.json()["parameter"] == "platform"


def test_deep_json_in_a_small_body_is_a_400(served: Served) -> None:
    with httpx.Client(base_url=served.url, timeout=10) as c:
        body = b'{"country": "PK", "platform": "twitter", "text": ' + b"[" * 5000 + b"]" * 5000 + b"}"
        r = c.post("/api/v1/user-reports", content=body, headers={"Content-Type": "application/json"})
        assert r.status_code == 400 and "deeper" in r.json()["error"]


def test_a_deep_measurement_is_refused_alone_and_the_rest_of_its_batch_stored(tmp_path: Path) -> None:
    store = DuckDBStore(str(tmp_path / "c.duckdb"))
    cred = create_probe(store, "p1")
    server = UvicornThread(make_app(store))
    try:
        deep = sample(1)
        deep["test_keys"]["nested"] = "@@"
        text = json.dumps({"measurements": [sample(0), deep, sample(2)]})
        body = text.replace('"@@"', '{"a":' * 1000 + "1" + "}" * 1000).encode()
        r = httpx.post(server.url + "/api/v1/measurements", content=body, timeout=30,
                       headers={"Authorization": f"Bearer {cred['token']}",
                                "X-Observatory-Signature": sign(body, cred["secret"])})
        assert r.status_code == 200, r.text[:300]
        res = r.json()
        assert (res["accepted"], res["rejected"]) == (2, 1)
        assert "deeper than" in res["results"][1]["reason"]
        assert store.count() == 2
    finally:
        server.stop()
        store.close()


def test_a_big_deep_body_is_refused_whole_without_splitting(tmp_path: Path) -> None:
    """Finding the deep item of a body is a Python scan: above 4 MB the body is refused whole (a 400 with the
    reason, quickly) rather than costing the collector seconds of CPU per request."""
    store = DuckDBStore(str(tmp_path / "c.duckdb"))
    cred = create_probe(store, "p1")
    server = UvicornThread(make_app(store))
    try:
        items = [json.dumps(sample(i)) for i in range(2)] + ["[" * 2000 + "]" * 2000]
        body = ('{"measurements": [' + ",".join(items) + '], "pad": "' + "x" * (4 * 1024 * 1024) + '"}').encode()
        started = time.monotonic()
        r = httpx.post(server.url + "/api/v1/measurements", content=body, timeout=60,
                       headers={"Authorization": f"Bearer {cred['token']}",
                                "X-Observatory-Signature": sign(body, cred["secret"])})
        assert r.status_code == 400 and "deeper than" in r.json()["error"], r.text[:300]
        assert time.monotonic() - started < 5
        assert store.count() == 0
    finally:
        server.stop()
        store.close()


def test_depth_helpers() -> None:
    assert json_depth_exceeds(b"[" * 33 + b"]" * 33, 32)
    assert not json_depth_exceeds(b"[" * 32 + b"]" * 32, 32)
    assert not json_depth_exceeds(b'{"a": "' + b"[" * 100 + b'"}', 32), "brackets inside strings do not count"
    nested = json.dumps({"k": "\\\"" + "]" * 40, "d": json.loads("[" * 31 + "]" * 31), "e": "{" * 50}).encode()
    assert not json_depth_exceeds(nested, 32), "escaped quotes and backslashes do not end a string early"
    assert json_depth_exceeds(json.dumps({"k": "\\" * 3, "d": json.loads("[" * 33 + "]" * 33)}).encode(), 32)
    body = b'{"x": "[", "measurements": [{"a": [1, "],"]}, 3 , "s,t", ' + b"[" * 99 + b"]" * 99 + b'], "y": 1}'
    assert batch_items(body) == [b'{"a": [1, "],"]}', b"3", b'"s,t"', b"[" * 99 + b"]" * 99]
    assert batch_items(b'{"measurements": []}') == [] and batch_items(b"[1]") is None


# --- slow clients, many connections ----------------------------------------------------------------------------


def test_slow_headers_are_cut_at_the_deadline(served: Served) -> None:
    """A slowloris client trickling a header byte every 0.3 s is closed after the 1 s header deadline."""
    s = _connect(served.port)
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
    started = time.monotonic()
    closed = False
    while time.monotonic() - started < 5:
        try:
            s.sendall(b"X")
        except (BrokenPipeError, ConnectionResetError):
            closed = True
            break
        if _closed(s, 0.3):
            closed = True
            break
    held = time.monotonic() - started
    s.close()
    assert closed and held < 2.5, f"held {held:.1f} s"


def test_slow_body_is_cut_at_the_deadline(served: Served) -> None:
    s = _connect(served.port)
    s.sendall(b"POST /api/v1/user-reports HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Content-Length: 1000\r\n\r\n{")
    started = time.monotonic()
    assert _closed(s, 5)
    assert time.monotonic() - started < 3.5, "closed at the 2 s body deadline"
    s.close()


def test_one_address_cannot_hold_every_connection(served: Served) -> None:
    """20 connections per address: the 21st from the same address is closed unanswered, while another address
    (127.0.0.2, also loopback) is served; once the holder lets go, it is served again."""
    held = [_connect(served.port) for _ in range(20)]
    for s in held:
        s.sendall(b"GET /healthz HTTP/1.1\r\n")  # partial headers, as a slowloris would
    time.sleep(0.2)
    extra = _connect(served.port)
    extra.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert _answer(extra, 2) == b"", "over the limit: closed without an answer"
    extra.close()
    other = _connect(served.port, source="127.0.0.2")
    other.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert _answer(other).startswith(b"HTTP/1.1 200")
    other.close()
    for s in held:
        s.close()
    time.sleep(0.3)
    again = _connect(served.port)
    again.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert _answer(again).startswith(b"HTTP/1.1 200")
    again.close()
    assert served.guard.refused >= 1


# --- rate limits ----------------------------------------------------------------------------------------------


def test_admin_token_guessing_is_slowed_to_a_stop(tmp_path: Path) -> None:
    for srv in _serve(tmp_path, admin_failures=3):
        url = "/api/v1/incidents/nope/review"
        body = {"action": "annotate", "note": "x"}
        with httpx.Client(base_url=srv.url, timeout=10) as c:
            codes = [c.post(url, json=body, headers={"Authorization": f"Bearer guess-{i}"}).status_code
                     for i in range(3)]
            assert codes == [401, 401, 401]
            r = c.post(url, json=body, headers={"Authorization": f"Bearer {ADMIN}"})
            assert r.status_code == 429, "even the right token waits once the address failed too often"
            assert int(r.headers["retry-after"]) > 60


def test_api_flood_from_one_address_gets_429_with_retry_after(tmp_path: Path) -> None:
    for srv in _serve(tmp_path, api_rate=1, api_burst=5):
        with httpx.Client(base_url=srv.url, timeout=10) as c:
            codes = [c.get("/healthz").status_code for _ in range(7)]
            assert codes[:5] == [200] * 5 and codes[5:] == [429, 429]
            r = c.get("/api/v1/countries")
            assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1


def test_observatory_serve_applies_its_bounds(tmp_path: Path) -> None:
    """The command, as run in production: its flags reach the server (rate, connections, header deadline)."""
    import os
    import subprocess
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "observatory", "serve", "--db", str(tmp_path / "s.duckdb"), "--port", str(port),
         "--detect-every", "0", "--api-rate", "1", "--api-burst", "3", "--max-connections-per-address", "5",
         "--header-timeout", "1"],
        env=dict(os.environ, PYTHONPATH=str(root)), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "serve did not start"
                time.sleep(0.2)
        time.sleep(1.5)  # the probe connection above is gone
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as c:
            codes = [c.get("/healthz").status_code for _ in range(6)]
            assert codes[:3] == [200, 200, 200] and 429 in codes[3:], codes
        held = [_connect(port) for _ in range(6)]
        for s in held:
            s.sendall(b"GET /healthz HTTP/1.1\r\n")
        time.sleep(0.3)
        assert _closed(held[5], 0.5), "the 6th connection from one address is closed"
        assert all(_closed(s, 3) for s in held[:5]), "the others at the 1 s header deadline"
        for s in held:
            s.close()
    finally:
        proc.terminate()
        proc.wait(20)
