"""The verdict rules, as data: an ordered list; the first rule whose condition holds decides.

Each rule has a stable id (stored with the verdict, so never reuse one: add a new rule instead), the
condition over the measurement's facts, the verdict it gives and a one-line reason. The order encodes
precedence: no-control and site-down cases first, then the network layers from the most specific
evidence (a block page names the censor) down through DNS, TCP, TLS and HTTP, then throughput, then ok.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from observatory import failure as F
from observatory.verdict.blockpages import match_response
from observatory.verdict.facts import (
    DNS_BLOCK_FAILURES,
    NO_CONNECTIVITY,
    RESET_LIKE,
    TLS_INTERFERENCE_FAILURES,
    Connect,
    Handshake,
    Lookup,
    Request,
    WebFacts,
    http_matches_control,
)
from observatory.vocab import Verdict

# A download this many times slower than the control's (or the network's baseline) is throttled.
THROTTLING_FACTOR = 10.0


@dataclass(frozen=True, slots=True)
class Context:
    """What a rule may read: the measurement's facts and the caller's baseline throughput."""

    facts: WebFacts
    baseline_kbps: float | None = None
    probe_cc: str = ""


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    verdict: Verdict
    reason: str
    when: Callable[[Context], bool]


# --- conditions ---------------------------------------------------------------------------------------------


def _nothing_observed(c: Context) -> bool:
    f = c.facts
    return not (f.host and (f.lookups or f.connects or f.requests))


def _all_failed(c: Context) -> bool:
    """No step succeeded: no DNS answer, no TCP connection, no HTTP response."""
    f = c.facts
    return (not f.probe_addrs and not any(x.ok for x in f.connects)
            and not any(r.succeeded for r in f.requests))


def _no_connectivity(c: Context) -> bool:
    f = c.facts
    fails = [q.failure for q in f.target_lookups]
    return _all_failed(c) and bool(fails) and all(x in NO_CONNECTIVITY for x in fails) and (
        f.control is None or f.control.resolves)


def _no_control_https_ok(c: Context) -> bool:
    f = c.facts
    return f.control is None and f.final is not None and f.final.succeeded and f.final.is_tls


def _no_control(c: Context) -> bool:
    return c.facts.control is None


def blockpage_id(c: Context) -> str | None:
    """The id of the censorship block page one of the responses matches, if any."""
    for r in c.facts.requests:
        if r.code is None and not r.body:
            continue
        fp = match_response(r.body, r.headers)
        if fp is not None and not fp.false_positive:
            return fp.id
    return None


def _blockpage(c: Context) -> bool:
    return blockpage_id(c) is not None


def _dns_nxdomain(c: Context) -> bool:
    f = c.facts
    return f.dns_failure in DNS_BLOCK_FAILURES and f.control is not None and f.control.resolves


def _dns_bogon(c: Context) -> bool:
    f = c.facts
    if not f.bogon_answers or f.control is None:
        return False
    # the site itself may publish a private address (OONI: polito.it); only the control can tell
    return not (f.bogon_answers & f.control.dns_addrs)


def _dns_ghost(c: Context) -> bool:
    """The probe got addresses for a name the control says does not exist."""
    f = c.facts
    cv = f.control
    return bool(f.probe_addrs) and cv is not None and cv.dns_known and cv.dns_failure in (
        "dns_name_error", F.DNS_NXDOMAIN) and not f.tls_valid_ips


def _dns_inconsistent_unvalidated(c: Context) -> bool:
    """Answers unlike the control's that nothing vouches for, and the site did not load as it should."""
    f = c.facts
    if f.answers_consistent is not False:
        return False
    if f.probe_addrs & f.tls_valid_ips:
        return False  # a certificate valid for the name: a CDN answer, not a lie
    final = f.final
    if final is not None and final.succeeded and f.control is not None:
        if final.is_tls or http_matches_control(final, f.control):
            return False  # the page arrived, over valid TLS or as the control saw it
    return True


def _probe_failed_like_control(c: Context) -> bool:
    """The site fails from the control too: it is down (or does not exist), not blocked."""
    f = c.facts
    cv = f.control
    if cv is None or (f.final is not None and f.final.succeeded):
        return False
    if cv.dns_known and not cv.resolves:
        return f.dns_failure is not None or not f.probe_addrs
    if cv.http_known and cv.http_failure is not None:
        return True
    tcp = f.target_connects
    if tcp and not any(x.ok for x in tcp):
        states = [cv.tcp.get(x.endpoint) for x in tcp]
        if states and all(s is not None and not s[0] for s in states):
            return True
    tls = f.target_handshakes
    if tls and not any(h.failure is None for h in tls):
        states = [cv.tls.get(h.address) for h in tls]
        if states and all(s is not None and not s[0] for s in states):
            return True
    return False


