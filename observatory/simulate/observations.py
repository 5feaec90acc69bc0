"""What a measurement shows, per outcome: the raw observations (test_keys) and the control's view.

Each outcome is what really happened on the wire: `ok`, a technique (`tls_interference`, ...), the platform
being down for everyone (`down_dns`, `down_tcp`), a local failure of the probe (`fault`) or random noise
(`noise_dns`, `noise_tcp`, `noise_tls`, `noise_http`, `noise_down`). The observations follow
docs/measurement-format.md exactly, as our probe records them; nothing in them names the outcome: the verdict
rules must infer it, as they must with real data.

`test_keys_json(...)` renders one outcome for one network and target as JSON bytes; the generator renders each
(network, target, outcome, jitter variant) once and reuses the bytes (that is what makes it fast).
"""

from __future__ import annotations

import hashlib
import random
from typing import Any

import msgspec

from observatory.simulate.ooni_layout import OWN, ooni_layout
from observatory.simulate.world import NetworkProfile, Target
from observatory.vocab import Technique

OK = "ok"
FAULT = "fault"
DOWN_DNS = "down_dns"
DOWN_TCP = "down_tcp"
NOISE = ("noise_dns", "noise_tcp", "noise_tls", "noise_http", "noise_down")
TECHNIQUE_OUTCOMES = tuple(t.value for t in Technique)  # in the vocabulary's order
OUTCOMES = (OK, FAULT, DOWN_DNS, DOWN_TCP, *NOISE, *TECHNIQUE_OUTCOMES)

TIMEOUT_S = 10.0
# The control helper's own download: a well-connected vantage, yet within 10x of a healthy probe's link so
# that only a real collapse (throttling) stands out against it.
CONTROL_KBPS = 40_000.0
# a throttled platform crawls (Russia held X/Twitter near 128 kbit/s in 2021)
THROTTLED_KBPS = (100.0, 400.0)
_OK_HEADERS = {"Content-Type": "text/html; charset=utf-8", "Server": "nginx"}


def test_keys_json(
    net: NetworkProfile, target: Target, outcome: str, variant: int, seed: int, style: str = OWN
) -> bytes:
    """The test_keys of one outcome, as JSON bytes; `variant` draws a different but fixed jitter; `style`
    is the document layout (ours, or OONI's 0.4 or 0.5)."""
    rng = random.Random(f"{seed}/{net.index}/{target.platform}/{outcome}/{variant}")
    keys = _Builder(net, target, rng).build(outcome)
    if style != OWN:
        keys = ooni_layout(keys, style, rng)
    return msgspec.json.encode(keys)


def runtime(keys_json: bytes) -> float:
    """The measurement's runtime: the end of its last step (cheap to recover from the rendered keys)."""
    d = msgspec.json.decode(keys_json)
    ends = [
        x.get("t") or 0.0
        for k in ("queries", "tcp_connect", "tls_handshakes", "requests")
        for x in d.get(k) or ()
    ]
    return round(max(ends, default=0.0) + 0.05, 3)


