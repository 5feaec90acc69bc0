"""OONI's instant-messaging tests (telegram, whatsapp, signal) as an OONI probe writes them, per outcome.

Unlike web_connectivity they have no control and probe a fixed list of the service's endpoints
(reference/ooni.md §1.5, §2.4): Telegram's data centres by address (plain HTTP POSTs on ports 80 and 443) and
web.telegram.org; WhatsApp's eN.whatsapp.net endpoints on 443 and 5222, its registration server and web app;
Signal's backends over HTTPS. What each outcome does to each endpoint follows the wire: an IP-addressed data
centre needs no DNS, so DNS tampering shows only on named endpoints; a block page cannot be served inside
HTTPS, so the tests do not see one; without a control, a platform's own outage looks the same as a block.
Nothing here names the outcome: readers must infer it from failures and timings, as with real data.
"""

from __future__ import annotations

import random
import zlib
from dataclasses import dataclass
from typing import Any

import msgspec

from observatory.simulate.world import NetworkProfile, Target

TEST_OF_PLATFORM = {"telegram": "telegram", "whatsapp": "whatsapp", "signal": "signal"}
TEST_VERSION = {"telegram": "0.3.1", "whatsapp": "0.11.0", "signal": "0.2.5"}
TIMEOUT_S = 10.0
BODY_BYTES = {"telegram": 60_000, "whatsapp": 40_000, "signal": 2_000}  # what an OK exchange reads
RECORD_BYTES = 16384


@dataclass(frozen=True, slots=True)
class Endpoint:
    host: str  # a name, or an address (no DNS lookup)
    port: int
    kind: str  # "tcp" (connect only), "post" (plain HTTP POST), "get" (HTTPS GET)
    path: str = "/"

    @property
    def named(self) -> bool:
        return not self.host[0].isdigit()


_TELEGRAM_DCS = ("149.154.175.50", "149.154.167.51", "149.154.175.100")
ENDPOINTS: dict[str, tuple[Endpoint, ...]] = {
    "telegram": (
        *(Endpoint(dc, port, "post") for dc in _TELEGRAM_DCS for port in (80, 443)),
        Endpoint("web.telegram.org", 443, "get"),
    ),
    "whatsapp": (
        *(Endpoint(f"e{k}.whatsapp.net", port, "tcp") for k in (1, 5, 9, 13) for port in (443, 5222)),
        Endpoint("v.whatsapp.net", 443, "get", "/v2/register"),
        Endpoint("web.whatsapp.com", 443, "get"),
    ),
    "signal": tuple(
        Endpoint(h, 443, "get")
        for h in ("chat.signal.org", "storage.signal.org", "cdsi.signal.org", "sfu.voip.signal.org")
    ),
}


def im_test_keys_json(
    test: str, net: NetworkProfile, target: Target, outcome: str, variant: int, seed: int
) -> bytes:
    """The test_keys of one IM test run with one outcome, as JSON bytes (a fixed jitter per `variant`)."""
    rng = random.Random(f"{seed}/im/{net.index}/{test}/{outcome}/{variant}")
    return msgspec.json.encode(_Run(test, net, target, rng).build(outcome))


# Where an outcome breaks an endpoint: (stage, failure). Stages: dns, connect, tls, http; None: it works.
Break = tuple[str, str] | None


def _break(outcome: str, ep: Endpoint, net: NetworkProfile, first: bool, last: bool) -> Break:
    """How `outcome` breaks endpoint `ep` (random noise hits one endpoint: the first for TCP, the last, a
    named HTTPS one, for TLS and HTTP)."""
    https = ep.kind == "get"
    if outcome in ("ok", "throttling"):
        return None
    if outcome == "dns_tampering":
        if not ep.named:
            return None
        if net.dns_style in ("nxdomain", "refused"):
            return "dns", "dns_nxdomain_error" if net.dns_style == "nxdomain" else "dns_refused_error"
        # a forged address: the connection goes nowhere (or to the probe itself)
        return "connect", "connection_refused" if net.dns_style == "loopback" else "generic_timeout_error"
    if outcome in ("tcp_reset", "tcp_blackhole"):
        return "connect", "connection_reset" if outcome == "tcp_reset" else "generic_timeout_error"
    if outcome in ("tls_interference", "tls_mitm"):
        if not https:
            return None  # plain HTTP and bare TCP carry no SNI to match
        return "tls", net.tls_failure if outcome == "tls_interference" else net.mitm_failure
    if outcome == "http_interference":
        return ("http", "connection_reset") if ep.kind != "tcp" else None
    if outcome == "http_blockpage":
        return None  # inside HTTPS nobody can inject a page; the plain POSTs get one but still "succeed"
    if outcome in ("unreachable", "fault", "noise_dns"):
        return ("dns", "generic_timeout_error") if ep.named else ("connect", "generic_timeout_error")
    if outcome == "down_dns":
        return ("dns", "dns_server_failure") if ep.named else None
    if outcome in ("down_tcp", "noise_down"):
        return "connect", "generic_timeout_error"
    if outcome == "noise_tcp":
        return ("connect", "generic_timeout_error") if first else None
    if outcome == "noise_tls":
        return ("tls", "connection_reset") if https and last else None
    if outcome == "noise_http":
        return ("http", "eof_error") if ep.kind != "tcp" and last else None
    raise ValueError(f"unknown outcome {outcome!r}")


