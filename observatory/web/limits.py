"""Bounds on what an anonymous client may cost the service: bytes, nesting, time, connections, requests.

Three layers, each cheap and each enforced before the expensive work it protects:

* `guarded_http(guard)`: uvicorn's HTTP/1.1 protocol with a connection limit per client address and in total,
  a deadline for a request's headers (slowloris) and one for its body. A refused or timed-out connection is
  closed at the socket, before any request object exists.
* `BoundsMiddleware`: per-endpoint body limits checked on Content-Length and again while reading (a body is
  never read past its limit), JSON nesting depth of the small bodies, and a per-address request rate for
  everything but the collector (which has its own limits, per address and per probe).
* `FailedAttempts`: failed admin-token attempts per address; past the limit even the right token waits.

Addresses are never stored: the rate tables key on an HMAC with a secret made at start-up (AddressKeys).
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec
from uvicorn.protocols.http.auto import AutoHTTPProtocol

from observatory.web.errors import RateLimited
from observatory.web.ratelimit import AddressKeys, KeyedLimiter

# The documented defaults (SECURITY.md); each is a WebSettings field, settable by flag or environment.
SMALL_BODY_BYTES = 16 * 1024  # user reports and reviews: a form's worth of text
DEFAULT_BODY_BYTES = 64 * 1024  # any other endpoint but the collector (which allows 32 MB to a signed probe)
MAX_JSON_DEPTH = 32  # an OONI measurement is about 8 deep; Python's parsers fail near 1,000
MAX_SPLIT_BYTES = 4 * 1024 * 1024  # a collector body too deep to parse is split item by item: this bounds that work
HEADER_TIMEOUT = 10.0  # seconds from connection (or from the previous answer) to a request's complete headers
BODY_TIMEOUT = 120.0  # seconds from a request's headers to its complete body (32 MB at ~2 Mbit/s)
MAX_CONNECTIONS_PER_ADDRESS = 100
MAX_CONNECTIONS = 2000
API_RATE, API_BURST = 20.0, 200.0  # requests per second per address, sustained and in a burst
# Per-probe quotas (SECURITY.md, "Limits"): what one probe may have stored per clock hour and per UTC day, in
# measurements and in bytes of documents. A probe measuring a few dozen targets every few minutes stores a few
# hundred measurements an hour of 10-100 kB each; the hourly count still admits one full batch (MAX_ITEMS), so
# a probe back from days offline drains its spool over hours instead of being refused forever. Relays have none.
PROBE_PER_HOUR, PROBE_PER_DAY = 20_000, 100_000
PROBE_BYTES_PER_HOUR, PROBE_BYTES_PER_DAY = 64 * 1024 * 1024, 512 * 1024 * 1024
ADMIN_FAILURES, ADMIN_WINDOW_SECONDS = 10, 900.0  # failed admin-token attempts per address per window

COLLECTOR_PATH = "/api/v1/measurements"
_SMALL_BODY_PATHS = re.compile(r"^/(api/v1/user-reports|report-a-problem|api/v1/incidents/[^/]+/review)/?$")


class RetryLater(RateLimited):
    """A 429 that says when to come back (the Retry-After header)."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = max(1, round(retry_after + 0.5))


# --- connections: a limit per address and in total, deadlines for headers and bodies -------------------------


@dataclass(slots=True)
class ConnectionGuard:
    """Open connections per client address (a plain count; the table empties as connections close)."""

    per_address: int = MAX_CONNECTIONS_PER_ADDRESS
    total: int = MAX_CONNECTIONS
    header_timeout: float = HEADER_TIMEOUT
    body_timeout: float = BODY_TIMEOUT
    open: dict[str, int] = field(default_factory=dict)
    open_total: int = 0
    refused: int = 0
    timed_out: int = 0

    # Called only from the server's event loop: no lock needed.
    def admit(self, address: str) -> bool:
        n = self.open.get(address, 0)
        if n >= self.per_address or self.open_total >= self.total:
            self.refused += 1
            return False
        self.open[address] = n + 1
        self.open_total += 1
        return True

    def release(self, address: str) -> None:
        n = self.open.get(address, 0) - 1
        self.open_total -= 1
        if n > 0:
            self.open[address] = n
        else:
            self.open.pop(address, None)