def _tcp_failed(c: Context, kinds: frozenset[str] | None) -> bool:
    f = c.facts
    tcp = f.target_connects
    if not tcp or any(x.ok for x in tcp) or f.control is None:
        return False
    fails = [x.failure or "" for x in tcp]
    if kinds is None:
        return True
    return all(x in kinds for x in fails) or (
        sum(x in kinds for x in fails) * 2 > len(fails))


def _tcp_reset(c: Context) -> bool:
    return _tcp_failed(c, RESET_LIKE)


def _tcp_blackhole(c: Context) -> bool:
    return _tcp_failed(c, None)


def _tls_failed(c: Context, kinds: frozenset[str]) -> bool:
    f = c.facts
    if f.scheme != "https" or f.control is None:
        return False
    tls = f.target_handshakes
    if not tls or any(h.failure is None for h in tls):
        return False
    return all((h.failure or "") in kinds for h in tls)


def _tls_mitm(c: Context) -> bool:
    return _tls_failed(c, F.SSL_CERT_FAILURES | {"ssl_error"})


def _tls_interference(c: Context) -> bool:
    f = c.facts
    if _tls_failed(c, TLS_INTERFERENCE_FAILURES):
        return True
    # OONI 0.4 records no handshakes for the target: a TLS-level failure shows as the request's failure
    final = f.final
    return (f.scheme == "https" and f.control is not None and not f.target_handshakes and final is not None
            and final.code is None and final.failure in TLS_INTERFERENCE_FAILURES
            and any(x.ok for x in f.target_connects))


def _lookalike(c: Context) -> bool:
    """A server's own page that looks like blocking (a CAPTCHA, a geoblock notice): not the network."""
    final = c.facts.final
    if final is None or final.code is None:
        return False
    fp = match_response(final.body, final.headers)
    return fp is not None and fp.false_positive


def _tls_interference_sni(c: Context) -> bool:
    """Handshakes to the control's own addresses fail too: the name (SNI) is blocked, whatever DNS said."""
    f = c.facts
    cv = f.control
    if f.scheme != "https" or cv is None:
        return False
    hs = [h for h in f.handshakes if h.depth == 0 and h.ip in cv.dns_addrs]
    return bool(hs) and all((h.failure or "") in TLS_INTERFERENCE_FAILURES for h in hs) and all(
        cv.tls.get(h.address, (True, None))[0] for h in hs)


def _redirect_hop(c: Context) -> tuple[list[Lookup], list[Connect], list[Handshake], list[Request]] | None:
    """The observations of the deepest redirect hop, when the chain broke there and the control (which
    followed the same redirects) got the page."""
    f = c.facts
    if f.max_depth == 0 or f.control is None or not f.control.http_ok:
        return None
    lookups, connects, handshakes, requests = f.at_depth(f.max_depth)
    if any(r.succeeded and not 300 <= (r.code or 0) < 400 for r in requests):
        return None
    return lookups, connects, handshakes, requests


def _redirect_dns(c: Context) -> bool:
    hop = _redirect_hop(c)
    return hop is not None and bool(hop[0]) and not any(q.addrs for q in hop[0]) and any(
        q.failure in DNS_BLOCK_FAILURES for q in hop[0])


def _redirect_tcp(c: Context, kinds: frozenset[str] | None) -> bool:
    hop = _redirect_hop(c)
    if hop is None or not hop[1] or any(x.ok for x in hop[1]):
        return False
    return kinds is None or all((x.failure or "") in kinds for x in hop[1])


def _redirect_tls(c: Context) -> bool:
    hop = _redirect_hop(c)
    if hop is None or hop[3] or not hop[2]:
        return False  # with a request at this hop, http.failure describes it better
    return all((h.failure or "") in TLS_INTERFERENCE_FAILURES for h in hop[2])


def _stalled_transfer(c: Context) -> bool:
    """The response began (a 2xx status line over a working connection), then the body never finished:
    time-to-complete collapsed, the mark of a throttled flow (OONI dd-007)."""
    f = c.facts
    final = f.final
    return (final is not None and final.failure == F.GENERIC_TIMEOUT and final.code is not None
            and 200 <= final.code < 300 and f.control is not None and f.control.http_ok)


def _slow_download(c: Context) -> bool:
    kbps = c.facts.download_kbps
    if kbps is None:
        return False
    cv = c.facts.control
    refs = [r for r in (cv.download_kbps if cv else None, c.baseline_kbps) if r]
    return any(kbps * THROTTLING_FACTOR <= ref for ref in refs)


def _http_failed(c: Context) -> bool:
    f = c.facts
    final = f.final
    return final is not None and final.failure is not None and f.control is not None and f.control.http_ok


def _http_diff(c: Context) -> bool:
    f = c.facts
    final = f.final
    if final is None or not final.succeeded or final.is_tls or f.control is None or not f.control.http_ok:
        return False
    return not http_matches_control(final, f.control)


