"""A fast path for the commonest measurement: an HTTPS page that loaded normally.

Most measurements are `ok`; walking every rule for them costs more than ingest can afford. `plainly_ok`
checks, with direct dict lookups, a set of conditions under which the rule list (rules.WEB_RULES) can
only end at `web.ok`: every rule before it is then provably false. Anything unusual — a failure, a
redirect hop of OONI 0.5 (`depth=1`...), a private answer, a fingerprint hit, a slow download — returns
False and the full rules decide. tests/test_verdict_rules.py checks that both paths agree on every case it builds.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

from observatory.verdict.blockpages import default_matcher
from observatory.verdict.control import download_kbps
from observatory.verdict.facts import SYSTEM_ENGINES, host_names, is_bogon


@lru_cache(maxsize=4096)
def _host(url: str) -> str:
    try:
        return (urlsplit(url).hostname or "").lower()
    except ValueError:
        return ""


def _depth0(item: dict[str, Any]) -> bool:
    """OONI 0.5 tags observations `depth=N` along a redirect chain: only a chain of one hop is plain."""
    tags = item.get("tags")
    if not tags:
        return True
    if not isinstance(tags, list):
        return False
    for t in tags:
        if isinstance(t, str) and t[:6] == "depth=" and t != "depth=0":
            return False
    return True


def _kbps_ok(tk: dict[str, Any], control: dict[str, Any], baseline_kbps: float | None, factor: float) -> bool:
    if "x_download" not in tk:
        return True
    kbps = download_kbps(tk.get("x_download"))
    if kbps is None:
        return True
    refs = [r for r in (download_kbps(control.get("x_download")) if "x_download" in control else None,
                        baseline_kbps) if r]
    return not any(kbps * factor <= ref for ref in refs)


def plainly_ok(tk: dict[str, Any], url: str | None, baseline_kbps: float | None, factor: float) -> bool:
    if not url or not url.startswith("https://"):
        return False
    control = tk.get("control")
    if not isinstance(control, dict) or not control or tk.get("control_failure") or tk.get("x_control_unavailable"):
        return False
    dns = control.get("dns")
    if not isinstance(dns, dict) or dns.get("failure") is not None:
        return False
    requests = tk.get("requests")
    if not isinstance(requests, list) or not requests:
        return False
    matcher = default_matcher()
    for r in requests:
        if not isinstance(r, dict) or not _depth0(r):
            return False
        resp = r.get("response")
        if isinstance(resp, dict) and matcher.match(resp.get("body"), resp.get("headers") if isinstance(
                resp.get("headers"), dict) else None) is not None:
            return False
    final = requests[0]
    resp = final.get("response")
    if final.get("failure") is not None or not isinstance(resp, dict):
        return False
    req = final.get("request")
    if not isinstance(req, dict) or not isinstance(req.get("url"), str) or not req["url"].lower().startswith("https://"):
        return False  # a cleartext last hop is compared with the control by the full rules
    code = resp.get("code")
    if not isinstance(code, int) or isinstance(code, bool) or code <= 0 or 300 <= code < 400:
        return False
    host = _host(url)
    if not host:
        return False
    answered = False
    addrs = dns.get("addrs")
    control_addrs = set(addrs) if isinstance(addrs, list) and all(isinstance(a, str) for a in addrs) else set()
    queries = tk.get("queries")
    if not isinstance(queries, list):
        return False
    names = host_names(host)
    mine = []
    for q in queries:
        if not isinstance(q, dict) or not _depth0(q):
            return False
        name, engine = q.get("hostname"), q.get("engine")
        if (name is not None and not isinstance(name, str)) or (engine is not None and not isinstance(engine, str)):
            return False
        if not name or name.lower().rstrip(".") in names:  # as facts: an empty name is no name
            mine.append(q)
    # as facts.WebFacts.target_lookups: no lookup under the URL's name -> every lookup of this hop
    for q in mine or queries:
        if q.get("engine") not in SYSTEM_ENGINES:
            continue
        answers = q.get("answers")
        if not isinstance(answers, list):
            continue
        for a in answers:
            if not isinstance(a, dict):
                return False
            ip = a.get("ipv4") or a.get("ipv6")
            if ip:
                # a private answer is tampering unless the control got it too (rules._dns_bogon)
                if not isinstance(ip, str) or (is_bogon(ip) and ip not in control_addrs):
                    return False
                answered = True
    if not answered:
        return False
    connects, handshakes = tk.get("tcp_connect"), tk.get("tls_handshakes")
    if not isinstance(connects, list | None) or not isinstance(handshakes, list | None):
        return False
    for c in connects or ():
        if not isinstance(c, dict) or not _depth0(c) or not isinstance(c.get("status"), dict) or (
                c["status"].get("success") is not True):
            return False
    for h in handshakes or ():
        if not isinstance(h, dict) or not _depth0(h) or h.get("failure") is not None:
            return False
    return _kbps_ok(tk, control, baseline_kbps, factor)
