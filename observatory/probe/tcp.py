"""TCP connect, and the byte streams (plain or TLS) the other steps talk over."""

from __future__ import annotations

import asyncio
import contextlib
import ssl

from observatory.failure import failure_from_exception
from observatory.measurement import TCPConnect, TCPStatus
from observatory.probe.net import Clock, NetConfig

READ_CHUNK = 65536


class Conn:
    """A connection the HTTP client reads and writes; plain TCP here, TLS in `tls.TLSConn`."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def read(self, n: int = READ_CHUNK) -> bytes:
        return await self.reader.read(n)

    async def write(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()


async def open_tcp(ip: str, port: int, cfg: NetConfig) -> Conn:
    """Connects (through the connect map) within the connect timeout; raises on failure."""
    host, real_port = cfg.dial_address(ip, port)
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, real_port), cfg.connect_timeout)
    return Conn(reader, writer)


async def tcp_connect(ip: str, port: int, *, cfg: NetConfig, clock: Clock) -> TCPConnect:
    """One TCP connect to ip:port: success, or the OONI failure (connection_refused, generic_timeout_error...)."""
    t0 = clock()
    try:
        conn = await open_tcp(ip, port, cfg)
    except (OSError, TimeoutError, ssl.SSLError) as exc:
        return TCPConnect(ip=ip, port=port, t0=t0, t=clock(),
                          status=TCPStatus(success=False, failure=failure_from_exception(exc)))
    conn.close()
    return TCPConnect(ip=ip, port=port, t0=t0, t=clock(), status=TCPStatus(success=True, failure=None))
