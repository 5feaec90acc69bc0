"""One web_connectivity measurement per target, many targets at once with bounded concurrency.

Every step has its own timeout and each target runs as its own task, so a stalled target costs one slot of
the concurrency limit for at most its timeouts and never delays the others.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import msgspec

from observatory import __version__ as _pkg_version
from observatory.catalog import platform_of
from observatory.failure import failure_from_exception
from observatory.measurement import Control, Download, HTTPRequest, HTTPTransaction, format_time
from observatory.probe import dns, http
from observatory.probe.metadata import ProbeMetadata, from_mmdb
from observatory.probe.net import Clock, NetConfig, endpoint, split_endpoint
from observatory.probe.tcp import Conn, tcp_connect
from observatory.probe.tls import tls_handshake_conn

log = logging.getLogger("observatory.probe")

TEST_NAME = "web_connectivity"
TEST_VERSION = "0.4.3"
SOFTWARE_NAME = "observatory"
DATA_FORMAT_VERSION = "0.2.0"


def software_version() -> str:
    return _pkg_version if isinstance(_pkg_version, str) else "0.1.0"


def new_id(when: datetime, cc: str, asn: int) -> str:
    """OONI-style report/measurement id: time, test, country, network, then randomness."""
    return f"{when:%Y%m%dT%H%M%SZ}_webconnectivity_{cc}_{asn}_n1_{secrets.token_hex(8)}"


@dataclass(slots=True)
class HelperAnswer:
    control: dict[str, Any] | None
    failure: str | None
    client_address: str | None = None  # kept in memory for a metadata lookup, never written


class HelperClient:
    """Talks to the control helper. Unreachable or malformed answers become a `control_failure`."""

    def __init__(self, url: str, *, timeout: float = 30.0) -> None:
        self.url = url
        self.timeout = timeout
        self._client: httpx.AsyncClient | None = None

    async def check(self, url: str, endpoints: Sequence[str]) -> HelperAnswer:
        if self._client is None:
            # a short connect timeout: during a shutdown the helper is unreachable and every target waits on it
            self._client = httpx.AsyncClient(timeout=httpx.Timeout(self.timeout, connect=min(5.0, self.timeout)),
                                             trust_env=False)
        body = {"http_request": url, "http_request_headers": {}, "tcp_connect": list(endpoints)}
        try:
            resp = await self._client.post(self.url, json=body)
        except (httpx.HTTPError, OSError) as exc:
            return HelperAnswer(None, failure_from_exception(exc))
        if resp.status_code != 200:
            return HelperAnswer(None, f"unknown_failure: helper answered HTTP {resp.status_code}")
        try:
            data = resp.json()
            address = data.pop("x_client_address", None)
            msgspec.convert(data, Control, strict=False)  # OONI's shape, or it is not a control
        except (ValueError, AttributeError, msgspec.ValidationError) as exc:
            return HelperAnswer(None, f"unknown_failure: helper answer not understood: {exc}"[:200])
        return HelperAnswer(data, None, address if isinstance(address, str) else None)

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


@dataclass(slots=True, kw_only=True)
class Runner:
    """Measures targets. `metadata` comes from flags/config; gaps are filled from `mmdb` when the helper
    reports the probe's public address (looked up once per address, in memory only)."""

    net: NetConfig
    metadata: ProbeMetadata
    probe_id: str
    helper: HelperClient | None = None
    mmdb: Sequence[Path] = ()
    report_id: str | None = None
    _located: dict[str, ProbeMetadata] = field(default_factory=dict)

    def _metadata_for(self, address: str | None) -> ProbeMetadata:
        if not address or not self.mmdb:
            return self.metadata
        if address not in self._located:
            self._located.clear()  # one address at a time: the probe does not keep a history of them
            self._located[address] = self.metadata.merged(from_mmdb(list(self.mmdb), address))
        return self._located[address]

    async def measure(self, url: str) -> dict[str, Any]:
        """One measurement of `url`, as an OONI web_connectivity document."""
        started = datetime.now(UTC)
        wall = time.monotonic()
        clock = Clock()
        keys, address = await self._test_keys(url, clock)
        meta = self._metadata_for(address)
        env = meta.envelope()
        cc, asn = env["probe_cc"], meta.asn or 0
        if self.report_id is None:
            self.report_id = new_id(started, cc, asn)
        annotations: dict[str, Any] = {"probe_id": self.probe_id, "engine_name": SOFTWARE_NAME}
        if meta.region:
            annotations["region"] = meta.region
        platform = platform_of(url)
        if platform:
            annotations["platform"] = platform
        return {
            "measurement_uid": new_id(started, cc, asn),
            "report_id": self.report_id,
            "data_format_version": DATA_FORMAT_VERSION,
            "test_name": TEST_NAME,
            "test_version": TEST_VERSION,
            "software_name": SOFTWARE_NAME,
            "software_version": software_version(),
            "measurement_start_time": format_time(started),
            "test_start_time": format_time(started),
            "test_runtime": round(time.monotonic() - wall, 6),
            **env,
            "input": url,
            "annotations": annotations,
            "test_helpers": {"backend": {"address": self.helper.url, "type": "https"}} if self.helper else {},
            "test_keys": keys,
        }

    async def _test_keys(self, url: str, clock: Clock) -> tuple[dict[str, Any], str | None]:
        cfg = self.net
        parts = urlsplit(url)
        host = parts.hostname or ""
        https = parts.scheme == "https"
        port = parts.port or (443 if https else 80)

        lookups = [dns.system_lookup(host, cfg=cfg, clock=clock)]
        if cfg.resolver:
            lookups.append(dns.udp_lookup(host, cfg.resolver, cfg=cfg, clock=clock))
        queries = list(await asyncio.gather(*lookups))
        ips = list(dict.fromkeys(ip for q in queries for ip in dns.addresses(q)))
        dns_failure = next((q.failure for q in queries if q.failure), None) if not dns.addresses(queries[0]) else None

        helper_task = (asyncio.create_task(self.helper.check(url, [endpoint(ip, port) for ip in ips]))
                       if self.helper else None)

        tcp = list(await asyncio.gather(*(tcp_connect(ip, port, cfg=cfg, clock=clock) for ip in ips)))
        tls = []
        first_conn: Conn | None = None
        first_ip = next((t.ip for t in tcp if t.status.success), ips[0] if ips else None)
        if https:
            ok = [t.ip for t in tcp if t.status.success]
            done = await asyncio.gather(*(tls_handshake_conn(ip, port, host, cfg=cfg, clock=clock) for ip in ok))
            tls = [h for h, _ in done]
            # HTTP goes over the first verified connection (one handshake fewer); the others are closed
            for h, conn in done:
                if conn is None:
                    continue
                if first_conn is None and h.address:
                    first_conn, first_ip = conn, split_endpoint(h.address)[0]
                else:
                    conn.close()
        requests, download = await self._http(url, first_ip, dns_failure or "dns_no_answer", clock,
                                              first_conn)

        answer = await helper_task if helper_task else HelperAnswer(None, "unknown_failure: no helper configured")
        if answer.control is not None:
            # OONI also connects to the addresses only the control resolved: is the IP or the name blocked?
            extra = [ip for ip in answer.control.get("dns", {}).get("addrs", []) if ip not in ips][:8]
            more = list(await asyncio.gather(*(tcp_connect(ip, port, cfg=cfg, clock=clock) for ip in extra)))
            _mark_blocked(more + tcp, answer.control, port)
            tcp += more
        keys: dict[str, Any] = {
            "agent": "redirect",
            "client_resolver": "",
            "retries": None,
            "socksproxy": None,
            "queries": [_query_json(q) for q in queries],
            "dns_experiment_failure": queries[0].failure,
            "dns_consistency": None,
            "tcp_connect": [msgspec.to_builtins(t) for t in tcp],
            "tls_handshakes": [msgspec.to_builtins(h) for h in tls],
            "requests": [msgspec.to_builtins(r) for r in requests],
            "http_experiment_failure": requests[0].failure if requests else None,
            "x_download": msgspec.to_builtins(download),
            "control": answer.control,
            "control_failure": answer.failure,
            "blocking": None,
            "accessible": None,
        }
        if answer.control is None:
            keys["x_control_unavailable"] = True
        return keys, answer.client_address

    async def _http(self, url: str, first_ip: str | None, dns_failure: str, clock: Clock,
                    first_conn: Conn | None = None) -> tuple[list[HTTPTransaction], Download]:
        cfg = self.net

        async def resolve(name: str) -> list[str]:
            # a redirect's host is resolved as a browser would: by the system resolver
            q = await dns.system_lookup(name, cfg=cfg, clock=clock)
            if q.failure:
                raise http.dns_failure(q.failure)
            return dns.addresses(q)

        if first_ip is None:
            tx = HTTPTransaction(request=HTTPRequest(url=url, method="GET", headers={}), failure=dns_failure,
                                 t0=clock(), t=clock())
            return [tx], Download(url=url, failure=dns_failure)
        requests, resp, final_url = await http.get(url, first_ip, resolve, cfg=cfg, clock=clock,
                                                   first_conn=first_conn)
        if resp is None:
            return requests, Download(url=final_url, failure=requests[0].failure)
        try:
            final_ip = first_ip if final_url == url else (await resolve(urlsplit(final_url).hostname or ""))[0]
        except OSError as exc:
            return requests, Download(url=final_url, failure=getattr(exc, "failure", None) or str(exc))
        return requests, await http.download(final_url, final_ip, cfg=cfg)

    async def run(self, urls: Sequence[str], *, concurrency: int = 32,
                  on_done: Callable[[dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
        """Measures every URL (at most `concurrency` at once); returns the documents in completion order."""
        out: list[dict[str, Any]] = []
        async for doc in self.stream(urls, concurrency=concurrency):
            out.append(doc)
            if on_done:
                on_done(doc)
        return out

    async def stream(self, urls: Sequence[str], *, concurrency: int = 32) -> AsyncIterator[dict[str, Any]]:
        gate = asyncio.Semaphore(max(1, concurrency))

        async def one(u: str) -> dict[str, Any] | None:
            async with gate:
                try:
                    return await self.measure(u)
                except Exception:  # a bug measuring one target must not stop a probe that runs for months
                    log.exception("measuring %s failed; skipped this round", u)
                    return None

        tasks = [asyncio.create_task(one(u)) for u in urls]
        try:
            for fut in asyncio.as_completed(tasks):
                doc = await fut
                if doc is not None:
                    yield doc
        finally:
            for t in tasks:
                t.cancel()


def _query_json(q: Any) -> dict[str, Any]:
    out: dict[str, Any] = msgspec.to_builtins(q)
    for a in out.get("answers") or ():
        a.setdefault("answer_type", "A")  # OONI always writes it; the Struct omits its default
    return out


def _mark_blocked(tcp: list[Any], control: dict[str, Any], port: int) -> None:
    """OONI's legacy `blocked` flag: the control connected where the probe could not."""
    ctl = control.get("tcp_connect") or {}
    for t in tcp:
        c = ctl.get(endpoint(t.ip, port))
        t.status.blocked = bool(c and c.get("status") and not t.status.success) if c else None
