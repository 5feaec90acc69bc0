"""OONI's own per-measurement summary, recomputed by us from the raw observations.

`ooni_blocking(m)` gives the `blocking` value OONI's probe would have written for the measurement's
test_version: the 0.4.x summary rules (probe-cli webconnectivity/summary.go) for anything before 0.5,
the 0.5 "classic" analysis (webconnectivitylte/analysisclassic.go) for 0.5; values False, None, "dns",
"tcp_ip", "http-failure", "http-diff". For the IM tests it gives their status keys as a dict.
The rules are transcribed from reference/ooni.md §1.2-1.3; one approximation is ours: OONI looks up the
ASN of the control's addresses in its own GeoIP database, which we do not ship, so the ASN-overlap test
uses the ASNs the measurement itself carries (answers' `asn`, the 0.5 control's `ip_info`).
"""

from __future__ import annotations

import ipaddress
from typing import Any

from observatory import failure as F
from observatory.measurement import Measurement
from observatory.verdict.control import ControlView
from observatory.verdict.facts import (
    Handshake,
    Lookup,
    Request,
    WebFacts,
    host_of_address,
    http_matches_control,
)
from observatory.verdict.platform import PLATFORM_TESTS, status_keys

Blocking = str | bool | None
SYSTEM = frozenset({"getaddrinfo", "system", None, ""})

NXDOMAIN_LIKE = F.NXDOMAIN_LIKE
# 0.4 summary: HTTP failures that OONI calls "http-failure" (others give null)
HTTP_FAILURE_04 = frozenset({F.CONNECTION_REFUSED, F.CONNECTION_RESET, F.EOF_ERROR, F.GENERIC_TIMEOUT,
                             F.SSL_INVALID_HOSTNAME, F.SSL_INVALID_CERTIFICATE, F.SSL_UNKNOWN_AUTHORITY})


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _version(tv: str) -> tuple[int, ...]:
    out = []
    for part in tv.split("."):
        digits = "".join(ch for ch in part if ch.isdigit())
        out.append(int(digits) if digits else 0)
    return tuple(out)


def ooni_blocking(m: Measurement) -> Blocking | dict[str, Any]:
    """What OONI's rules for this measurement's test and version would give (see the module docstring)."""
    if m.test_name in PLATFORM_TESTS:
        return status_keys(m.test_name, m.test_keys, m.test_version)
    if m.test_name != "web_connectivity":
        return None
    facts = WebFacts(m.test_keys, m.input)
    # a file that lost its envelope still shows its version by the keys only 0.5 writes
    is_v05 = _version(m.test_version) >= (0, 5) if m.test_version else "x_blocking_flags" in m.test_keys
    if is_v05:
        return blocking_v05(facts)
    return blocking_v04(facts)


# --- 0.4.x ----------------------------------------------------------------------------------------------


def _system_queries(f: WebFacts) -> list[Lookup]:
    return f.system_lookups or f.target_lookups


def dns_consistency_v04(f: WebFacts) -> str | None:
    """consistent | inconsistent | None (no control): dnsanalysis.go."""
    cv = f.control
    if cv is None or not cv.dns_known:
        return None
    if _is_ip_literal(f.host):
        return "consistent"
    queries = _system_queries(f)
    probe_failure = f.dns_failure
    if probe_failure in NXDOMAIN_LIKE and cv.dns_failure == "dns_name_error":
        return "consistent"
    probe_addrs = {ip for q in queries for ip in q.addrs}
    if probe_addrs & cv.dns_addrs:
        return "consistent"
    probe_asns = {a.asn for q in queries for a in q.answers if a.asn}
    control_asns = {cv.ip_asns[ip] for ip in cv.dns_addrs if ip in cv.ip_asns}
    if probe_asns & control_asns:
        return "consistent"
    return "inconsistent"


def blocking_v04(f: WebFacts) -> Blocking:
    """The ordered summary rules of web_connectivity 0.4.x; first match wins."""
    tk = f.tk
    reqs = f.requests
    first = reqs[0] if reqs else None
    # 1. a successful HTTPS final response: accessible, whatever else happened
    if first is not None and first.failure is None and first.url.startswith("https://") and first.code:
        return False
    # 2. no control
    if tk.get("control_failure") or f.control is None:
        return None
    cv: ControlView = f.control
    consistency = dns_consistency_v04(f)
    dns_failure = f.dns_failure
    # 3-4. NXDOMAIN: consistent with the control = the name does not exist; else DNS blocking
    if dns_failure in NXDOMAIN_LIKE:
        return False if consistency == "consistent" else "dns"
    # 5. every TCP connect failed
    tcp = [c for c in f.connects if c.depth == 0]
    if tcp and not any(c.ok for c in tcp) and consistency is not None:
        return "tcp_ip" if consistency == "consistent" else "dns"
    # 6. the control's HTTP failed; 7. no request at all
    if not cv.http_known or cv.http_failure is not None:
        return None
    if first is None:
        return None
    # 8. the probe's HTTP failed
    if first.failure is not None:
        if first.failure == F.DNS_NXDOMAIN:
            out: Blocking = "dns"
        elif first.failure in HTTP_FAILURE_04:
            out = "http-failure"
        else:
            return None
        if len(reqs) == 1 and consistency == "inconsistent":
            out = "dns"
        return out
    # 9-10. HTTP succeeded: compare with the control
    if http_matches_control(first, cv):
        return False
    return "dns" if consistency == "inconsistent" else "http-diff"


