"""A small HTTP/1.1 client over our own TCP/TLS streams: GET following redirects, and a bounded download.

Our own because the probe must choose the address it connects to (the probe's DNS answers, or the lab's
connect map), validate certificates against a given CA bundle, cap the body it keeps, and name each failure
in OONI's vocabulary. One request per connection (`Connection: close`), identity encoding.
"""

from __future__ import annotations

import asyncio
import re
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit

from observatory.failure import EOF_ERROR, failure_from_exception
from observatory.measurement import Download, HTTPRequest, HTTPResponse, HTTPTransaction
from observatory.probe.net import Clock, NetConfig
from observatory.probe.tcp import Conn, open_tcp
from observatory.probe.tls import open_tls

REDIRECTS = frozenset({301, 302, 303, 307, 308})
MAX_HEADER_BYTES = 64 * 1024
_TITLE = re.compile(rb"(?i)<title>([^<]{1,512})</title>")

# resolves a hostname to the addresses to try (the probe's own DNS, already measured for the first hop)
Resolve = Callable[[str], Awaitable[list[str]]]


class ProtocolError(Exception):
    """The server's bytes are not HTTP/1.1; recorded as a failure, never raised past this module."""


@dataclass(slots=True)
class Response:
    code: int
    headers: dict[str, str]
    body: bytes = b""
    truncated: bool = False
    raw_headers: list[tuple[str, str]] = field(default_factory=list)


def title_of(body: bytes | str) -> str:
    data = body.encode("utf-8", "replace") if isinstance(body, str) else body
    m = _TITLE.search(data)
    return m.group(1).decode("utf-8", "replace").strip() if m else ""


def _request_headers(host: str, cfg: NetConfig) -> dict[str, str]:
    return {"Host": host, "User-Agent": cfg.user_agent, "Accept": "*/*", "Accept-Encoding": "identity",
            "Connection": "close"}


class _Reader:
    """Buffered reads over a Conn."""

    def __init__(self, conn: Conn) -> None:
        self.conn = conn
        self.buf = b""
        self.eof = False

    async def fill(self) -> bool:
        if self.eof:
            return False
        data = await self.conn.read()
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    async def line(self, limit: int) -> bytes:
        while b"\r\n" not in self.buf:
            if len(self.buf) > limit:
                raise ProtocolError("header line too long")
            if not await self.fill():
                raise EOFError("connection closed before the response headers")
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    async def take(self, n: int) -> bytes:
        while len(self.buf) < n:
            if not await self.fill():
                raise EOFError("connection closed in the middle of the body")
        out, self.buf = self.buf[:n], self.buf[n:]
        return out


async def _read_head(r: _Reader) -> Response:
    status = await r.line(MAX_HEADER_BYTES)
    parts = status.split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
        raise ProtocolError(f"not an HTTP status line: {status[:80]!r}")
    raw: list[tuple[str, str]] = []
    size = 0
    while True:
        line = await r.line(MAX_HEADER_BYTES)
        size += len(line)
        if size > MAX_HEADER_BYTES:
            raise ProtocolError("response headers too large")
        if not line:
            break
        name, _, value = line.decode("latin-1").partition(":")
        raw.append((name.strip(), value.strip()))
    headers = {name: value for name, value in raw}
    return Response(code=int(parts[1]), headers=headers, raw_headers=raw)


async def _read_body(r: _Reader, resp: Response, limit: int, on_bytes: Callable[[int], None] | None = None) -> None:
    """Reads the body (Content-Length, chunked, or until close), keeping at most `limit` bytes."""
    lower = {k.lower(): v for k, v in resp.headers.items()}
    kept = bytearray()

    def keep(data: bytes) -> bool:
        if on_bytes:
            on_bytes(len(data))
        room = limit - len(kept)
        kept.extend(data[:room])
        if len(data) > room:
            resp.truncated = True
            return False
        return True

    if "chunked" in lower.get("transfer-encoding", "").lower():
        while True:
            size_line = await r.line(1024)
            try:
                size = int(size_line.split(b";")[0].strip() or b"0", 16)
            except ValueError:
                raise ProtocolError(f"bad chunk size {size_line[:40]!r}") from None
            if size == 0:
                break
            if not keep(await r.take(size)):
                break
            await r.take(2)
    elif "content-length" in lower and lower["content-length"].strip().isdigit():
        remaining = int(lower["content-length"])
        while remaining > 0:
            if not r.buf and not await r.fill():
                raise EOFError("connection closed in the middle of the body")
            chunk, r.buf = r.buf[:remaining], r.buf[remaining:]
            remaining -= len(chunk)
            if not keep(chunk):
                break
    else:
        while True:
            if r.buf:
                chunk, r.buf = r.buf, b""
                if not keep(chunk):
                    break
            if not await r.fill():
                break
    resp.body = bytes(kept)


