"""What the control saw: OONI's test-helper answer inside a web_connectivity measurement, read tolerantly.

The control is the same test run from an uncensored vantage point; the rules compare the probe's
observations with it. A measurement without one (or whose control failed) has no ControlView.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from observatory import failure as F
from observatory.verdict.shapes import as_dict, as_list, as_text


@dataclass(slots=True, kw_only=True)
class ControlView:
    """What the control helper saw (OONI's test-helper response)."""

    dns_failure: str | None = None
    dns_addrs: set[str] = field(default_factory=set)
    dns_known: bool = False
    tcp: dict[str, tuple[bool, str | None]] = field(default_factory=dict)
    tls: dict[str, tuple[bool, str | None]] = field(default_factory=dict)
    http_failure: str | None = None
    http_known: bool = False
    http_status: int | None = None
    http_body_length: int | None = None
    http_title: str = ""
    http_headers: dict[str, Any] = field(default_factory=dict)
    ip_asns: dict[str, int] = field(default_factory=dict)
    download_kbps: float | None = None

    @property
    def http_ok(self) -> bool:
        return self.http_known and self.http_failure is None and (self.http_status or 0) > 0

    @property
    def resolves(self) -> bool:
        return self.dns_known and self.dns_failure is None and any(_looks_like_ip(a) for a in self.dns_addrs)


@lru_cache(maxsize=1 << 16)
def _looks_like_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def download_kbps(dl: Any) -> float | None:
    """Throughput of an `x_download`: kbit/s. A download that timed out while progressing still counts (a
    throttled transfer often ends that way); one that failed any other way does not."""
    dl = as_dict(dl)
    nbytes, seconds, fail = dl.get("bytes"), dl.get("seconds"), dl.get("failure")
    if fail not in (None, F.GENERIC_TIMEOUT):
        return None
    if not isinstance(nbytes, int | float) or not isinstance(seconds, int | float) or isinstance(nbytes, bool):
        return None
    if nbytes <= 0 or seconds <= 0:
        return None
    return nbytes * 8 / 1000 / seconds


def control_view(tk: dict[str, Any]) -> ControlView | None:
    ctrl = tk.get("control")
    if not isinstance(ctrl, dict) or not ctrl or as_text(tk.get("control_failure")) or tk.get("x_control_unavailable"):
        return None
    cv = ControlView()
    dns = ctrl.get("dns")
    if isinstance(dns, dict):
        cv.dns_known = True
        cv.dns_failure = as_text(dns.get("failure"))
        cv.dns_addrs = {a for a in as_list(dns.get("addrs")) if isinstance(a, str)}
    for ep, st in as_dict(ctrl.get("tcp_connect")).items():
        st = as_dict(st)
        cv.tcp[ep] = (st.get("status") is True, as_text(st.get("failure")))
    for ep, st in as_dict(ctrl.get("tls_handshake")).items():
        st = as_dict(st)
        cv.tls[ep] = (st.get("status") is True, as_text(st.get("failure")))
    http = ctrl.get("http_request")
    if isinstance(http, dict) and http:
        cv.http_known = True
        cv.http_failure = as_text(http.get("failure"))
        status = http.get("status_code")
        cv.http_status = status if isinstance(status, int) and not isinstance(status, bool) else None
        blen = http.get("body_length")
        cv.http_body_length = blen if isinstance(blen, int) and not isinstance(blen, bool) else None
        title = http.get("title")
        cv.http_title = title if isinstance(title, str) else ""
        cv.http_headers = as_dict(http.get("headers"))
    for ip, info in as_dict(ctrl.get("ip_info")).items():
        asn = as_dict(info).get("asn")
        if isinstance(asn, int) and asn > 0:
            cv.ip_asns[ip] = asn
    cv.download_kbps = download_kbps(ctrl.get("x_download"))
    return cv