# --- 0.5 classic ----------------------------------------------------------------------------------------

# Observation types, in the order the classic analysis prefers them at equal depth.
_HTTP, _TLS, _TCP, _DNS = 0, 1, 2, 3


def dns_consistency_v05(f: WebFacts) -> str | None:
    """Classic consistency (system resolver only): inconsistent on invalid addresses, unexpected failures,
    or answers where the control resolved nothing."""
    cv = f.control
    if cv is None or not cv.dns_known:
        return None
    queries = [q for q in f.target_lookups if q.classic] or _system_queries(f)
    addrs = {ip for q in queries for ip in q.addrs}
    failed = [q.failure for q in queries if q.failure]
    control_addrs = {a for a in cv.dns_addrs if _is_ip_literal(a)}
    if addrs:
        if not control_addrs:
            return "inconsistent"
        probe_asns = {a.asn for q in queries for a in q.answers if a.asn}
        control_asns = {cv.ip_asns[ip] for ip in control_addrs if ip in cv.ip_asns}
        if addrs & control_addrs or probe_asns & control_asns:
            return "consistent"
        return "inconsistent"
    if failed:
        control_failed = cv.dns_failure is not None or not control_addrs
        return "consistent" if control_failed else "inconsistent"
    return None


def _observations(f: WebFacts) -> list[tuple[int, int, bool, Any]]:
    """(depth, type, failed, item), in the order the classic analysis walks them."""
    obs: list[tuple[int, int, bool, Any]] = []
    tagged = any(x.classic for x in f.observations)
    system_addrs = {ip for q in f.lookups if q.engine in SYSTEM for ip in q.addrs}

    def keep(x: Any) -> bool:
        # the classic analysis reads only what the system resolver's addresses led to: tagged `classic`
        # by recent builds; derived from the address's origin for builds that predate the tag. An
        # IP-literal URL has no such observation, and the analysis then has nothing to say (null).
        if tagged:
            return bool(x.classic)
        if isinstance(x, Lookup):
            return x.engine in SYSTEM
        ip = x.ip if not isinstance(x, Request) else (host_of_address(x.address) if x.address else None)
        return ip is None or ip in system_addrs

    for r in f.requests:
        if keep(r):
            obs.append((r.depth, _HTTP, r.failure is not None, r))
    for h in f.handshakes:
        if keep(h):
            obs.append((h.depth, _TLS, h.failure is not None, h))
    for c in f.connects:
        if keep(c):
            obs.append((c.depth, _TCP, not c.ok, c))
    for q in f.lookups:
        if keep(q) and q.engine in SYSTEM:
            obs.append((q.depth, _DNS, q.failure is not None, q))
    obs.sort(key=lambda o: (-o[0], o[1], o[2]))
    return obs


def blocking_v05(f: WebFacts) -> Blocking:
    cv = f.control
    consistency = dns_consistency_v05(f)

    def blocked(reason: str) -> Blocking:
        # every blocking outcome becomes "dns" when the system resolver's answers were inconsistent
        return "dns" if consistency == "inconsistent" else reason

    def down() -> Blocking:
        return "dns" if consistency == "inconsistent" else False

    for depth, kind, failed, item in _observations(f):
        if kind == _HTTP:
            req: Request = item
            if not failed:
                if req.code is None or 300 <= req.code < 400:
                    continue  # not a final response
                if req.is_tls:
                    return False
                if cv is None or not cv.http_known:
                    return None
                return False if http_matches_control(req, cv, v05=True) else blocked("http-diff")
            if cv is None or not cv.http_known:
                return None
            if cv.http_failure is not None:
                return down()
            return blocked("http-failure")
        if kind == _TLS and failed:
            hs: Handshake = item
            state = cv.tls.get(hs.address) if cv is not None else None
            if state is None:
                if cv is None or not cv.http_known:
                    return None
                return blocked("http-failure")
            return down() if not state[0] else blocked("http-failure")
        if kind == _TCP and failed:
            state = cv.tcp.get(item.endpoint) if cv is not None else None
            if state is None:
                if cv is None or not cv.http_known:
                    return None
                return blocked("http-failure") if depth > 0 else blocked("tcp_ip")
            return down() if not state[0] else blocked("tcp_ip")
        if kind == _DNS:
            q: Lookup = item
            if failed:
                if cv is None or not cv.dns_known or depth > 0:
                    if cv is None or not cv.http_known:
                        return False
                    return "dns"
                if cv.dns_failure is not None:
                    return down()
                if q.failure == F.DNS_NO_ANSWER and not cv.dns_addrs:
                    return down()
                return "dns"
            addrs = q.addrs
            if addrs and all(ipaddress.ip_address(a).is_loopback for a in addrs if _is_ip_literal(a)):
                control_addrs = [a for a in (cv.dns_addrs if cv else ()) if _is_ip_literal(a)]
                if control_addrs and not all(ipaddress.ip_address(a).is_loopback for a in control_addrs):
                    return "dns"
                return down()
    return None