class _Builder:
    """Builds the test keys of one measurement step by step: DNS, TCP, TLS, HTTP, download, control."""

    def __init__(self, net: NetworkProfile, target: Target, rng: random.Random) -> None:
        self.net, self.target, self.rng = net, target, rng
        self.clock = 0.0

    # --- timings --------------------------------------------------------------------------------------

    def _rtt(self) -> float:
        return self.net.rtt_ms / 1000 * self.rng.uniform(0.8, 1.6)

    def _step(self, seconds: float) -> tuple[float, float]:
        t0 = self.clock
        self.clock += seconds
        return round(t0, 6), round(self.clock, 6)

    # --- the outcome ------------------------------------------------------------------------------------

    def build(self, outcome: str) -> dict[str, Any]:
        build = getattr(self, "_" + outcome, None)
        if build is None:
            raise ValueError(f"unknown outcome {outcome!r}")
        keys: dict[str, Any] = build()
        keys["client_resolver"] = self.net.resolver_ip
        return keys

    def _ok(self) -> dict[str, Any]:
        return self._through_http(self._http_ok(), self._download_ok(), blocking=False, accessible=True)

    def _throttling(self) -> dict[str, Any]:
        # every step succeeds; the bytes crawl: a collapse of 15-40x against the network's own baseline
        slow = self.net.kbps / self.rng.uniform(*THROTTLED_KBPS)
        return self._through_http(
            self._http_ok(slow=3.0),
            self._download_ok(slow=slow),
            blocking=False,
            accessible=True,
            tls_slow=3.0,
        )

    def _http_blockpage(self) -> dict[str, Any]:
        page = self.net.blockpage
        body = page.body
        response = {
            "code": page.code,
            "headers": dict(page.headers),
            "body": body,
            "body_is_truncated": False,
        }
        request = self._request(response=response, failure=None, seconds=self._rtt() + 0.01)
        download = {
            "url": self.target.url,
            "bytes": len(body.encode()),
            "seconds": round(self._rtt(), 3),
            "failure": None,
        }
        return self._through_http([request], download, blocking="http-diff", accessible=False)

    def _http_interference(self) -> dict[str, Any]:
        request = self._request(response=None, failure="connection_reset", seconds=self._rtt())
        return self._through_http(
            [request], self._download_failed("connection_reset"), blocking="http-failure", accessible=False
        )

    def _noise_http(self) -> dict[str, Any]:
        request = self._request(response=None, failure="eof_error", seconds=self._rtt() * 2)
        return self._through_http(
            [request], self._download_failed("eof_error"), blocking="http-failure", accessible=False
        )

    def _down_tcp(self) -> dict[str, Any]:
        # the platform's routes are withdrawn (a BGP outage): nobody, control included, can connect
        return self._noise_down()

    def _tls_interference(self) -> dict[str, Any]:
        return self._tls_failed(self.net.tls_failure, blocking="http-failure")

    def _noise_tls(self) -> dict[str, Any]:
        return self._tls_failed("connection_reset", blocking="http-failure", addresses=1)

    def _tls_mitm(self) -> dict[str, Any]:
        return self._tls_failed(self.net.mitm_failure, blocking="http-failure", mitm=True)

    def _tcp_reset(self) -> dict[str, Any]:
        return self._tcp_failed("connection_reset")

    def _tcp_blackhole(self) -> dict[str, Any]:
        return self._tcp_failed("generic_timeout_error")

    def _noise_tcp(self) -> dict[str, Any]:
        return self._tcp_failed("generic_timeout_error", addresses=1)

    def _noise_down(self) -> dict[str, Any]:
        # the server itself is flaky: the control helper sees the very same timeout
        keys = self._tcp_failed("generic_timeout_error", blocking=False)
        ctl = keys["control"]
        ctl["tcp_connect"] = {
            f"{ip}:443": {"status": False, "failure": "generic_timeout_error"} for ip in self.target.ips
        }
        ctl["tls_handshake"] = {}
        ctl["http_request"] = self._control_http(failure="generic_timeout_error")
        ctl["x_download"] = self._control_download(failure="generic_timeout_error")
        return keys

    def _dns_tampering(self) -> dict[str, Any]:
        style = self.net.dns_style
        if style in ("nxdomain", "refused"):
            failure = "dns_nxdomain_error" if style == "nxdomain" else "dns_refused_error"
            return self._dns_failed(failure, blocking="dns", consistency="inconsistent")
        bogus = self.net.bogon if style == "bogon" else "127.0.0.1"
        queries = self._queries(answers=[bogus])
        tcp_failure = "connection_refused" if bogus == "127.0.0.1" else "generic_timeout_error"
        seconds = self._rtt() if bogus == "127.0.0.1" else TIMEOUT_S
        tcp = [self._tcp(bogus, success=False, failure=tcp_failure, seconds=seconds)]
        requests = [self._request(response=None, failure=tcp_failure, seconds=0.0)]
        return self._keys(
            queries,
            tcp,
            [],
            requests,
            self._download_failed(tcp_failure),
            blocking="dns",
            accessible=False,
            consistency="inconsistent",
            http_failure=tcp_failure,
        )

    def _unreachable(self) -> dict[str, Any]:
        return self._dns_failed("generic_timeout_error", blocking="dns", consistency=None, dns_seconds=5.0)

    def _fault(self) -> dict[str, Any]:
        return self._dns_failed("generic_timeout_error", blocking="dns", consistency=None, dns_seconds=5.0)

    def _noise_dns(self) -> dict[str, Any]:
        return self._dns_failed("generic_timeout_error", blocking="dns", consistency=None, dns_seconds=5.0)

    def _down_dns(self) -> dict[str, Any]:
        # the platform's own name servers fail (Facebook, October 2021): the control sees the same SERVFAIL
        keys = self._dns_failed("dns_server_failure", blocking=False, consistency="consistent")
        ctl = keys["control"]
        ctl["dns"] = {"addrs": [], "failure": "dns_server_failure"}
        ctl["tcp_connect"] = {}
        ctl["tls_handshake"] = {}
        ctl["http_request"] = self._control_http(failure="dns_server_failure")
        ctl["x_download"] = self._control_download(failure="dns_server_failure")
        return keys

    # --- building blocks ----------------------------------------------------------------------------------

    def _queries(
        self, *, answers: list[str] | None, failure: str | None = None, seconds: float | None = None
    ) -> list[dict[str, Any]]:
        out = []
        for engine, address in (("system", ""), ("udp", f"{self.net.resolver_ip}:53")):
            t0, t = self._step(seconds if seconds is not None else self._rtt())
            out.append(
                {
                    "hostname": self.target.hostname,
                    "query_type": "A",
                    "engine": engine,
                    "resolver_address": address,
                    "failure": failure,
                    "answers": None
                    if answers is None
                    else [{"answer_type": "A", "ipv4": ip} for ip in answers],
                    "t0": t0,
                    "t": t,
                }
            )
        return out

    def _tcp(self, ip: str, *, success: bool, failure: str | None, seconds: float) -> dict[str, Any]:
        t0, t = self._step(seconds)
        return {
            "ip": ip,
            "port": 443,
            "status": {"success": success, "failure": failure, "blocked": None},
            "t0": t0,
            "t": t,
        }

    def _tls(
        self, ip: str, *, failure: str | None, seconds: float, cert: str | None = None
    ) -> dict[str, Any]:
        t0, t = self._step(seconds)
        done = failure is None or cert is not None
        return {
            "address": f"{ip}:443",
            "server_name": self.target.hostname,
            "failure": failure,
            "negotiated_protocol": "h2" if failure is None else None,
            "tls_version": "TLSv1.3" if done else None,
            "cipher_suite": "TLS_AES_128_GCM_SHA256" if done else None,
            "peer_certificates": [{"format": "sha256", "data": cert or self.target.cert_sha256}]
            if done
            else [],
            "t0": t0,
            "t": t,
        }

    def _request(
        self, *, response: dict[str, Any] | None, failure: str | None, seconds: float
    ) -> dict[str, Any]:
        t0, t = self._step(seconds)
        return {
            "request": {
                "url": self.target.url,
                "method": "GET",
                "headers": {
                    "Accept": "text/html,application/xhtml+xml",
                    "Accept-Language": "en-US;q=0.8",
                    "User-Agent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
                    "(KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
                },
            },
            "response": response,
            "failure": failure,
            "t0": t0,
            "t": t,
        }

    def _http_ok(self, slow: float = 1.0) -> list[dict[str, Any]]:
        body = self.target.body
        response = {"code": 200, "headers": dict(_OK_HEADERS), "body": body, "body_is_truncated": False}
        seconds = (self._rtt() + self.target.server_ms / 1000) * slow
        return [self._request(response=response, failure=None, seconds=seconds)]

    def _download_ok(self, slow: float = 1.0) -> dict[str, Any]:
        size = self.target.download_bytes
        kbps = self.net.kbps * self.rng.uniform(0.6, 1.2) / slow
        return {
            "url": self.target.url,
            "bytes": size,
            "seconds": round(size * 8 / 1000 / kbps, 4),
            "failure": None,
        }

    def _download_failed(self, failure: str) -> dict[str, Any]:
        return {"url": self.target.url, "bytes": 0, "seconds": 0.0, "failure": failure}

    def _through_http(
        self,
        requests: list[dict[str, Any]],
        download: dict[str, Any],
        *,
        blocking: bool | str,
        accessible: bool,
        tls_slow: float = 1.0,
    ) -> dict[str, Any]:
        """DNS, TCP and TLS all succeed; the HTTP layer is what `requests` says."""
        # the requests were built first (their clock is wrong): rebuild the timeline in wire order
        self.clock = 0.0
        queries = self._queries(answers=list(self.target.ips))
        tcp = [self._tcp(ip, success=True, failure=None, seconds=self._rtt()) for ip in self.target.ips]
        tls = [self._tls(ip, failure=None, seconds=2 * self._rtt() * tls_slow) for ip in self.target.ips]
        for r in requests:
            span = r["t"] - r["t0"]
            r["t0"], r["t"] = self._step(span)
        failure = requests[0]["failure"]
        return self._keys(
            queries,
            tcp,
            tls,
            requests,
            download,
            blocking=blocking,
            accessible=accessible,
            consistency="consistent",
            http_failure=failure,
        )

    def _tls_failed(
        self, failure: str, *, blocking: str, mitm: bool = False, addresses: int | None = None
    ) -> dict[str, Any]:
        ips = self.target.ips[:addresses] if addresses else self.target.ips
        queries = self._queries(answers=list(self.target.ips))
        tcp = [self._tcp(ip, success=True, failure=None, seconds=self._rtt()) for ip in self.target.ips]
        seconds = TIMEOUT_S if failure == "generic_timeout_error" else self._rtt() * 1.2
        cert = hashlib.sha256(f"mitm:{self.net.asn}".encode()).hexdigest() if mitm else None
        tls = [self._tls(ip, failure=failure, seconds=seconds, cert=cert) for ip in ips]
        requests = [self._request(response=None, failure=failure, seconds=0.0)]
        return self._keys(
            queries,
            tcp,
            tls,
            requests,
            self._download_failed(failure),
            blocking=blocking,
            accessible=False,
            consistency="consistent",
            http_failure=failure,
        )

    def _tcp_failed(
        self, failure: str, *, blocking: bool | str = "tcp_ip", addresses: int | None = None
    ) -> dict[str, Any]:
        queries = self._queries(answers=list(self.target.ips))
        seconds = TIMEOUT_S if failure == "generic_timeout_error" else self._rtt()
        failing = self.target.ips[:addresses] if addresses else self.target.ips
        tcp = [self._tcp(ip, success=False, failure=failure, seconds=seconds) for ip in failing]
        requests = [self._request(response=None, failure=failure, seconds=0.0)]
        return self._keys(
            queries,
            tcp,
            [],
            requests,
            self._download_failed(failure),
            blocking=blocking,
            accessible=False,
            consistency="consistent",
            http_failure=failure,
        )

    def _dns_failed(
        self, failure: str, *, blocking: bool | str, consistency: str | None, dns_seconds: float | None = None
    ) -> dict[str, Any]:
        queries = self._queries(answers=None, failure=failure, seconds=dns_seconds)
        requests = [self._request(response=None, failure=failure, seconds=0.0)]
        keys = self._keys(
            queries,
            [],
            [],
            requests,
            self._download_failed(failure),
            blocking=blocking,
            accessible=False,
            consistency=consistency,
            http_failure=failure,
        )
        keys["dns_experiment_failure"] = failure
        return keys

    def _keys(
        self,
        queries: list[dict[str, Any]],
        tcp: list[dict[str, Any]],
        tls: list[dict[str, Any]],
        requests: list[dict[str, Any]],
        download: dict[str, Any],
        *,
        blocking: bool | str,
        accessible: bool,
        consistency: str | None,
        http_failure: str | None,
    ) -> dict[str, Any]:
        return {
            "queries": queries,
            "tcp_connect": tcp,
            "tls_handshakes": tls,
            "requests": requests,
            "x_download": download,
            "control": self._control(),
            "control_failure": None,
            "dns_experiment_failure": None,
            "dns_consistency": consistency,
            "http_experiment_failure": http_failure,
            "blocking": blocking,
            "accessible": accessible,
        }

    # --- the control: an uncensored vantage ---------------------------------------------------------------

    def _control(self) -> dict[str, Any]:
        ips = self.target.ips
        return {
            "dns": {"addrs": list(ips), "failure": None},
            "tcp_connect": {f"{ip}:443": {"status": True, "failure": None} for ip in ips},
            "tls_handshake": {
                f"{ip}:443": {"server_name": self.target.hostname, "status": True, "failure": None}
                for ip in ips
            },
            "http_request": self._control_http(),
            "x_download": self._control_download(),
        }

    def _control_http(
        self,
        *,
        status: int = 200,
        title: str | None = None,
        length: int | None = None,
        failure: str | None = None,
    ) -> dict[str, Any]:
        if failure is not None:
            return {"status_code": -1, "body_length": -1, "title": "", "headers": {}, "failure": failure}
        return {
            "status_code": status,
            "body_length": length if length is not None else len(self.target.body),
            "title": title if title is not None else self.target.title,
            "headers": dict(_OK_HEADERS),
            "failure": None,
        }

    def _control_download(self, *, failure: str | None = None) -> dict[str, Any]:
        if failure is not None:
            return {"url": self.target.url, "bytes": 0, "seconds": 0.0, "failure": failure}
        size = self.target.download_bytes
        kbps = CONTROL_KBPS * self.rng.uniform(0.8, 1.1)
        return {
            "url": self.target.url,
            "bytes": size,
            "seconds": round(size * 8 / 1000 / kbps, 4),
            "failure": None,
        }
