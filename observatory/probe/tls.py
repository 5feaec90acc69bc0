"""TLS handshakes with SNI over our own byte pump (ssl.MemoryBIO), so each failure is named exactly.

asyncio's built-in TLS turns a peer's EOF during the handshake into a generic ConnectionResetError; OONI
distinguishes `eof_error` (the censor closed) from `connection_reset` (the censor sent RST). Pumping the
bytes ourselves keeps that distinction. The handshake validates the chain and the name against the CA bundle;
when validation fails a second, unverified handshake records the certificate that was presented.
"""

from __future__ import annotations

import asyncio
import hashlib
import ssl
from functools import cache

from observatory.failure import failure_from_exception
from observatory.measurement import TLSHandshake
from observatory.probe.net import Clock, NetConfig, endpoint
from observatory.probe.tcp import READ_CHUNK, Conn, open_tcp

ALPN = ["http/1.1"]


@cache
def client_context(ca_file: str | None, verify: bool) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=ca_file) if ca_file else ssl.create_default_context()
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(ALPN)
    return ctx


class TLSConn(Conn):
    """TLS over a TCP Conn: an SSLObject fed by memory BIOs."""

    def __init__(self, tcp: Conn, ctx: ssl.SSLContext, server_name: str) -> None:
        super().__init__(tcp.reader, tcp.writer)
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        self.obj = ctx.wrap_bio(self.incoming, self.outgoing, server_hostname=server_name)

    async def _flush(self) -> None:
        data = self.outgoing.read()
        if data:
            self.writer.write(data)
            await self.writer.drain()

    async def _fill(self) -> None:
        data = await self.reader.read(READ_CHUNK)
        if data:
            self.incoming.write(data)
        else:
            self.incoming.write_eof()

    async def handshake(self) -> None:
        while True:
            try:
                self.obj.do_handshake()
            except ssl.SSLWantReadError:
                await self._flush()
                await self._fill()
                continue
            await self._flush()
            return

    async def read(self, n: int = READ_CHUNK) -> bytes:
        while True:
            try:
                return self.obj.read(n)
            except ssl.SSLWantReadError:
                await self._flush()
                await self._fill()
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                # servers often close without close_notify after `Connection: close`: that is the end
                return b""

    async def write(self, data: bytes) -> None:
        self.obj.write(data)
        await self._flush()


async def open_tls(ip: str, port: int, server_name: str, cfg: NetConfig, *, verify: bool = True) -> TLSConn:
    """TCP connect then a TLS handshake, each within its own timeout; raises on failure."""
    tcp = await open_tcp(ip, port, cfg)
    conn = TLSConn(tcp, client_context(cfg.ca_file, verify), server_name)
    try:
        await asyncio.wait_for(conn.handshake(), cfg.tls_timeout)
    except BaseException:
        conn.close()
        raise
    return conn


def _describe(conn: TLSConn, result: TLSHandshake) -> None:
    der = conn.obj.getpeercert(binary_form=True)
    cipher = conn.obj.cipher()
    result.tls_version = conn.obj.version()
    result.cipher_suite = cipher[0] if cipher else None
    result.negotiated_protocol = conn.obj.selected_alpn_protocol() or ""
    if der:
        result.peer_certificates = [{"format": "sha256", "data": hashlib.sha256(der).hexdigest()}]


async def tls_handshake(ip: str, port: int, server_name: str, *, cfg: NetConfig, clock: Clock) -> TLSHandshake:
    """A handshake with SNI `server_name`: outcome, version, cipher, ALPN, the peer certificate's sha256."""
    result, conn = await tls_handshake_conn(ip, port, server_name, cfg=cfg, clock=clock)
    if conn is not None:
        conn.close()
    return result


async def tls_handshake_conn(ip: str, port: int, server_name: str, *, cfg: NetConfig,
                             clock: Clock) -> tuple[TLSHandshake, TLSConn | None]:
    """`tls_handshake`, also returning the open, verified connection on success (the caller closes it):
    the probe sends its HTTP request over it rather than paying for another handshake."""
    result = TLSHandshake(address=endpoint(ip, port), server_name=server_name)
    result.t0 = clock()
    try:
        conn = await open_tls(ip, port, server_name, cfg)
    except (OSError, TimeoutError, ssl.SSLError, EOFError) as exc:
        result.failure = failure_from_exception(exc)
        result.t = clock()
        if isinstance(exc, ssl.SSLCertVerificationError):
            await _record_unverified(ip, port, server_name, cfg, result)
        return result, None
    result.t = clock()
    _describe(conn, result)
    return result, conn


async def _record_unverified(ip: str, port: int, server_name: str, cfg: NetConfig, result: TLSHandshake) -> None:
    """The handshake completed but the certificate is not valid: record what was presented (a MITM's cert)."""
    try:
        conn = await open_tls(ip, port, server_name, cfg, verify=False)
    except (OSError, TimeoutError, ssl.SSLError, EOFError):
        return
    _describe(conn, result)
    conn.close()
