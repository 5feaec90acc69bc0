"""Verdicts for measurements rebuilt from OONI's observation rows (`obs_web`: one row per DNS query, TCP
connect, TLS handshake or HTTP request of a measurement).

The rows hold what the probe saw and nothing of the control (the test helper's view is not in them). So:
* the instant-messaging tests (telegram, whatsapp, signal, facebook_messenger), which need no control, are
  judged by each test's own rule (reference/ooni.md §1.5), read from the rows instead of the test keys, with
  the same rule outcomes and techniques as `platform.py`;
* web_connectivity is `ok` only when an HTTPS answer came back (a valid certificate is its own control,
  OONI's first summary rule); any failure, or a plain-HTTP answer that could be a block page, is `unknown`
  with the reason, never guessed.

Pure: reads the document's `x_obs_web` block (see `observatory/sources/obsrows.py`), does no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from observatory import failure as F
from observatory.verdict.facts import RESET_LIKE, is_bogon
from observatory.verdict.platform import FACEBOOK_ASN, FB_SERVICES, TELEGRAM_DCS, PlatformVerdict
from observatory.vocab import Verdict

OBS_KEY = "x_obs_web"  # the document's block that says it was rebuilt from observation rows, and holds them
OBS_TESTS = frozenset({"telegram", "whatsapp", "signal", "facebook_messenger", "web_connectivity"})
WHATSAPP_ENDPOINT = re.compile(r"^e\d+\.whatsapp\.net$")
# hosts whose failure OONI's signal test ignores (a DNS lookup it makes for its own bookkeeping)
SIGNAL_IGNORED = frozenset({"uptime.signal.org"})
# an older probe's spelling of a timeout in the rows
FAILURE_ALIASES = {"timed_out": F.GENERIC_TIMEOUT}


@dataclass(frozen=True, slots=True)
class Step:
    """One operation of the measurement, as its row reported it."""

    layer: str  # dns, tcp, tls or http
    host: str  # the name asked, connected to (SNI) or fetched; "" when the row has none
    ip: str
    port: int | None
    ok: bool
    failure: str | None
    url: str = ""
    asn: int | None = None  # of `ip`, for DNS answers


def _host_of(url: str) -> str:
    try:
        return (urlsplit(url).hostname or "").lower()
    except ValueError:
        return ""


def _failure(value: Any) -> str | None:
    if not isinstance(value, str) or not value:
        return None
    return FAILURE_ALIASES.get(value, value)


def _says_nothing(step: Step) -> bool:
    """A failure that describes the probe, not the network path to the service: its own error
    (`unknown_failure: ... cannot allocate memory`), or no route of that address family at all (a probe
    without IPv6 trying an IPv6 address, ooni/probe#2456)."""
    f = step.failure
    if f is None:
        return False
    if f.startswith("unknown_failure"):
        return True
    if f == F.NETWORK_UNREACHABLE:
        return True
    return f == F.HOST_UNREACHABLE and ":" in step.ip


def steps_of(rows: Iterable[dict[str, Any]]) -> list[Step]:
    """The operations the rows record; a row may record several (a TCP connect and its TLS handshake)."""
    out: list[Step] = []
    for r in rows:
        host = (r.get("hostname") or "").lower()
        ip = r.get("ip") or ""
        port = r.get("port")
        if r.get("dns_engine") or r.get("dns_failure") or r.get("dns_answer"):
            answer = r.get("dns_answer") or ""
            out.append(Step("dns", host, answer, None, not r.get("dns_failure"), _failure(r.get("dns_failure")),
                            asn=r.get("ip_asn") if answer and answer == ip else None))
        if r.get("tcp_success") is not None or r.get("tcp_failure"):
            out.append(Step("tcp", host, ip, port, r.get("tcp_success") is True and not r.get("tcp_failure"),
                            _failure(r.get("tcp_failure"))))
        if r.get("tls_success") is True or r.get("tls_failure"):
            out.append(Step("tls", r.get("tls_server_name") or host, ip, port,
                            r.get("tls_success") is True and not r.get("tls_failure"), _failure(r.get("tls_failure"))))
        url = r.get("http_request_url")
        if url:
            out.append(Step("http", _host_of(url), ip, port, not r.get("http_failure"),
                            _failure(r.get("http_failure")), url=url))
    return [s for s in out if not _says_nothing(s)]


def _technique(step: Step, failures: list[str | None]) -> Verdict:
    """The technique the failing layer points to (the same naming as platform.py's)."""
    if step.layer == "dns":
        return Verdict.DNS_TAMPERING
    if step.layer == "tcp":
        resets = sum(f in RESET_LIKE for f in failures)
        return Verdict.TCP_RESET if resets * 2 > len(failures) else Verdict.TCP_BLACKHOLE
    f = step.failure or ""
    if f in F.SSL_CERT_FAILURES:
        return Verdict.TLS_MITM
    if step.layer == "tls" or (step.url.startswith("https://") and f in (
            F.CONNECTION_RESET, F.GENERIC_TIMEOUT, F.EOF_ERROR, F.SSL_FAILED_HANDSHAKE)):
        return Verdict.TLS_INTERFERENCE
    if f in (F.DNS_NXDOMAIN, F.ANDROID_DNS_NO_DATA, F.DNS_NO_ANSWER, F.DNS_REFUSED, "dns_server_misbehaving"):
        return Verdict.DNS_TAMPERING
    return Verdict.HTTP_INTERFERENCE


def host_failure(steps: list[Step], host: str) -> tuple[Verdict, str] | None:
    """Where reaching `host` broke, first layer first: its lookup failed; no connect to it succeeded; no
    handshake with it succeeded; a request to it failed. None when nothing of it failed."""
    mine = [s for s in steps if s.host == host]
    for layer in ("dns", "tcp", "tls"):
        at = [s for s in mine if s.layer == layer]
        if at and not any(s.ok for s in at):
            failed = [s for s in at if s.failure]
            if failed:
                technique = _technique(failed[0], [s.failure for s in failed])
                return technique, f"{host}: {layer} failed: {failed[0].failure}"
    for s in mine:
        if s.layer == "http" and s.failure:
            return _technique(s, [s.failure]), f"{s.url} failed: {s.failure}"
    return None


def _pv(verdict: Verdict, rule: str, reason: str) -> PlatformVerdict:
    return PlatformVerdict(verdict, "obs." + rule, reason)


# --- the tests --------------------------------------------------------------------------------------------


def telegram(steps: list[Step]) -> PlatformVerdict:
    """OONI's telegram rule: blocked when no data centre accepts a TCP connection, or none answers over
    HTTP, or web.telegram.org fails."""
    # web.telegram.org's own address is among the data centres': its connects are the web check's
    dc_tcp = [s for s in steps if s.layer == "tcp" and s.ip in TELEGRAM_DCS and s.host != "web.telegram.org"]
    dc_http = [s for s in steps if s.layer == "http" and s.host in TELEGRAM_DCS]
    web = [s for s in steps if s.host == "web.telegram.org"]
    if not dc_tcp and not dc_http and not web:
        return _pv(Verdict.UNKNOWN, "telegram.no_observations", "no rows of the data centres or web.telegram.org")
    if dc_tcp and not any(s.ok for s in dc_tcp):
        fails = [s.failure for s in dc_tcp]
        return _pv(_technique(dc_tcp[0], fails), "telegram.dc_tcp",
                   "no TCP connect to any Telegram data centre succeeded")
    if dc_http and not any(s.ok for s in dc_http):
        return _pv(Verdict.HTTP_INTERFERENCE, "telegram.dc_http",
                   "every HTTP exchange with the Telegram data centres failed")
    broke = host_failure(steps, "web.telegram.org")
    if broke:
        return _pv(broke[0], "telegram.web", broke[1])
    return _pv(Verdict.OK, "telegram.ok", "data centres and web.telegram.org reachable")


def whatsapp(steps: list[Step]) -> PlatformVerdict:
    """OONI's whatsapp rule: blocked when no endpoint accepts a connection, or the registration service
    or WhatsApp Web fails."""
    if not steps:
        return _pv(Verdict.UNKNOWN, "whatsapp.no_observations", "no observation rows")
    endpoints = [s for s in steps if s.layer == "tcp" and WHATSAPP_ENDPOINT.match(s.host)]
    if endpoints and not any(s.ok for s in endpoints):
        return _pv(_technique(endpoints[0], [s.failure for s in endpoints]), "whatsapp.endpoints_tcp",
                   "no WhatsApp endpoint accepted a TCP connection")
    for host in ("v.whatsapp.net", "web.whatsapp.com"):
        broke = host_failure(steps, host)
        if broke:
            return _pv(broke[0], "whatsapp.https", broke[1])
    return _pv(Verdict.OK, "whatsapp.ok", "endpoints, registration and web reachable")


def signal(steps: list[Step], test_version: str) -> PlatformVerdict:
    """OONI's signal rule: blocked when any Signal backend fails."""
    hosts = sorted({s.host for s in steps if s.host and s.host not in SIGNAL_IGNORED})
    if not hosts:
        return _pv(Verdict.UNKNOWN, "signal.no_observations", "no rows of Signal's backends")
    for host in hosts:
        broke = host_failure(steps, host)
        if broke is None:
            continue
        if broke[0] is Verdict.TLS_MITM and _version(test_version) and _version(test_version) <= (0, 2, 4):
            # these versions shipped a stale Signal CA: certificate errors are the probe's (ooni/probe#2627)
            return _pv(Verdict.UNKNOWN, "signal.stale_ca",
                       "certificate error from a test version with a stale Signal CA")
        return _pv(broke[0], "signal.backend", broke[1])
    return _pv(Verdict.OK, "signal.ok", "every Signal backend answered")


def facebook(steps: list[Step]) -> PlatformVerdict:
    """OONI's facebook_messenger rule: a service name that fails to resolve, or resolves outside Facebook's
    network, is DNS blocking; no service accepting a connection is TCP blocking."""
    services = set(FB_SERVICES.values())
    lookups = [s for s in steps if s.layer == "dns" and s.host in services]
    conns = [s for s in steps if s.layer == "tcp" and s.host in services]
    if not lookups and not conns:
        return _pv(Verdict.UNKNOWN, "facebook.no_observations", "no rows of Facebook's services")
    for s in lookups:
        if s.failure:
            return _pv(Verdict.DNS_TAMPERING, "facebook.dns_failure",
                       f"{s.host} failed to resolve: {s.failure}")
        if s.ip and (is_bogon(s.ip) or (s.asn and s.asn != FACEBOOK_ASN)):
            return _pv(Verdict.DNS_TAMPERING, "facebook.dns_foreign",
                       f"{s.host} resolved to {s.ip}, a private address or outside Facebook's network")
    if conns and not any(s.ok for s in conns):
        return _pv(_technique(conns[0], [s.failure for s in conns]), "facebook.tcp",
                   "no Facebook endpoint accepted a TCP connection")
    if conns:
        return _pv(Verdict.OK, "facebook.ok", "names resolve within Facebook and endpoints connect")
    return _pv(Verdict.UNKNOWN, "facebook.undecided", "names resolved but no connection was tried")


def web_connectivity(steps: list[Step]) -> PlatformVerdict:
    """Without the control, only an HTTPS answer is conclusive (ok); everything else is said, not judged."""
    requests = [s for s in steps if s.layer == "http"]
    if any(s.ok and s.url.startswith("https://") for s in requests):
        return _pv(Verdict.OK, "web.https_ok", "an HTTPS answer came back (a valid certificate needs no control)")
    for host in dict.fromkeys(s.host for s in steps if s.host):
        broke = host_failure(steps, host)
        if broke:
            return _pv(Verdict.UNKNOWN, "web.no_control",
                       f"{broke[1]}; observation rows hold no control, so this cannot be told from the site "
                       "being down")
    if any(s.ok for s in requests):
        return _pv(Verdict.UNKNOWN, "web.plain_http",
                   "a plain-HTTP answer came back; without its body or a control it could be a block page")
    return _pv(Verdict.UNKNOWN, "web.incomplete", "no request was made and nothing failed")


def _version(tv: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in tv.split("."))
    except ValueError:
        return ()


def obs_verdict(test_name: str, test_version: str, block: dict[str, Any]) -> PlatformVerdict:
    """The verdict of a measurement rebuilt from observation rows (its document's `x_obs_web` block)."""
    rows = block.get("rows")
    steps = steps_of(r for r in rows if isinstance(r, dict)) if isinstance(rows, list) else []
    if test_name == "telegram":
        v = telegram(steps)
    elif test_name == "whatsapp":
        v = whatsapp(steps)
    elif test_name == "signal":
        v = signal(steps, test_version)
    elif test_name == "facebook_messenger":
        v = facebook(steps)
    elif test_name == "web_connectivity":
        v = web_connectivity(steps)
    else:
        return _pv(Verdict.UNKNOWN, "test.not_analysed", f"{test_name} is not judged from observation rows")
    rejected = block.get("rejected_rows")
    if v.verdict is Verdict.OK and isinstance(rejected, int) and rejected > 0:
        # ok needs the whole measurement: a rejected row could have been the failure
        return _pv(Verdict.UNKNOWN, "incomplete", f"{rejected} of its observation rows were rejected")
    return v

