"""Real servers on loopback for the probe's tests and benchmark: a DNS server and TCP/TLS/HTTP servers
that behave like a healthy site or like a censor (reset, stall, EOF, wrong certificate, block page, trickle).

Everything runs in one asyncio loop in a background thread, on 127.0.0.1 only. Platform addresses are
logical (198.18.0.0/15, as in the simulator and the lab); the probe's `connect_map` points each logical
ip:port at the loopback port of the server that plays it.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import struct
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
import trustme

PAGE_TITLE = "Facebook - log in or sign up"
BLOCK_PAGE = (b"<html><head><title>Blocked</title></head><body><h1>Surf Safely!</h1>"
              b"<p>This website is not accessible in Pakistan (PTA).</p></body></html>")


def page(size: int = 64 * 1024) -> bytes:
    head = f"<html><head><title>{PAGE_TITLE}</title></head><body>".encode()
    return head + b"x" * max(0, size - len(head) - 14) + b"</body></html>"


@dataclass
class Zone:
    """name -> list of IPv4 answers, or an rcode name ("NXDOMAIN", "REFUSED", "SERVFAIL"), or "STALL"."""

    records: dict[str, list[str] | str] = field(default_factory=dict)


class _DNSProtocol(asyncio.DatagramProtocol):
    def __init__(self, zone: Zone) -> None:
        self.zone = zone
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        q = dns.message.from_wire(data)
        name = str(q.question[0].name).rstrip(".").lower()
        r = dns.message.make_response(q)
        rec = self.zone.records.get(name, "NXDOMAIN")
        if rec == "STALL":
            return
        if isinstance(rec, str):
            r.set_rcode(dns.rcode.from_text(rec))
        elif q.question[0].rdtype == dns.rdatatype.A:
            r.answer.append(dns.rrset.from_text(q.question[0].name, 60, "IN", "A", *rec))
        assert self.transport is not None
        self.transport.sendto(r.to_wire(), addr)


def _rst(writer: asyncio.StreamWriter) -> None:
    """Close with an RST (SO_LINGER 0), as a censor's injected reset looks to the client."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def _read_request(reader: asyncio.StreamReader) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = await reader.read(4096)
        if not chunk:
            break
        data += chunk
    return data


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Coroutine[Any, Any, None]]


def http_handler(body: bytes = b"", *, status: str = "200 OK", delay: float = 0.0, trickle: int = 0,
                 trickle_every: float = 0.05, headers: dict[str, str] | None = None,
                 bodies: dict[str, bytes] | None = None) -> Handler:
    """Serves `body` (or `bodies[path]`); `delay` before answering; `trickle` bytes per `trickle_every`."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        req = await _read_request(reader)
        path = req.split(b" ", 2)[1].decode() if req.count(b" ") >= 2 else "/"
        data = (bodies or {}).get(path, body)
        if delay:
            await asyncio.sleep(delay)
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        writer.write(f"HTTP/1.1 {status}\r\nContent-Type: text/html\r\nContent-Length: {len(data)}\r\n"
                     f"{extra}Connection: close\r\n\r\n".encode())
        if trickle:
            for i in range(0, len(data), trickle):
                writer.write(data[i:i + trickle])
                await writer.drain()
                await asyncio.sleep(trickle_every)
        else:
            writer.write(data)
        await writer.drain()
        writer.close()

    return handle


async def reset_on_data(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Accepts the connection, waits for the first bytes (a ClientHello or a request), then sends RST."""
    await reader.read(1)
    _rst(writer)


async def eof_on_data(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.read(1)
    writer.close()


async def stall(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(asyncio.CancelledError):  # cancelled at shutdown: nothing to report
        await asyncio.sleep(3600)


def closed_port() -> int:
    """A loopback port nothing listens on: connects are refused (RST in answer to SYN)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _quiet(handler: Handler) -> Handler:
    """A client that hangs up early (the probe's TCP-connect step does) is normal, not a server error."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, ssl.SSLError, asyncio.CancelledError):
            await handler(reader, writer)

    return handle


class LocalNet:
    """A background event loop holding every server; `serve(...)` returns the loopback port."""

    def __init__(self) -> None:
        self.ca = trustme.CA()
        self.rogue_ca = trustme.CA()  # a censor's CA the probe does not trust
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self._servers: list[Any] = []
        self._held: list[socket.socket] = []
        self.ca_file = None

    def call(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def write_ca(self, path: str) -> str:
        self.ca.cert_pem.write_to_path(path)
        self.ca_file = path
        return path

    def server_context(self, names: list[str], *, ca: trustme.CA | None = None) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        (ca or self.ca).issue_cert(*names).configure_cert(ctx)
        return ctx

    def serve(self, handler: Handler, *, tls: ssl.SSLContext | None = None) -> int:
        async def start() -> int:
            # a deep accept queue: the benchmark opens hundreds of connections to one server at once
            server = await asyncio.start_server(_quiet(handler), "127.0.0.1", 0, ssl=tls, backlog=4096,
                                                ssl_handshake_timeout=5 if tls else None)
            self._servers.append(server)
            return server.sockets[0].getsockname()[1]

        return self.call(start())

    def dns(self, zone: Zone) -> int:
        async def start() -> int:
            transport, _ = await self.loop.create_datagram_endpoint(lambda: _DNSProtocol(zone),
                                                                    local_addr=("127.0.0.1", 0))
            self._servers.append(transport)
            return transport.get_extra_info("sockname")[1]

        return self.call(start())

    def blackhole(self) -> int:
        """A port whose SYNs go unanswered: a listener with a full accept queue that never accepts."""
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen(0)
        port = s.getsockname()[1]
        filler = socket.socket()
        filler.connect(("127.0.0.1", port))
        self._held += [s, filler]
        return port

    def closed_port(self) -> int:
        return closed_port()

    def close(self) -> None:
        async def stop() -> None:
            for s in self._servers:
                s.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        with contextlib.suppress(Exception):
            self.call(stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        for s in self._held:
            s.close()


class UvicornThread:
    """A real uvicorn server for an ASGI app on 127.0.0.1 (random port), in a thread."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        self._sock = sock
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True)
        self.thread.start()
        import time

        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        self.url = f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self._sock.close()