async def _connect(url: str, ip: str, cfg: NetConfig) -> Conn:
    parts = urlsplit(url)
    https = parts.scheme == "https"
    port = parts.port or (443 if https else 80)
    if https:
        return await open_tls(ip, port, parts.hostname or "", cfg)
    return await open_tcp(ip, port, cfg)


def _path(url: str) -> str:
    parts = urlsplit(url)
    return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


async def _exchange(url: str, ip: str, cfg: NetConfig, limit: int,
                    on_bytes: Callable[[int], None] | None = None, conn: Conn | None = None) -> Response:
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    conn = conn or await _connect(url, ip, cfg)
    try:
        head = f"GET {_path(url)} HTTP/1.1\r\n" + "".join(
            f"{k}: {v}\r\n" for k, v in _request_headers(host, cfg).items()) + "\r\n"
        await conn.write(head.encode("latin-1"))
        r = _Reader(conn)
        resp = await _read_head(r)
        await _read_body(r, resp, limit, on_bytes)
        return resp
    finally:
        conn.close()


def _failure(exc: BaseException) -> str:
    if isinstance(exc, ProtocolError | EOFError):
        return EOF_ERROR if isinstance(exc, EOFError) else f"unknown_failure: {exc}"[:200]
    return failure_from_exception(exc)


_NETWORK_ERRORS = (OSError, TimeoutError, ssl.SSLError, EOFError, ProtocolError)


async def get(url: str, first_ip: str | None, resolve: Resolve, *, cfg: NetConfig, clock: Clock,
              first_conn: Conn | None = None) -> tuple[list[HTTPTransaction], Response | None, str]:
    """GET `url` following redirects. Returns the transactions (OONI order: last hop first), the final
    response (None on failure) and the final URL. The first hop connects to `first_ip`, or uses
    `first_conn` (already connected to it) when given; this function closes it."""
    transactions: list[HTTPTransaction] = []
    current, ip, conn = url, first_ip, first_conn
    for _ in range(cfg.max_redirects + 1):
        host = urlsplit(current).hostname or ""
        tx = HTTPTransaction(request=HTTPRequest(url=current, method="GET",
                                                 headers=_request_headers(host, cfg)), t0=clock())
        transactions.insert(0, tx)
        try:
            if ip is None:
                ips = await resolve(host)
                if not ips:
                    raise OSError(f"no address for {host}")
                ip = ips[0]
            resp = await asyncio.wait_for(_exchange(current, ip, cfg, cfg.body_limit, conn=conn), cfg.http_timeout)
        except _NETWORK_ERRORS as exc:
            if conn is not None:
                conn.close()
            tx.failure = _failure(exc) if not isinstance(exc, _DNSFailure) else exc.failure
            tx.t = clock()
            return transactions, None, current
        conn = None  # used (and closed) by the first hop; redirects connect afresh
        tx.t = clock()
        tx.response = HTTPResponse(code=resp.code, headers=resp.headers,
                                   body=resp.body.decode("utf-8", "replace"), body_is_truncated=resp.truncated)
        location = resp.headers.get("Location") or resp.headers.get("location")
        if resp.code in REDIRECTS and location:
            current, ip = urljoin(current, location), None
            continue
        return transactions, resp, current
    return transactions, None, current


class _DNSFailure(OSError):
    """A redirect's hostname did not resolve: the HTTP failure is the DNS failure."""

    def __init__(self, failure: str) -> None:
        super().__init__(failure)
        self.failure = failure


def dns_failure(failure: str) -> OSError:
    return _DNSFailure(failure)


async def download(url: str, ip: str, *, cfg: NetConfig) -> Download:
    """A bounded download of `url` from `ip`: up to cfg.download_bytes or cfg.download_seconds, whichever first.

    Reaching the time bound is not a failure (a slow link is the point of measuring); receiving nothing is.
    """
    received = 0

    def count(n: int) -> None:
        nonlocal received
        received += n

    start = time.monotonic()
    failure: str | None = None
    try:
        await asyncio.wait_for(_exchange(url, ip, cfg, cfg.download_bytes, count), cfg.download_seconds)
    except TimeoutError as exc:
        if received == 0:
            failure = failure_from_exception(exc)
    except _NETWORK_ERRORS as exc:
        failure = _failure(exc)
    seconds = time.monotonic() - start
    return Download(url=url, bytes=received, seconds=round(seconds, 6), failure=failure)