def _ok(c: Context) -> bool:
    final = c.facts.final
    return final is not None and final.succeeded and not 300 <= (final.code or 0) < 400


def _ok_download(c: Context) -> bool:
    """No HTTP transaction recorded, but the throughput download went through at a normal speed."""
    f = c.facts
    return f.final is None and f.download_kbps is not None and f.control is not None


WEB_RULES: tuple[Rule, ...] = (
    Rule("web.no_observations", Verdict.UNKNOWN, "no URL or no raw observations to judge", _nothing_observed),
    Rule("web.no_connectivity", Verdict.UNREACHABLE,
         "every step failed, DNS included, with connectivity-type failures: the probe's network is cut",
         _no_connectivity),
    Rule("http.blockpage", Verdict.HTTP_BLOCKPAGE, "a response matches a known block-page fingerprint",
         _blockpage),
    Rule("web.no_control_https_ok", Verdict.OK,
         "no control, but the page loaded over TLS with a certificate valid for the name", _no_control_https_ok),
    Rule("web.no_control", Verdict.UNKNOWN, "no control measurement to compare with", _no_control),
    Rule("dns.nxdomain", Verdict.DNS_TAMPERING,
         "the probe's resolver denied the name (NXDOMAIN, refused, no answer) that the control resolves",
         _dns_nxdomain),
    Rule("dns.bogon", Verdict.DNS_TAMPERING, "the probe's resolver answered private or reserved addresses",
         _dns_bogon),
    Rule("dns.ghost", Verdict.DNS_TAMPERING,
         "the probe's resolver answered for a name the control says does not exist", _dns_ghost),
    Rule("site.down", Verdict.DOWN, "the step that failed for the probe failed for the control too",
         _probe_failed_like_control),
    Rule("tls.interference_sni", Verdict.TLS_INTERFERENCE,
         "TLS handshakes to the control's own addresses are reset or time out: the name is blocked",
         _tls_interference_sni),
    Rule("dns.inconsistent", Verdict.DNS_TAMPERING,
         "answers share no address or ASN with the control's, none validated by TLS, and the site did not load",
         _dns_inconsistent_unvalidated),
    Rule("tcp.reset", Verdict.TCP_RESET, "every TCP connect to the site's addresses was reset or refused",
         _tcp_reset),
    Rule("tcp.timeout", Verdict.TCP_BLACKHOLE, "every TCP connect to the site's addresses timed out or failed",
         _tcp_blackhole),
    Rule("tls.mitm", Verdict.TLS_MITM, "TLS handshakes present a certificate not valid for the name",
         _tls_mitm),
    Rule("tls.interference", Verdict.TLS_INTERFERENCE,
         "TCP connects, then every TLS handshake is reset, times out or is cut (EOF)", _tls_interference),
    Rule("redirect.dns", Verdict.DNS_TAMPERING,
         "the redirect target's name is denied by the probe's resolver, the control followed it",
         _redirect_dns),
    Rule("redirect.tcp_reset", Verdict.TCP_RESET, "connections to the redirect target are reset or refused",
         lambda c: _redirect_tcp(c, RESET_LIKE)),
    Rule("redirect.tcp_timeout", Verdict.TCP_BLACKHOLE, "connections to the redirect target time out",
         lambda c: _redirect_tcp(c, None)),
    Rule("redirect.tls", Verdict.TLS_INTERFERENCE, "TLS handshakes with the redirect target are reset or cut",
         _redirect_tls),
    Rule("throttling.stalled_transfer", Verdict.THROTTLING,
         "the response started but the body timed out while the control fetched it whole", _stalled_transfer),
    Rule("throttling.slow_download", Verdict.THROTTLING,
         "download throughput 10x or more below the control's or the network's baseline", _slow_download),
    Rule("http.failure", Verdict.HTTP_INTERFERENCE, "the HTTP exchange failed while the control's succeeded",
         _http_failed),
    Rule("http.lookalike", Verdict.UNKNOWN,
         "the server's own CAPTCHA or geoblock page: not the network's doing, not an answer either",
         _lookalike),
    Rule("http.diff", Verdict.HTTP_INTERFERENCE,
         "the cleartext HTTP response differs from the control's (status, length, headers, title)", _http_diff),
    Rule("web.ok", Verdict.OK, "every step succeeded and the page matches what the control saw", _ok),
    Rule("web.ok_download", Verdict.OK, "the download succeeded at a normal speed", _ok_download),
    Rule("web.undecided", Verdict.UNKNOWN, "the observations fit no rule", lambda c: True),
)

RULES_BY_ID: dict[str, Rule] = {r.id: r for r in WEB_RULES}


def first_match(rules: tuple[Rule, ...], ctx: Context) -> Rule:
    for rule in rules:
        if rule.when(ctx):
            return rule
    raise AssertionError("rule lists end with a catch-all")  # pragma: no cover