def guarded_http(guard: ConnectionGuard, base: type[Any] = AutoHTTPProtocol) -> type[Any]:
    """uvicorn's HTTP/1.1 protocol (httptools when installed, as uvicorn would pick, else h11) bounded by `guard`:
    pass as `http=` to uvicorn.Config / uvicorn.run.

    uvicorn itself only times out idle keep-alive connections, and any byte received cancels that timer: a
    client that sends one byte of headers every few seconds holds its socket forever."""

    class GuardedProtocol(base):  # type: ignore[misc, unused-ignore]  # httptools or h11, chosen at run time
        _admitted: str | None = None
        _deadline: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:
            super().connection_made(transport)
            address = self.client[0] if self.client else ""
            if not guard.admit(address):
                transport.abort()  # nothing read, nothing answered: the cheapest refusal
                return
            self._admitted = address
            self._arm(guard.header_timeout)

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            if self._admitted is not None:
                guard.release(self._admitted)
                self._admitted = None
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            waiting = self._waiting_for_headers()
            super().data_received(data)
            if waiting and not self._waiting_for_headers():
                self._arm(guard.body_timeout)  # headers complete: now the body has its own deadline

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._arm(guard.header_timeout if self._waiting_for_headers() else guard.body_timeout)

        def _waiting_for_headers(self) -> bool:
            return self.cycle is None or self.cycle.response_complete

        def _arm(self, seconds: float) -> None:
            self._disarm()
            self._deadline = self.loop.call_later(seconds, self._expire)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _expire(self) -> None:
            self._deadline = None
            # the client is late with headers, or still sending a body; a request being answered is left alone
            if self._waiting_for_headers() or self.cycle.more_body:
                guard.timed_out += 1
                self.transport.close()

    return GuardedProtocol


def server_options(guard: ConnectionGuard) -> dict[str, Any]:
    """uvicorn options for a service bounded by `guard` (observatory serve, the demo's server thread)."""
    return {"http": guarded_http(guard), "timeout_keep_alive": 5, "h11_max_incomplete_event_size": 16 * 1024}


# --- nesting depth -------------------------------------------------------------------------------------------

_JSON_STRING = re.compile(rb'"[^"]*"')
_KEEP_BRACKETS_AND_QUOTES = bytes(b for b in range(256) if b not in b'[]{}"')


