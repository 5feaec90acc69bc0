"""Small web_connectivity measurements in our probe's format (docs/measurement-format.md), built by
technique, for the verdict tests. Every field is what a probe or the simulator writes; nothing here
carries OONI's summary keys, so a rule that read them would have nothing to read."""

from __future__ import annotations

import copy
from typing import Any

HOST = "www.facebook.com"
URL = f"https://{HOST}/"
IP = "198.18.2.10"  # inside the benchmark range our simulator and lab use for "public" sites
PAGE = "<html><head><title>Facebook - log in or sign up</title></head><body>" + "x" * 4000 + "</body></html>"


def _query(engine: str, answers: list[str] | None, failure: str | None = None, host: str = HOST) -> dict[str, Any]:
    return {"hostname": host, "query_type": "A", "engine": engine,
            "resolver_address": "" if engine == "system" else "203.0.113.53:53", "failure": failure,
            "answers": [{"answer_type": "A", "ipv4": a} for a in answers] if answers is not None else None,
            "t0": 0.0, "t": 0.05}


def ok_keys(url: str = URL, *, kbps: float = 40_000.0, control_kbps: float = 42_000.0) -> dict[str, Any]:
    """An ordinary successful HTTPS measurement, control included."""
    host = url.split("/")[2]
    https = url.startswith("https://")
    port = 443 if https else 80
    seconds = 1.0
    return {
        "client_resolver": "203.0.113.53",
        "queries": [_query("system", [IP], host=host), _query("udp", [IP], host=host)],
        "tcp_connect": [{"ip": IP, "port": port, "status": {"success": True, "failure": None, "blocked": None},
                         "t0": 0.1, "t": 0.15}],
        "tls_handshakes": ([{"address": f"{IP}:443", "server_name": host, "failure": None,
                             "tls_version": "TLSv1.3", "cipher_suite": "TLS_AES_128_GCM_SHA256",
                             "negotiated_protocol": "h2", "peer_certificates": [{"format": "sha256", "data": "ab"}],
                             "t0": 0.15, "t": 0.3}] if https else []),
        "requests": [{"request": {"url": url, "method": "GET", "headers": {"Accept": "text/html"}},
                      "response": {"code": 200, "headers": {"Content-Type": "text/html", "X-FB-Debug": "1"},
                                   "body": PAGE, "body_is_truncated": False},
                      "failure": None, "t0": 0.3, "t": 0.6}],
        "x_download": {"url": url, "bytes": int(kbps * 1000 / 8 * seconds), "seconds": seconds, "failure": None},
        "control": {
            "dns": {"addrs": [IP], "failure": None},
            "tcp_connect": {f"{IP}:{port}": {"status": True, "failure": None}},
            "tls_handshake": {f"{IP}:443": {"server_name": host, "status": True, "failure": None}} if https else {},
            "http_request": {"status_code": 200, "body_length": len(PAGE), "title": "Facebook - log in or sign up",
                             "headers": {"Content-Type": "text/html", "X-FB-Debug": "1"}, "failure": None},
            "x_download": {"url": url, "bytes": int(control_kbps * 1000 / 8), "seconds": 1.0, "failure": None},
        },
        "control_failure": None,
    }


def envelope(tk: dict[str, Any], *, url: str = URL, test_name: str = "web_connectivity",
             cc: str = "PK", uid: str = "20240120T134500Z_webconnectivity_PK_17557_n1_0000000000000001",
             test_version: str = "0.4.3") -> dict[str, Any]:
    return {"measurement_uid": uid, "report_id": uid, "data_format_version": "0.2.0", "test_name": test_name,
            "test_version": test_version, "software_name": "observatory", "software_version": "0.1.0",
            "measurement_start_time": "2024-01-20 13:45:03", "test_start_time": "2024-01-20 13:45:00",
            "probe_cc": cc, "probe_asn": "AS17557", "probe_network_name": "PTCL", "resolver_asn": "AS17557",
            "input": url, "annotations": {"region": "Punjab", "probe_id": "p1"}, "test_keys": tk}


def _fail_download(tk: dict[str, Any], failure: str) -> None:
    tk["x_download"] = {"url": URL, "bytes": 0, "seconds": 0.0, "failure": failure}


def _no_request(tk: dict[str, Any], failure: str) -> None:
    tk["requests"] = [{"request": {"url": URL, "method": "GET", "headers": {}}, "response": None,
                       "failure": failure, "t0": 0.3, "t": 10.3}]
    _fail_download(tk, failure)