class _Run:
    def __init__(self, test: str, net: NetworkProfile, target: Target, rng: random.Random) -> None:
        self.test, self.net, self.target, self.rng = test, net, target, rng
        self.clock = 0.0

    def _rtt(self) -> float:
        return self.net.rtt_ms / 1000 * self.rng.uniform(0.8, 1.6)

    def _step(self, seconds: float) -> tuple[float, float]:
        t0 = self.clock
        self.clock += seconds
        return round(t0, 6), round(self.clock, 6)

    def build(self, outcome: str) -> dict[str, Any]:
        queries: list[dict[str, Any]] = []
        tcp: list[dict[str, Any]] = []
        tls: list[dict[str, Any]] = []
        requests: list[dict[str, Any]] = []
        events: list[dict[str, Any]] = []
        failures: dict[Endpoint, str | None] = {}
        looked_up: set[str] = set()
        # a throttled platform: every byte crawls, 15-40x below the network's usual speed
        kbps = self.net.kbps * self.rng.uniform(0.6, 1.2)
        if outcome == "throttling":
            kbps = self.rng.uniform(100.0, 400.0)
        endpoints = ENDPOINTS[self.test]
        for ep in endpoints:
            brk = _break(outcome, ep, self.net, ep == endpoints[0], ep == endpoints[-1])
            failures[ep] = brk[1] if brk else None
            address = self._lookup(ep, brk, queries, looked_up)
            if address is None:
                if ep.kind != "tcp":
                    requests.append(self._request(ep, brk[1] if brk else None, None))
                continue
            if not self._connect(ep, address, brk, tcp, events):
                if ep.kind != "tcp":
                    requests.append(self._request(ep, brk[1] if brk else None, None))
                continue
            if ep.kind == "tcp":
                continue
            if ep.kind == "get" and not self._handshake(ep, address, brk, tls, events):
                requests.append(self._request(ep, brk[1] if brk else None, None))
                continue
            requests.append(self._exchange(ep, address, brk, outcome, kbps, events))
        keys: dict[str, Any] = {
            "agent": "redirect",
            "failed_operation": None,
            "failure": None,
            "network_events": events,
            "queries": queries,
            "requests": requests,
            "tcp_connect": tcp,
            "tls_handshakes": tls,
        }
        keys.update(self._summary(failures))
        return keys

    # --- steps ----------------------------------------------------------------------------------------

    def _lookup(
        self, ep: Endpoint, brk: Break, queries: list[dict[str, Any]], looked_up: set[str]
    ) -> str | None:
        if not ep.named:
            return ep.host
        failure = brk[1] if brk and brk[0] == "dns" else None
        forged = brk is not None and brk[0] == "connect" and brk[1] in ("connection_refused",)
        answer = "127.0.0.1" if forged else self.target.ips[zlib.crc32(ep.host.encode()) % len(self.target.ips)]
        if ep.host not in looked_up:
            looked_up.add(ep.host)
            t0, t = self._step(5.0 if failure == "generic_timeout_error" else self._rtt())
            queries.append(
                {
                    "hostname": ep.host,
                    "query_type": "A",
                    "engine": "getaddrinfo",
                    "resolver_address": "",
                    "failure": failure,
                    "answers": None if failure else [{"answer_type": "A", "ipv4": answer}],
                    "t0": t0,
                    "t": t,
                }
            )
        return None if failure else answer

    def _connect(
        self, ep: Endpoint, address: str, brk: Break, tcp: list[dict[str, Any]], events: list[dict[str, Any]]
    ) -> bool:
        failure = brk[1] if brk and brk[0] == "connect" else None
        t0, t = self._step(TIMEOUT_S if failure == "generic_timeout_error" else self._rtt())
        tcp.append(
            {
                "ip": address,
                "port": ep.port,
                "status": {"success": failure is None, "failure": failure, "blocked": failure is not None},
                "t0": t0,
                "t": t,
            }
        )
        events.append(_event("connect", t, f"{address}:{ep.port}", failure))
        return failure is None

    def _handshake(
        self, ep: Endpoint, address: str, brk: Break, tls: list[dict[str, Any]], events: list[dict[str, Any]]
    ) -> bool:
        failure = brk[1] if brk and brk[0] == "tls" else None
        mitm = failure in ("ssl_invalid_hostname", "ssl_unknown_authority")
        t0, t = self._step(TIMEOUT_S if failure == "generic_timeout_error" else 2 * self._rtt())
        done = failure is None or mitm
        tls.append(
            {
                "address": f"{address}:{ep.port}",
                "server_name": ep.host,
                "failure": failure,
                "negotiated_protocol": "h2" if failure is None else None,
                "no_tls_verify": False,
                "tls_version": "TLSv1.3" if done else None,
                "cipher_suite": "TLS_AES_128_GCM_SHA256" if done else None,
                "t0": t0,
                "t": t,
            }
        )
        events.append(_event("tls_handshake_done", t, f"{address}:{ep.port}", failure))
        return failure is None

    def _exchange(
        self,
        ep: Endpoint,
        address: str,
        brk: Break,
        outcome: str,
        kbps: float,
        events: list[dict[str, Any]],
    ) -> dict[str, Any]:
        failure = brk[1] if brk and brk[0] == "http" else None
        where = f"{address}:{ep.port}"
        t0, first = self._step(self._rtt() + self.target.server_ms / 1000)
        events.append(_event("write", t0 + 0.0005, where, None, self.rng.randint(200, 600)))
        if failure is not None:
            return self._request(ep, failure, None, t0, first)
        size = BODY_BYTES[self.test]
        if outcome == "http_blockpage" and ep.kind == "post":
            page = self.net.blockpage
            body, code = page.body, page.code
            size = len(body.encode())
        else:
            body, code = "", 200
        seconds = size * 8 / 1000 / kbps
        reads = max(1, -(-size // RECORD_BYTES))
        for k in range(1, reads + 1):
            events.append(_event("read", first + seconds * k / reads, where, None, size // reads))
        self.clock = first + seconds
        response = {"code": code, "headers": {"Content-Type": "text/html"}, "body": body, "body_is_truncated": False}
        return self._request(ep, None, response, t0, round(self.clock, 6))

    def _request(
        self,
        ep: Endpoint,
        failure: str | None,
        response: dict[str, Any] | None,
        t0: float | None = None,
        t: float | None = None,
    ) -> dict[str, Any]:
        scheme = "https" if ep.kind == "get" else "http"
        port = "" if (scheme, ep.port) in (("https", 443), ("http", 80)) else f":{ep.port}"
        if t0 is None or t is None:
            t0 = t = round(self.clock, 6)
        return {
            "failure": failure,
            "request": {
                "method": "POST" if ep.kind == "post" else "GET",
                "url": f"{scheme}://{ep.host}{port}{ep.path}",
                "headers": {"User-Agent": "miniooni/0.1.0-dev"},
            },
            "response": response,
            "t0": t0,
            "t": t,
        }

    # --- the test's own summary keys, from what failed ----------------------------------------------------

    def _summary(self, failures: dict[Endpoint, str | None]) -> dict[str, Any]:
        if self.test == "telegram":
            dcs = [f for e, f in failures.items() if not e.named]
            web = next((f for e, f in failures.items() if e.host == "web.telegram.org"), None)
            blocked = all(f is not None for f in dcs)
            return {
                "telegram_http_blocking": blocked,
                "telegram_tcp_blocking": blocked,
                "telegram_web_failure": web,
                "telegram_web_status": "blocked" if web else "ok",
            }
        if self.test == "whatsapp":
            ends = [(e, f) for e, f in failures.items() if e.kind == "tcp"]
            hosts = sorted({e.host for e, f in ends if f})
            reg = next((f for e, f in failures.items() if e.host == "v.whatsapp.net"), None)
            web = next((f for e, f in failures.items() if e.host == "web.whatsapp.com"), None)
            return {
                "registration_server_failure": reg,
                "registration_server_status": "blocked" if reg else "ok",
                "whatsapp_endpoints_blocked": hosts,
                "whatsapp_endpoints_dns_inconsistent": [],
                "whatsapp_endpoints_status": "blocked" if all(f for _, f in ends) else "ok",
                "whatsapp_web_failure": web,
                "whatsapp_web_status": "blocked" if web else "ok",
            }
        failure = next((f for f in failures.values() if f), None)
        return {"signal_backend_status": "blocked" if failure else "ok", "signal_backend_failure": failure}


def _event(op: str, t: float, address: str, failure: str | None, num_bytes: int | None = None) -> dict[str, Any]:
    e: dict[str, Any] = {"address": address, "failure": failure}
    if num_bytes is not None:
        e["num_bytes"] = num_bytes
    e.update({"operation": op, "proto": "tcp", "t": round(t, 6)})
    return e
