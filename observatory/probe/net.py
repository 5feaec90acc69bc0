"""What the network code depends on, passed in rather than looked up: resolvers, CA bundle, address maps, limits.

The lab runs the probe in a network namespace with a lab CA and an ISP resolver; tests point
"www.facebook.com" at servers on loopback. Both do it through `NetConfig`, never by patching.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field

from observatory.errors import ConfigError

SystemResolve = Callable[[str], Awaitable[list[str]]]

USER_AGENT = "Mozilla/5.0 (observatory probe; +https://github.com/observatory)"


@dataclass(frozen=True, slots=True, kw_only=True)
class NetConfig:
    # the chosen resolver queried over UDP ("IP:PORT"); None skips that query
    resolver: str | None = None
    # the system resolver: None = getaddrinfo; else an async function hostname -> addresses that raises as
    # getaddrinfo does (tests use `static_hosts`, which never sends a query off the machine)
    system_resolve: SystemResolve | None = None
    # CA bundle (PEM) for certificate validation; None = the system's
    ca_file: str | None = None
    # "ip:port" measured -> "host:port" actually dialled. The measurement records the left side.
    connect_map: Mapping[str, str] = field(default_factory=dict)
    dns_timeout: float = 4.0
    connect_timeout: float = 5.0
    tls_timeout: float = 5.0
    http_timeout: float = 10.0
    body_limit: int = 128 * 1024  # OONI's body snapshot (1 << 17)
    download_bytes: int = 1 << 20
    download_seconds: float = 8.0
    max_redirects: int = 5
    user_agent: str = USER_AGENT

    def dial_address(self, ip: str, port: int) -> tuple[str, int]:
        """Where to connect to reach `ip:port` (itself unless the connect map says otherwise)."""
        target = self.connect_map.get(endpoint(ip, port))
        if target is None:
            return ip, port
        return split_endpoint(target)


def static_hosts(hosts: Mapping[str, Sequence[str]], *, timeout: bool = False) -> SystemResolve:
    """A system resolver from a hosts map: a missing name is NXDOMAIN; `timeout=True` never answers
    (a resolver behind a shutdown), so the probe's own DNS timeout fires."""

    async def resolve(host: str) -> list[str]:
        if timeout:
            await asyncio.sleep(3600)
        ips = list(hosts.get(host, ()))
        if not ips:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return ips

    return resolve


def endpoint(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def split_endpoint(text: str) -> tuple[str, int]:
    """'1.2.3.4:53' or '[::1]:53' -> (host, port)."""
    host, sep, port = text.strip().rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ConfigError(f"{text!r} is not an address of the form IP:PORT")
    return host.strip("[]"), int(port)


class Clock:
    """Seconds since the measurement started: OONI's t0/t are relative to the test's start."""

    def __init__(self) -> None:
        self.start = time.monotonic()

    def __call__(self) -> float:
        return round(time.monotonic() - self.start, 6)