def case(name: str) -> dict[str, Any]:
    """test_keys showing one technique's signature (the table in docs/measurement-format.md)."""
    tk = copy.deepcopy(ok_keys())
    if name == "ok":
        return tk
    if name == "dns_nxdomain":
        tk["queries"] = [_query("system", None, "dns_nxdomain_error"), _query("udp", None, "dns_nxdomain_error")]
        tk["tcp_connect"], tk["tls_handshakes"] = [], []
        _no_request(tk, "dns_nxdomain_error")
    elif name == "dns_refused":
        tk["queries"] = [_query("system", None, "dns_refused_error")]
        tk["tcp_connect"], tk["tls_handshakes"] = [], []
        _no_request(tk, "dns_refused_error")
    elif name == "dns_bogon":
        tk["queries"] = [_query("system", ["10.10.34.34"]), _query("udp", ["10.10.34.34"])]
        tk["tcp_connect"] = [{"ip": "10.10.34.34", "port": 443,
                              "status": {"success": False, "failure": "generic_timeout_error"}}]
        tk["tls_handshakes"] = []
        _no_request(tk, "generic_timeout_error")
    elif name == "dns_inconsistent":
        # a public address of someone else; TLS there fails with a certificate for another name
        tk["queries"] = [_query("system", ["203.0.113.66"]), _query("udp", ["203.0.113.66"])]
        tk["tcp_connect"] = [{"ip": "203.0.113.66", "port": 443, "status": {"success": True, "failure": None}}]
        tk["tls_handshakes"] = [{"address": "203.0.113.66:443", "server_name": HOST,
                                 "failure": "ssl_invalid_hostname"}]
        _no_request(tk, "ssl_invalid_hostname")
    elif name == "tcp_reset":
        tk["tcp_connect"][0]["status"] = {"success": False, "failure": "connection_reset"}
        tk["tls_handshakes"] = []
        _no_request(tk, "connection_reset")
    elif name == "tcp_refused":
        tk["tcp_connect"][0]["status"] = {"success": False, "failure": "connection_refused"}
        tk["tls_handshakes"] = []
        _no_request(tk, "connection_refused")
    elif name == "tcp_blackhole":
        tk["tcp_connect"][0]["status"] = {"success": False, "failure": "generic_timeout_error"}
        tk["tls_handshakes"] = []
        _no_request(tk, "generic_timeout_error")
    elif name in ("tls_reset", "tls_timeout", "tls_eof"):
        failure = {"tls_reset": "connection_reset", "tls_timeout": "generic_timeout_error",
                   "tls_eof": "eof_error"}[name]
        tk["tls_handshakes"][0]["failure"] = failure
        _no_request(tk, failure)
    elif name in ("tls_mitm_hostname", "tls_mitm_authority"):
        failure = "ssl_invalid_hostname" if name == "tls_mitm_hostname" else "ssl_unknown_authority"
        tk["tls_handshakes"][0]["failure"] = failure
        _no_request(tk, failure)
    elif name in ("blockpage_pk", "blockpage_ir", "blockpage_header"):
        url = "http://www.facebook.com/"
        tk = copy.deepcopy(ok_keys(url))
        body = {"blockpage_pk": "<html><body><h1>Surf Safely!</h1>This website is not accessible in Pakistan.",
                "blockpage_ir": '<html><head></head><body><iframe src="http://10.10.34.34?type=Invalid Site'
                                '&policy=MainPolicy" style="width: 100%; height: 100%"></iframe></body></html>',
                "blockpage_header": ""}[name]
        headers = {"Location": "http://warning.rt.ru/?id=17"} if name == "blockpage_header" else {}
        tk["requests"] = [{"request": {"url": url, "method": "GET", "headers": {}},
                           "response": {"code": 302 if headers else 200, "headers": headers, "body": body,
                                        "body_is_truncated": False},
                           "failure": None, "t0": 0.3, "t": 0.4}]
    elif name == "http_failure":
        tk["requests"][0]["response"] = None
        tk["requests"][0]["failure"] = "connection_reset"
        _fail_download(tk, "connection_reset")
        tk["tls_handshakes"][0]["failure"] = None
    elif name == "http_diff":
        url = "http://www.facebook.com/"
        tk = copy.deepcopy(ok_keys(url))
        tk["requests"][0]["response"] = {"code": 403, "headers": {"Content-Type": "text/html"},
                                         "body": "<html><title>Forbidden</title></html>", "body_is_truncated": False}
    elif name == "throttling":
        tk = copy.deepcopy(ok_keys(kbps=256.0, control_kbps=40_000.0))
    elif name == "throttling_stalled":
        tk["requests"][0]["failure"] = "generic_timeout_error"
        tk["requests"][0]["response"] = {"code": 200, "headers": {"Content-Type": "text/html"}, "body": "",
                                         "body_is_truncated": True}
        _fail_download(tk, "connection_reset")
    elif name == "unreachable":
        tk["queries"] = [_query("system", None, "generic_timeout_error"), _query("udp", None, "generic_timeout_error")]
        tk["tcp_connect"], tk["tls_handshakes"] = [], []
        _no_request(tk, "generic_timeout_error")
        tk["control"] = None
        tk["control_failure"] = "generic_timeout_error"
        tk["x_control_unavailable"] = True
    elif name == "unreachable_with_control":
        tk["queries"] = [_query("system", None, "network_unreachable")]
        tk["tcp_connect"], tk["tls_handshakes"] = [], []
        _no_request(tk, "network_unreachable")
    elif name == "down_dns":
        tk["queries"] = [_query("system", None, "dns_nxdomain_error")]
        tk["tcp_connect"], tk["tls_handshakes"] = [], []
        _no_request(tk, "dns_nxdomain_error")
        tk["control"]["dns"] = {"addrs": [], "failure": "dns_name_error"}
        tk["control"]["http_request"] = {"status_code": -1, "body_length": -1, "failure": "dns_lookup_error"}
    elif name == "down_tcp":
        tk["tcp_connect"][0]["status"] = {"success": False, "failure": "generic_timeout_error"}
        tk["tls_handshakes"] = []
        _no_request(tk, "generic_timeout_error")
        tk["control"]["tcp_connect"] = {f"{IP}:443": {"status": False, "failure": "generic_timeout_error"}}
        tk["control"]["tls_handshake"] = {}
        tk["control"]["http_request"] = {"status_code": -1, "body_length": -1, "failure": "generic_timeout_error"}
    elif name == "no_control_failure":
        tk["tcp_connect"][0]["status"] = {"success": False, "failure": "generic_timeout_error"}
        tk["tls_handshakes"] = []
        _no_request(tk, "generic_timeout_error")
        tk["control"] = None
        tk["control_failure"] = "connection_reset"
        tk["x_control_unavailable"] = True
    elif name == "no_control_https_ok":
        tk["control"] = None
        tk["control_failure"] = "generic_timeout_error"
    elif name == "captcha":
        url = "http://www.facebook.com/"
        tk = copy.deepcopy(ok_keys(url))
        tk["requests"][0]["response"] = {"code": 503, "headers": {"Content-Type": "text/html"},
                                         "body": "<html><head><title>Just a moment...</title></head></html>",
                                         "body_is_truncated": False}
    else:
        raise KeyError(name)
    return tk