def json_depth_exceeds(raw: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether valid JSON text nests arrays/objects more than `limit` deep, without parsing it (parsers recurse).

    Brackets inside strings do not count. All in C-speed passes: escaped backslashes and quotes are dropped, then
    everything but brackets and quotes, then the (now empty-bodied) strings; the depth is found by removing
    innermost pairs, one level a pass."""
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return False  # fewer openings than the limit: cannot be deeper (the common case, no copy made)
    skeleton = raw.replace(b"\\\\", b"").replace(b'\\"', b"").translate(None, _KEEP_BRACKETS_AND_QUOTES)
    brackets = _JSON_STRING.sub(b"", skeleton)
    for _ in range(limit):
        shorter = brackets.replace(b"[]", b"").replace(b"{}", b"")
        if not shorter:
            return False
        if len(shorter) == len(brackets):
            return False  # unbalanced: not valid JSON, the parser will say so
        brackets = shorter
    return True


_TOKEN = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{},]', re.DOTALL)


def batch_items(body: bytes, key: str = "measurements") -> list[bytes] | None:
    """The text of each item of `{"measurements": [...]}`, found without parsing the items: for a body a parser
    refused as too deep, so that its shallow items are still stored and only the deep ones refused, each with a
    reason. None when the body is not of that shape. Slow (a Python loop over tokens): only for such bodies."""
    depth, start, armed = 0, -1, False
    items: list[bytes] = []
    for m in _TOKEN.finditer(body):
        tok = m.group()
        if tok[:1] == b'"':
            if depth == 1 and start < 0:
                armed = msgspec.json.decode(tok) == key
            continue
        if tok in (b"[", b"{"):
            depth += 1
            if depth == 2 and armed and tok == b"[" and start < 0:
                start = m.end()
        elif tok in (b"]", b"}"):
            depth -= 1
            if depth == 1 and start >= 0:
                last = body[start:m.start()].strip()
                return [*items, last] if last or items else items
        elif depth == 2 and start >= 0:  # a comma between two items
            items.append(body[start:m.start()].strip())
            start = m.end()
    return None


# --- admin-token guessing --------------------------------------------------------------------------------------


class FailedAttempts:
    """Failed attempts per address in a sliding window; at the limit, every attempt waits (even a right one)."""

    def __init__(self, *, limit: int = ADMIN_FAILURES, window: float = ADMIN_WINDOW_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.limit, self.window, self.clock = limit, window, clock
        self._keys = AddressKeys()
        self._failures: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def check(self, address: str) -> None:
        now = self.clock()
        with self._lock:
            recent = [t for t in self._failures.get(self._keys(address), []) if now - t < self.window]
            if len(recent) >= self.limit:
                raise RetryLater(f"too many failed admin-token attempts from this address: at most {self.limit} "
                                 f"every {self.window / 60:g} minutes", recent[0] + self.window - now)

    def failed(self, address: str) -> None:
        now = self.clock()
        with self._lock:
            key = self._keys(address)
            self._failures[key] = [t for t in self._failures.get(key, []) if now - t < self.window] + [now]
            if len(self._failures) > 100_000:  # forget the oldest callers rather than grow without bound
                self._failures = dict(list(self._failures.items())[-50_000:])


# --- the ASGI layer: body sizes, depth, request rate --------------------------------------------------------


class _Refused(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


class BoundsMiddleware:
    """Pure ASGI (no buffering of its own beyond the small bodies it is there to bound)."""

    def __init__(self, app: Any, *, small_body: int = SMALL_BODY_BYTES, default_body: int = DEFAULT_BODY_BYTES,
                 max_depth: int = MAX_JSON_DEPTH, api_rate: float = API_RATE, api_burst: float = API_BURST) -> None:
        self.app, self.small_body, self.default_body, self.max_depth = app, small_body, default_body, max_depth
        self.limiter = KeyedLimiter(rate=api_rate, burst=api_burst) if api_rate > 0 else None
        self.keys = AddressKeys()

    def body_limit(self, path: str) -> int:
        return self.small_body if _SMALL_BODY_PATHS.match(path) else self.default_body

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"].rstrip("/") == COLLECTOR_PATH:
            await self.app(scope, receive, send)
            return
        try:
            self._check_rate(scope)
            body = await self._read_body(scope, receive)
        except _Refused as r:
            await _refuse(send, r)
            return
        replayed = False

        async def replay() -> Any:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # a disconnect, for whoever listens for one

        await self.app(scope, replay, send)

    def _check_rate(self, scope: Any) -> None:
        if self.limiter is None:
            return
        client = scope.get("client")
        ok, wait = self.limiter.allow(self.keys(client[0] if client else ""))
        if not ok:
            raise _Refused(429, f"too many requests from this address: at most {self.limiter.rate:g} a second",
                           {"Retry-After": str(max(1, round(wait + 0.5)))})

    async def _read_body(self, scope: Any, receive: Any) -> bytes:
        limit = self.body_limit(scope["path"])
        headers = dict(scope.get("headers") or ())
        declared = headers.get(b"content-length")
        too_big = f"request body over {limit} bytes: refused unread"
        if declared is not None and (not declared.strip().isdigit() or int(declared) > limit):
            raise _Refused(413, too_big)
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _Refused(400, "the client went away")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise _Refused(413, too_big)  # a chunked body is cut here, never read to its end
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if body and b"json" in headers.get(b"content-type", b"") and json_depth_exceeds(body, self.max_depth):
            raise _Refused(400, f"JSON nested deeper than {self.max_depth} levels")
        return body


async def _refuse(send: Any, r: _Refused) -> None:
    """A one-line JSON error that never echoes the request; the connection is closed (an unread body is
    dropped with it)."""
    body = msgspec.json.encode({"error": r.message, "status": r.status})
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
               (b"connection", b"close")] + [(k.lower().encode(), v.encode()) for k, v in r.headers.items()]
    await send({"type": "http.response.start", "status": r.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
