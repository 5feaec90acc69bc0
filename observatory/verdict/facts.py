"""The raw observations of a web_connectivity measurement, read into a few plain facts the rules test.

Built with dict lookups, not a full decode of the test keys: classify runs on every ingested measurement.
Every accessor tolerates any JSON shape (a rule must never crash on what a probe wrote), treating a
malformed part as absent. Works on our probe's format (docs/measurement-format.md) and on OONI's
web_connectivity 0.4 and 0.5 (0.5 adds `tags` such as `classic` and `depth=N`, and extra DoH/UDP lookups).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

from observatory import failure as F
from observatory.verdict.control import ControlView, control_view, download_kbps
from observatory.verdict.shapes import CachedFact, as_dict, as_list, as_text

# The probe's own resolver: OONI 0.4 says "system", 0.5 "getaddrinfo"; old MK reports leave it out.
SYSTEM_ENGINES = frozenset({"system", "getaddrinfo", "golang_net_resolver", None, ""})
# Lookups that say nothing about the probe's network path to the target (DoH goes to a third party).
IGNORED_ENGINES = frozenset({"doh", "dot"})
TIMEOUT_LIKE = frozenset({F.GENERIC_TIMEOUT})
RESET_LIKE = frozenset({F.CONNECTION_RESET, F.CONNECTION_REFUSED, "connection_refused_error", "connect_error"})
TLS_INTERFERENCE_FAILURES = frozenset({F.CONNECTION_RESET, F.GENERIC_TIMEOUT, F.EOF_ERROR, F.SSL_FAILED_HANDSHAKE,
                                       F.CONNECTION_ABORTED})
NO_CONNECTIVITY = frozenset({F.GENERIC_TIMEOUT, F.NETWORK_UNREACHABLE, F.HOST_UNREACHABLE, "network_down",
                             F.DNS_SERVER_FAILURE, "dns_servfail_error", "dns_temporary_failure",
                             "dns_server_misbehaving"})
DNS_BLOCK_FAILURES = frozenset({F.DNS_NXDOMAIN, F.ANDROID_DNS_NO_DATA, F.DNS_REFUSED, F.DNS_NO_ANSWER})
# OONI's list of headers too common to say anything about who answered (probe-cli httpanalysis.go).
COMMON_HEADERS = frozenset({
    "date", "content-type", "server", "cache-control", "vary", "set-cookie", "location", "expires",
    "x-powered-by", "content-encoding", "last-modified", "accept-ranges", "pragma", "x-frame-options", "etag",
    "x-content-type-options", "age", "via", "p3p", "x-xss-protection", "content-language", "cf-ray",
    "strict-transport-security", "link", "x-varnish",
})
TITLE_RE = re.compile(r"(?i)<title>([^<]{1,512})</title>")
BODY_PROPORTION_FACTOR = 0.7


def depth_of(item: dict[str, Any]) -> int:
    for tag in as_list(item.get("tags")):
        if isinstance(tag, str) and tag.startswith("depth="):
            try:
                return int(tag[6:])
            except ValueError:
                return 0
    return 0


# The documentation and benchmarking ranges stand for public Internet addresses in our simulator, lab and
# tests (no traffic may leave the machine): they are not bogons here, unlike RFC 1918, loopback and the rest.
STAND_IN_PUBLIC = tuple(ipaddress.ip_network(n) for n in
                        ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "198.18.0.0/15"))


@lru_cache(maxsize=1 << 16)
def is_bogon(ip: str) -> bool:
    """Private, loopback, link-local, reserved... an address no public website resolves to."""
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return False
    if addr.is_global:
        return False
    return not any(addr in net for net in STAND_IN_PUBLIC if net.version == addr.version)


def host_of_address(address: str) -> str:
    """'1.2.3.4:443' -> '1.2.3.4'; '[2001:db8::1]:443' -> '2001:db8::1'."""
    if address.startswith("["):
        return address[1:].split("]", 1)[0]
    return address.rsplit(":", 1)[0] if address.count(":") == 1 else address


def body_of(response: dict[str, Any]) -> str:
    body = response.get("body")
    if isinstance(body, str):
        return body
    if isinstance(body, dict) and body.get("format") == "base64":
        from observatory.verdict.blockpages import body_text

        return body_text(body) or ""
    return ""


@lru_cache(maxsize=4096)
def host_names(host: str) -> frozenset[str]:
    """The spellings of a host name a probe may have looked up: as written, and in IDNA (punycode)."""
    name = host.lower().rstrip(".")
    try:
        return frozenset({name, name.encode("idna").decode("ascii")})
    except UnicodeError:
        return frozenset({name})


def title_of(body: str) -> str:
    m = TITLE_RE.search(body)
    return m.group(1) if m else ""


def long_words(title: str) -> set[str]:
    return {w.lower() for w in title.split() if len(w.encode()) >= 5}


@dataclass(slots=True)
class Answer:
    ip: str
    asn: int | None


@dataclass(slots=True)
class Lookup:
    hostname: str | None
    engine: str | None
    failure: str | None
    answers: list[Answer]
    depth: int
    classic: bool

    @property
    def addrs(self) -> set[str]:
        return {a.ip for a in self.answers}


@dataclass(slots=True)
class Connect:
    ip: str
    port: int | None
    ok: bool
    failure: str | None
    depth: int
    classic: bool

    @property
    def endpoint(self) -> str:
        return f"[{self.ip}]:{self.port}" if ":" in self.ip else f"{self.ip}:{self.port}"


@dataclass(slots=True)
class Handshake:
    address: str
    server_name: str | None
    failure: str | None
    depth: int
    classic: bool

    @property
    def ip(self) -> str:
        return host_of_address(self.address)


@dataclass(slots=True)
class Request:
    url: str
    address: str | None
    failure: str | None
    code: int | None
    headers: dict[str, Any]
    body: str
    truncated: bool
    depth: int
    classic: bool

    @property
    def is_tls(self) -> bool:
        return self.url.lower().startswith("https://")

    @property
    def succeeded(self) -> bool:
        return self.failure is None and self.code is not None and self.code > 0


Observation = Lookup | Connect | Handshake | Request


class WebFacts:
    """Lazily derived facts about one web_connectivity measurement; each computed at most once."""

    def __init__(self, tk: dict[str, Any], url: str | None) -> None:
        self.tk = tk
        self.url = url or ""
        try:
            parts = urlsplit(self.url) if self.url else None
            host = (parts.hostname or "") if parts else ""
        except ValueError:  # e.g. an unbalanced "[" in what should have been an IPv6 literal
            parts, host = None, ""
        self.scheme = (parts.scheme or "").lower() if parts else ""
        self.host = host
        if not self.host:
            # some published files keep only the test keys: the target is the name the probe looked up
            named = (q for q in as_list(tk.get("queries")) if isinstance(q, dict) and as_text(q.get("hostname")))
            first = next(named, None)
            self.host = first["hostname"] if first else ""
        self.control = control_view(tk)

    # --- raw lists ----------------------------------------------------------------------------------------

    @CachedFact
    def lookups(self) -> list[Lookup]:
        out = []
        for q in as_list(self.tk.get("queries")):
            if not isinstance(q, dict):
                continue
            engine = q.get("engine") if isinstance(q.get("engine"), str) else None
            if engine in IGNORED_ENGINES:
                continue
            tags = as_list(q.get("tags"))
            answers = []
            for a in as_list(q.get("answers")):
                if not isinstance(a, dict):
                    continue
                ip = as_text(a.get("ipv4")) or as_text(a.get("ipv6"))
                if ip:
                    asn = a.get("asn")
                    answers.append(Answer(ip, asn if isinstance(asn, int) and not isinstance(asn, bool) else None))
            out.append(Lookup(as_text(q.get("hostname")), engine, as_text(q.get("failure")), answers, depth_of(q),
                              "classic" in tags))
        return out

    @CachedFact
    def connects(self) -> list[Connect]:
        out = []
        for c in as_list(self.tk.get("tcp_connect")):
            if not isinstance(c, dict) or not as_text(c.get("ip")):
                continue
            st = as_dict(c.get("status"))
            port = c.get("port") if isinstance(c.get("port"), int) else None
            out.append(Connect(c["ip"], port, st.get("success") is True, as_text(st.get("failure")), depth_of(c),
                               "classic" in as_list(c.get("tags"))))
        return out

    @CachedFact
    def handshakes(self) -> list[Handshake]:
        out = []
        for h in as_list(self.tk.get("tls_handshakes")):
            if not isinstance(h, dict) or not as_text(h.get("address")):
                continue
            out.append(Handshake(h["address"], as_text(h.get("server_name")), as_text(h.get("failure")), depth_of(h),
                                 "classic" in as_list(h.get("tags"))))
        return out

    @CachedFact
    def requests(self) -> list[Request]:
        """HTTP transactions in OONI order: the last hop first."""
        out = []
        for r in as_list(self.tk.get("requests")):
            if not isinstance(r, dict):
                continue
            failure = as_text(r.get("failure"))
            if failure and failure.endswith("http_request_canceled"):
                continue  # 0.5 cancels its parallel fetches once one answers: the probe's doing, not the network's
            req, resp = as_dict(r.get("request")), as_dict(r.get("response"))
            code, url = resp.get("code"), req.get("url")
            out.append(Request(
                url=url if isinstance(url, str) else "",
                address=as_text(r.get("address")),
                failure=failure,
                code=code if isinstance(code, int) and not isinstance(code, bool) else None,
                headers=as_dict(resp.get("headers")),
                body=body_of(resp),
                truncated=resp.get("body_is_truncated") is True,
                depth=depth_of(r),
                classic="classic" in as_list(r.get("tags")),
            ))
        return out

    # --- DNS ----------------------------------------------------------------------------------------------

    @CachedFact
    def target_lookups(self) -> list[Lookup]:
        """The probe's lookups of the target's own name (not of redirect targets)."""
        names = host_names(self.host)
        depth0 = [q for q in self.lookups if q.depth == 0]
        mine = [q for q in depth0 if q.hostname is None or q.hostname.lower().rstrip(".") in names]
        # no lookup under the URL's name (an IDN written another way, a CNAME recorded instead): the probe
        # looked up nothing else at this hop, so what it looked up is the target
        return mine or depth0

    @CachedFact
    def system_lookups(self) -> list[Lookup]:
        return [q for q in self.target_lookups if q.engine in SYSTEM_ENGINES]

    @CachedFact
    def resolver_lookups(self) -> list[Lookup]:
        """The lookups that stand for the probe's resolution: the system resolver's when there are any
        (what the user's apps see), otherwise every lookup of the target."""
        return self.system_lookups or self.target_lookups

    @CachedFact
    def probe_addrs(self) -> set[str]:
        return {ip for q in self.resolver_lookups for ip in q.addrs}

    @CachedFact
    def dns_failure(self) -> str | None:
        """The resolver's failure when no lookup of the target got an answer."""
        if self.probe_addrs or not self.target_lookups:
            return None
        fails = [q.failure for q in self.resolver_lookups if q.failure]
        if not fails:
            return None
        # a blocking answer (NXDOMAIN, refused) says more than a timeout of a second resolver
        for f in fails:
            if f in DNS_BLOCK_FAILURES:
                return f
        return fails[0]

    @CachedFact
    def bogon_answers(self) -> set[str]:
        return {ip for ip in self.probe_addrs if is_bogon(ip)}

    @CachedFact
    def tls_valid_ips(self) -> set[str]:
        """Addresses where a TLS handshake for the target's name succeeded: a certificate valid for the name
        proves the address belongs to the site, whatever the control resolved."""
        host = self.host.lower()
        return {h.ip for h in self.handshakes if h.failure is None and (h.server_name or "").lower() == host}

    @CachedFact
    def answers_consistent(self) -> bool | None:
        """Probe answers overlap the control's by address or by ASN; None when either side has nothing."""
        cv = self.control
        if cv is None or not self.probe_addrs or not cv.resolves:
            return None
        if self.probe_addrs & cv.dns_addrs:
            return True
        probe_asns = {a.asn for q in self.target_lookups for a in q.answers if a.asn}
        control_asns = {cv.ip_asns[ip] for ip in cv.dns_addrs if ip in cv.ip_asns}
        control_asns |= {a.asn for q in self.target_lookups for a in q.answers if a.asn and a.ip in cv.dns_addrs}
        return bool(probe_asns & control_asns)

    # --- TCP / TLS / HTTP ---------------------------------------------------------------------------------

    @CachedFact
    def target_connects(self) -> list[Connect]:
        """Connects to the addresses the probe resolved for the target (OONI 0.5 also tries the control's)."""
        addrs = self.probe_addrs
        depth0 = [c for c in self.connects if c.depth == 0]
        mine = [c for c in depth0 if c.ip in addrs] if addrs else depth0
        return mine or depth0

    @CachedFact
    def target_handshakes(self) -> list[Handshake]:
        addrs = self.probe_addrs
        depth0 = [h for h in self.handshakes if h.depth == 0]
        mine = [h for h in depth0 if h.ip in addrs] if addrs else depth0
        return mine or depth0

    @CachedFact
    def tagged(self) -> bool:
        """OONI 0.5 tags its observations (`classic`, `depth=N`) and fetches some in parallel."""
        return any(r.depth or r.classic for r in self.requests) or any(c.classic for c in self.connects)

    @CachedFact
    def final(self) -> Request | None:
        """The last hop: OONI lists it first; 0.5 may fetch one hop over several connections, cancelling
        the others once one answers, so there the deepest hop's successful fetch is the one that counts."""
        if not self.requests:
            return None
        if not self.tagged:
            return self.requests[0]
        deepest = max(r.depth for r in self.requests)
        hop = [r for r in self.requests if r.depth == deepest]
        return next((r for r in hop if r.succeeded), hop[0])

    @CachedFact
    def max_depth(self) -> int:
        return max([x.depth for x in self.observations] or [0])

    @property
    def observations(self) -> list[Observation]:
        """Every step the probe recorded: lookups, connects, handshakes, requests."""
        return [*self.lookups, *self.connects, *self.handshakes, *self.requests]

    def at_depth(self, depth: int) -> tuple[list[Lookup], list[Connect], list[Handshake], list[Request]]:
        return ([q for q in self.lookups if q.depth == depth and q.engine in SYSTEM_ENGINES],
                [c for c in self.connects if c.depth == depth],
                [h for h in self.handshakes if h.depth == depth],
                [r for r in self.requests if r.depth == depth])

    @CachedFact
    def download_kbps(self) -> float | None:
        return download_kbps(self.tk.get("x_download"))


# --- OONI's HTTP comparison against the control (probe-cli httpanalysis.go), shared by both rule sets ------


def body_length_match(req: Request, cv: ControlView) -> bool | None:
    th = cv.http_body_length
    probe = len(req.body.encode())
    if th is None or th <= 0 or req.truncated or probe <= 0:
        return None
    return min(probe, th) / max(probe, th) > BODY_PROPORTION_FACTOR


def status_code_match(req: Request, cv: ControlView, *, v05: bool = False) -> bool | None:
    th = cv.http_status or 0
    probe = req.code or 0
    if probe <= 0 or th <= 0:
        return None
    if probe == th:
        return True
    if (v05 and not 200 <= th < 300) or th >= 500:
        return None
    return False


def headers_match(req: Request, cv: ControlView) -> bool | None:
    if not (req.code and cv.http_status and cv.http_status > 0):
        return None
    probe = {k.lower() for k in req.headers if isinstance(k, str)}
    th = {k.lower() for k in cv.http_headers if isinstance(k, str)}
    if probe == th:
        return True
    return bool((probe - COMMON_HEADERS) & (th - COMMON_HEADERS))


def title_match(req: Request, cv: ControlView) -> bool | None:
    if req.truncated or not (req.code and cv.http_status and cv.http_status > 0):
        return None
    probe = title_of(req.body)
    if not probe:
        return None
    return long_words(probe) == long_words(cv.http_title or "")


def http_matches_control(req: Request, cv: ControlView, *, v05: bool = False) -> bool:
    """OONI's rule: same status AND (similar length OR shared uncommon headers OR same title words)."""
    return bool(status_code_match(req, cv, v05=v05)) and bool(
        body_length_match(req, cv) or headers_match(req, cv) or title_match(req, cv))