# name -> (verdict, rule id)
EXPECTED: dict[str, tuple[str, str]] = {
    "ok": ("ok", "web.ok"),
    "dns_nxdomain": ("dns_tampering", "dns.nxdomain"),
    "dns_refused": ("dns_tampering", "dns.nxdomain"),
    "dns_bogon": ("dns_tampering", "dns.bogon"),
    "dns_inconsistent": ("dns_tampering", "dns.inconsistent"),
    "tcp_reset": ("tcp_reset", "tcp.reset"),
    "tcp_refused": ("tcp_reset", "tcp.reset"),
    "tcp_blackhole": ("tcp_blackhole", "tcp.timeout"),
    "tls_reset": ("tls_interference", "tls.interference_sni"),
    "tls_timeout": ("tls_interference", "tls.interference_sni"),
    "tls_eof": ("tls_interference", "tls.interference_sni"),
    "tls_mitm_hostname": ("tls_mitm", "tls.mitm"),
    "tls_mitm_authority": ("tls_mitm", "tls.mitm"),
    "blockpage_pk": ("http_blockpage", "http.blockpage"),
    "blockpage_ir": ("http_blockpage", "http.blockpage"),
    "blockpage_header": ("http_blockpage", "http.blockpage"),
    "http_failure": ("http_interference", "http.failure"),
    "http_diff": ("http_interference", "http.diff"),
    "throttling": ("throttling", "throttling.slow_download"),
    "throttling_stalled": ("throttling", "throttling.stalled_transfer"),
    "unreachable": ("unreachable", "web.no_connectivity"),
    "unreachable_with_control": ("unreachable", "web.no_connectivity"),
    "down_dns": ("down", "site.down"),
    "down_tcp": ("down", "site.down"),
    "no_control_failure": ("unknown", "web.no_control"),
    "no_control_https_ok": ("ok", "web.no_control_https_ok"),
    "captcha": ("unknown", "http.lookalike"),
}
