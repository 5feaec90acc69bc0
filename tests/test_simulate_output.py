"""Streaming out: accelerated real time to a file or stdout, and signed batches to a collector on loopback."""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from observatory.errors import ConfigError
from observatory.simulate import Generator, load_scenario, stream_to_collector, stream_to_file
from observatory.simulate.output import paced

SHORT = """
name = "short"
seed = 3
start = "2024-01-20T13:00:00Z"
end = "2024-01-20T14:00:00Z"
interval_minutes = 10
targets = ["twitter", "control"]
[noise]
late_share = 0.0
duplicate_share = 0.0
[[country]]
code = "PK"
timezone = "Asia/Karachi"
  [[country.network]]
  asn = 17557
  name = "PTCL"
  type = "fixed"
  probes = 3
  regions = ["Punjab"]
[[event]]
kind = "platform_restriction"
country = "PK"
platforms = ["twitter"]
technique = "tcp_reset"
start = "2024-01-20T13:30:00Z"
end = "2024-01-20T14:00:00Z"
"""


@pytest.fixture
def short(tmp_path: Path):
    p = tmp_path / "short.toml"
    p.write_text(SHORT)
    return load_scenario(p)


def test_paced_releases_each_line_at_its_accelerated_upload_time() -> None:
    now = [100.0]
    sleeps: list[float] = []

    def sleep(s: float) -> None:
        sleeps.append(s)
        now[0] += s

    items = [(1000.0, b"a"), (1060.0, b"b"), (1060.0, b"c"), (1600.0, b"d")]
    out = list(paced(items, 1000.0, 60.0, clock=lambda: now[0], sleep=sleep))
    assert out == items
    assert sleeps == pytest.approx([1.0, 9.0])  # 60 s then 540 s of scenario time at 60x
    assert list(paced(items, 1000.0, None, clock=lambda: now[0], sleep=sleep)) == items


def test_speed_streams_in_accelerated_real_time(short) -> None:
    plain = [line for _, line in Generator(short).lines()]
    last_upload = max(t for t, _ in Generator(short).lines()) - short.start.timestamp()
    buf = io.BytesIO()
    t0 = time.monotonic()
    summary = stream_to_file(short, buf, speed=last_upload / 1.0)  # the whole hour in about one second
    took = time.monotonic() - t0
    assert 0.8 < took < 5
    assert buf.getvalue().splitlines() == plain and summary.measurements == len(plain)


class _Collector(BaseHTTPRequestHandler):
    batches: list[tuple[dict[str, str], bytes]] = []
    status = 200

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).batches.append(({k: v for k, v in self.headers.items()}, body))
        self.send_response(self.status)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"accepted": 1}' if self.status < 400 else b'{"error": "bad token"}')

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def collector() -> Iterator[tuple[str, type[_Collector]]]:
    handler = type("H", (_Collector,), {"batches": [], "status": 200})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", handler
    server.shutdown()
    server.server_close()


def test_collector_receives_signed_batches(short, collector) -> None:
    url, handler = collector
    plain = [json.loads(line) for _, line in Generator(short).lines()]
    summary = stream_to_collector(short, url + "/", "tok-123", "s3cret", batch_size=25)
    assert summary.measurements == len(plain)
    got = []
    for headers, body in handler.batches:
        assert headers["Authorization"] == "Bearer tok-123"
        expected = hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
        assert headers["X-Observatory-Signature"] == expected
        batch = json.loads(body)["measurements"]
        assert 0 < len(batch) <= 25
        got.extend(batch)
    assert got == plain and len(handler.batches) >= len(plain) // 25


def test_collector_refusal_is_a_clear_error(short, collector) -> None:
    url, handler = collector
    handler.status = 401
    with pytest.raises(ConfigError, match=r"/api/v1/measurements: HTTP 401: .*bad token"):
        stream_to_collector(short, url, "wrong", "wrong")


def test_unreachable_collector_is_a_clear_error(short) -> None:
    with pytest.raises(ConfigError, match=r"--collector http://127\.0\.0\.1:9/api/v1/measurements: Connect"):
        stream_to_collector(short, "http://127.0.0.1:9", "t", "s")


def test_cli_streams_to_stdout_with_speed(short) -> None:
    res = subprocess.run([sys.executable, "-m", "observatory", "simulate", short.path, "--out", "-",
                          "--speed", "36000"], capture_output=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == [line for _, line in Generator(short).lines()]


def test_cli_collector_needs_credentials(short) -> None:
    res = subprocess.run([sys.executable, "-m", "observatory", "simulate", short.path, "--collector",
                          "http://127.0.0.1:9"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and "--collector needs --token and --secret" in res.stderr
