"""Verdicts for OONI's instant-messaging tests (telegram, whatsapp, signal, facebook_messenger).

They have no control measurement: each probes a fixed list of the service's endpoints. We read the raw
arrays (`queries`, `tcp_connect`, `requests`) and apply each test's own logic (reference/ooni.md §1.5),
then name the technique from the failure that decided. `status_keys(...)` gives OONI's summary keys as
the test's rules would compute them from the same raw data (compared with OONI's own in the tests).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from observatory import failure as F
from observatory.verdict.facts import DNS_BLOCK_FAILURES, RESET_LIKE, is_bogon
from observatory.verdict.shapes import as_dict, as_list, as_text
from observatory.vocab import Verdict

PLATFORM_TESTS = frozenset({"telegram", "whatsapp", "signal", "facebook_messenger"})
TELEGRAM_DCS = frozenset({"149.154.175.50", "149.154.167.51", "149.154.175.100", "149.154.167.91",
                          "149.154.171.5", "95.161.76.100", "149.154.167.99"})
FACEBOOK_ASN = 32934
FB_SERVICES = {  # OONI's service key -> hostname
    "b_api": "b-api.facebook.com", "b_graph": "b-graph.facebook.com", "edge": "edge-mqtt.facebook.com",
    "external_cdn": "external.xx.fbcdn.net", "scontent_cdn": "scontent.xx.fbcdn.net",
    "star": "star.c10r.facebook.com", "stun": "stun.fbsbx.com",
}


@dataclass(frozen=True, slots=True)
class PlatformVerdict:
    verdict: Verdict
    rule: str
    reason: str


def _host(url: str) -> str:
    try:
        return (urlsplit(url).hostname or "").lower()
    except ValueError:
        return ""


def _requests(tk: dict[str, Any]) -> list[tuple[str, str | None, int | None]]:
    out = []
    for r in as_list(tk.get("requests")):
        if isinstance(r, dict):
            url = as_dict(r.get("request")).get("url")
            code = as_dict(r.get("response")).get("code")
            out.append((url if isinstance(url, str) else "", as_text(r.get("failure")),
                        code if isinstance(code, int) and not isinstance(code, bool) else None))
    return out


def _connects(tk: dict[str, Any]) -> list[tuple[str, int | None, bool, str | None]]:
    out = []
    for c in as_list(tk.get("tcp_connect")):
        if isinstance(c, dict) and isinstance(c.get("ip"), str):
            st = as_dict(c.get("status"))
            port = c.get("port") if isinstance(c.get("port"), int) else None
            out.append((c["ip"], port, st.get("success") is True, as_text(st.get("failure"))))
    return out


def technique_of(failure: str, *, tls: bool, at_connect: bool = False) -> Verdict:
    """The technique a failure string points to, given where it happened."""
    if failure in DNS_BLOCK_FAILURES or failure == "dns_lookup_error":
        return Verdict.DNS_TAMPERING
    if failure in F.SSL_CERT_FAILURES:
        return Verdict.TLS_MITM
    if at_connect:
        return Verdict.TCP_RESET if failure in RESET_LIKE else Verdict.TCP_BLACKHOLE
    if tls and failure in (F.CONNECTION_RESET, F.GENERIC_TIMEOUT, F.EOF_ERROR, F.SSL_FAILED_HANDSHAKE):
        return Verdict.TLS_INTERFERENCE
    return Verdict.HTTP_INTERFERENCE


def _connect_technique(fails: list[str | None]) -> Verdict:
    resets = sum(f in RESET_LIKE for f in fails)
    return Verdict.TCP_RESET if resets * 2 > len(fails) else Verdict.TCP_BLACKHOLE


# --- telegram ---------------------------------------------------------------------------------------------


def _telegram_parts(tk: dict[str, Any]) -> tuple[list[Any], list[Any], list[Any]]:
    reqs = _requests(tk)
    web = [r for r in reqs if _host(r[0]) == "web.telegram.org"]
    dcs = [r for r in reqs if r not in web]
    return reqs, dcs, web


def telegram_status(tk: dict[str, Any]) -> dict[str, Any]:
    _, dcs, web = _telegram_parts(tk)
    http_blocking = tcp_blocking = True
    for _, failure, _ in dcs:
        if failure is None:
            http_blocking = tcp_blocking = False
            break
    if tcp_blocking:
        # a DC failure that is not at connect still proves TCP works (probe-cli telegram.go)
        ok_connects = {(ip, port) for ip, port, ok, _ in _connects(tk) if ok}
        if ok_connects and any(f is not None for _, f, _ in dcs):
            tcp_blocking = False
    web_failure = next((f for _, f, _ in web if f is not None), None)
    return {"telegram_http_blocking": http_blocking, "telegram_tcp_blocking": tcp_blocking,
            "telegram_web_status": "blocked" if web_failure else "ok", "telegram_web_failure": web_failure}


def telegram_verdict(tk: dict[str, Any]) -> PlatformVerdict:
    reqs, dcs, web = _telegram_parts(tk)
    conns = _connects(tk)
    if not reqs and not conns:
        return PlatformVerdict(Verdict.UNKNOWN, "telegram.no_observations", "no raw observations")
    if conns and not any(ok for *_, ok, _ in conns):
        return PlatformVerdict(_connect_technique([f for *_, f in conns]), "telegram.dc_tcp",
                               "no TCP connect to any Telegram data centre succeeded")
    if dcs and not any(f is None for _, f, _ in dcs):
        return PlatformVerdict(Verdict.HTTP_INTERFERENCE, "telegram.dc_http",
                               "TCP works but every HTTP exchange with the data centres failed")
    web_failure = next((f for _, f, _ in web if f is not None), None)
    if web_failure:
        return PlatformVerdict(technique_of(web_failure, tls=True), "telegram.web",
                               f"web.telegram.org failed: {web_failure}")
    return PlatformVerdict(Verdict.OK, "telegram.ok", "data centres and web.telegram.org reachable")


# --- whatsapp ---------------------------------------------------------------------------------------------


def _version(tv: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in tv.split("."))
    except ValueError:
        return ()


def _whatsapp_web(tk: dict[str, Any], test_version: str) -> str | None:
    """The web check. Before 0.11 it also fetched http://web.whatsapp.com/ and demanded a redirect (to
    HTTPS); since 0.11 a TLS handshake with web.whatsapp.com is enough (reference/ooni.md §1.5)."""
    strict = bool(_version(test_version)) and _version(test_version) < (0, 11)
    for url, failure, code in _requests(tk):
        if _host(url) != "web.whatsapp.com":
            continue
        if failure and (strict or url.startswith("https://")):
            return failure
        if strict and url.startswith("http://") and not (code is not None and 300 <= code < 400):
            return "http_unexpected_status_code"
    return None


def whatsapp_status(tk: dict[str, Any], test_version: str = "") -> dict[str, Any]:
    reqs = _requests(tk)
    reg = next((f for url, f, _ in reqs if _host(url) == "v.whatsapp.net" and f), None)
    conns = [c for c in _connects(tk) if c[1] in (443, 5222)]
    endpoints_ok = any(ok for *_, ok, _ in conns) if conns else None
    web = _whatsapp_web(tk, test_version)
    return {"whatsapp_endpoints_status": None if endpoints_ok is None else ("ok" if endpoints_ok else "blocked"),
            "registration_server_status": "blocked" if reg else "ok", "whatsapp_web_status": "blocked" if web else "ok"}


def whatsapp_verdict(tk: dict[str, Any]) -> PlatformVerdict:
    reqs, conns = _requests(tk), _connects(tk)
    if not reqs and not conns:
        return PlatformVerdict(Verdict.UNKNOWN, "whatsapp.no_observations", "no raw observations")
    if conns and not any(ok for *_, ok, _ in conns):
        return PlatformVerdict(_connect_technique([f for *_, f in conns]), "whatsapp.endpoints_tcp",
                               "no WhatsApp endpoint accepted a TCP connection")
    for url, failure, _ in reqs:
        if failure and _host(url) in ("v.whatsapp.net", "web.whatsapp.com"):
            return PlatformVerdict(technique_of(failure, tls=url.startswith("https://")), "whatsapp.https",
                                   f"{_host(url)} failed: {failure}")
    # a non-200 status from web.whatsapp.com is the site's own redirect/403 (ooni.org#1317), not blocking
    return PlatformVerdict(Verdict.OK, "whatsapp.ok", "endpoints, registration and web reachable")


# --- signal -----------------------------------------------------------------------------------------------


def signal_status(tk: dict[str, Any]) -> dict[str, Any]:
    failure = next((f for _, f, _ in _requests(tk) if f), None)
    return {"signal_backend_status": "blocked" if failure else "ok", "signal_backend_failure": failure}


def signal_verdict(tk: dict[str, Any], test_version: str = "") -> PlatformVerdict:
    reqs = _requests(tk)
    if not reqs:
        return PlatformVerdict(Verdict.UNKNOWN, "signal.no_observations", "no raw observations")
    failed = [(url, f) for url, f, _ in reqs if f]
    if not failed:
        return PlatformVerdict(Verdict.OK, "signal.ok", "every Signal backend answered")
    url, failure = failed[0]
    v = _version(test_version)
    if failure in F.SSL_CERT_FAILURES and v and v <= (0, 2, 4):
        # these versions shipped a stale Signal CA: certificate errors are the probe's (ooni/probe#2627)
        return PlatformVerdict(Verdict.UNKNOWN, "signal.stale_ca",
                               "certificate error from a test version with a stale Signal CA")
    return PlatformVerdict(technique_of(failure, tls=True), "signal.backend", f"{_host(url)} failed: {failure}")


# --- facebook_messenger -----------------------------------------------------------------------------------


def _fb_lookups(tk: dict[str, Any]) -> dict[str, tuple[str | None, list[tuple[str | None, int | None]]]]:
    out: dict[str, tuple[str | None, list[tuple[str | None, int | None]]]] = {}
    for q in as_list(tk.get("queries")):
        if not isinstance(q, dict) or not isinstance(q.get("hostname"), str):
            continue
        answers = [(as_text(a.get("ipv4")) or as_text(a.get("ipv6")),
                    a.get("asn") if isinstance(a.get("asn"), int) else None)
                   for a in as_list(q.get("answers")) if isinstance(a, dict)]
        answers = [a for a in answers if a[0]]
        prev = out.get(q["hostname"])
        if prev is None or (prev[0] and not as_text(q.get("failure"))):
            out[q["hostname"]] = (as_text(q.get("failure")), answers)
        else:
            out[q["hostname"]] = (prev[0], prev[1] + answers)
    return out


def facebook_status(tk: dict[str, Any]) -> dict[str, Any]:
    lookups = _fb_lookups(tk)
    dns_blocking = False
    for host in FB_SERVICES.values():
        if host not in lookups:
            continue
        failure, answers = lookups[host]
        # OONI's Go test: a failure, or any answer outside Facebook's ASN (unknown ASN counts as outside)
        if failure or any(asn != FACEBOOK_ASN for _, asn in answers):
            dns_blocking = True
    conns = _connects(tk)
    tcp_blocking = any(not ok for *_, ok, _ in conns)
    return {"facebook_dns_blocking": dns_blocking, "facebook_tcp_blocking": tcp_blocking}


def facebook_verdict(tk: dict[str, Any]) -> PlatformVerdict:
    lookups, conns = _fb_lookups(tk), _connects(tk)
    if not lookups and not conns:
        return PlatformVerdict(Verdict.UNKNOWN, "facebook.no_observations", "no raw observations")
    for failure, answers in lookups.values():
        if failure in DNS_BLOCK_FAILURES:
            return PlatformVerdict(Verdict.DNS_TAMPERING, "facebook.dns_failure",
                                   f"a Facebook service name failed to resolve: {failure}")
        if any(ip and is_bogon(ip) for ip, _ in answers) or any(asn and asn != FACEBOOK_ASN for _, asn in answers):
            return PlatformVerdict(Verdict.DNS_TAMPERING, "facebook.dns_foreign",
                                   "a Facebook service resolved to a private address or outside Facebook's ASN")
    if conns and not any(ok for *_, ok, _ in conns):
        return PlatformVerdict(_connect_technique([f for *_, f in conns]), "facebook.tcp",
                               "no Facebook endpoint accepted a TCP connection")
    if conns:
        return PlatformVerdict(Verdict.OK, "facebook.ok", "names resolve within Facebook and endpoints connect")
    return PlatformVerdict(Verdict.UNKNOWN, "facebook.undecided", "names resolved but no connection was tried")


def platform_verdict(test_name: str, tk: dict[str, Any], test_version: str = "") -> PlatformVerdict:
    if test_name == "telegram":
        return telegram_verdict(tk)
    if test_name == "whatsapp":
        return whatsapp_verdict(tk)
    if test_name == "signal":
        return signal_verdict(tk, test_version)
    return facebook_verdict(tk)


def status_keys(test_name: str, tk: dict[str, Any], test_version: str = "") -> dict[str, Any] | None:
    if test_name == "telegram":
        return telegram_status(tk)
    if test_name == "whatsapp":
        return whatsapp_status(tk, test_version)
    if test_name == "signal":
        return signal_status(tk)
    if test_name == "facebook_messenger":
        return facebook_status(tk)
    return None
