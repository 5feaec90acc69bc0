"""Each censorship technique, played by real servers on loopback, shows up in the probe's measurement as
that technique's signature (docs/measurement-format.md), and the verdict rules name it."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from probe_net import (
    BLOCK_PAGE,
    PAGE_TITLE,
    LocalNet,
    UvicornThread,
    Zone,
    eof_on_data,
    http_handler,
    page,
    reset_on_data,
    stall,
)

from observatory.measurement import measurement_from_dict
from observatory.probe.helper import make_helper_app
from observatory.probe.metadata import ProbeMetadata
from observatory.probe.net import NetConfig, static_hosts
from observatory.probe.runner import HelperClient, Runner
from observatory.verdict import classify

HOST = "www.facebook.com"
IP = "198.18.1.10"
HTTPS = f"https://{HOST}/"
HTTP = f"http://{HOST}/"


class World:
    """The real site (TLS + plain HTTP), a clean resolver, the helper outside, and the censor's servers."""

    def __init__(self, tmp: Path) -> None:
        self.net = LocalNet()
        self.ca_file = self.net.write_ca(str(tmp / "ca.pem"))
        site = http_handler(page())
        self.https_ok = self.net.serve(site, tls=self.net.server_context([HOST]))
        self.http_ok = self.net.serve(site)
        self.clean_dns = self.net.dns(Zone({HOST: [IP]}))
        self.good = NetConfig(
            resolver=f"127.0.0.1:{self.clean_dns}", ca_file=self.ca_file,
            system_resolve=static_hosts({HOST: [IP]}),
            connect_map={f"{IP}:443": f"127.0.0.1:{self.https_ok}", f"{IP}:80": f"127.0.0.1:{self.http_ok}"},
            connect_timeout=1.0, tls_timeout=1.0, http_timeout=2.0, dns_timeout=1.0, download_seconds=1.5,
        )
        self.helper = UvicornThread(make_helper_app(self.good))

    def probe(self, **changes: Any) -> NetConfig:
        return replace(self.good, **changes)

    def measure(self, url: str, cfg: NetConfig, *, helper: bool = True) -> dict[str, Any]:
        async def go() -> dict[str, Any]:
            client = HelperClient(self.helper.url + "/") if helper else None
            runner = Runner(net=cfg, metadata=ProbeMetadata(cc="PK", asn=17557, region="Punjab"),
                            probe_id="test-probe", helper=client)
            try:
                return await runner.measure(url)
            finally:
                if client:
                    await client.aclose()

        return asyncio.run(go())

    def close(self) -> None:
        self.helper.stop()
        self.net.close()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    w = World(tmp_path_factory.mktemp("world"))
    yield w
    w.close()


def keys(doc: dict[str, Any]) -> dict[str, Any]:
    return doc["test_keys"]


def verdict_of(doc: dict[str, Any]) -> str:
    c = classify(measurement_from_dict(doc))
    if c.rule == "none":
        pytest.skip("the verdict rules have not landed yet (observatory.verdict.classify is a placeholder)")
    return c.verdict


def control_ok(doc: dict[str, Any]) -> None:
    ctl = keys(doc)["control"]
    assert ctl is not None, keys(doc)["control_failure"]
    assert ctl["dns"]["addrs"] == [IP]
    assert ctl["http_request"]["status_code"] == 200
    assert ctl["http_request"]["title"] == PAGE_TITLE


def test_ok(world: World) -> None:
    doc = world.measure(HTTPS, world.good)
    tk = keys(doc)
    assert [q["engine"] for q in tk["queries"]] == ["system", "udp"]
    assert all(q["failure"] is None and q["answers"][0]["ipv4"] == IP for q in tk["queries"])
    assert tk["tcp_connect"][0]["status"]["success"] is True
    hs = tk["tls_handshakes"][0]
    assert hs["failure"] is None and hs["server_name"] == HOST and len(hs["peer_certificates"][0]["data"]) == 64
    assert tk["requests"][0]["response"]["code"] == 200
    assert tk["x_download"]["failure"] is None and tk["x_download"]["bytes"] == len(page())
    control_ok(doc)
    assert verdict_of(doc) == "ok"


def test_dns_nxdomain(world: World) -> None:
    censor = world.net.dns(Zone({HOST: "NXDOMAIN"}))
    cfg = world.probe(resolver=f"127.0.0.1:{censor}", system_resolve=static_hosts({}))
    doc = world.measure(HTTPS, cfg)
    tk = keys(doc)
    assert [q["failure"] for q in tk["queries"]] == ["dns_nxdomain_error", "dns_nxdomain_error"]
    assert tk["tcp_connect"] == [{"ip": IP, "port": 443, "status": {"success": True, "failure": None,
                                                                    "blocked": False},
                                  "t": tk["tcp_connect"][0]["t"], "t0": tk["tcp_connect"][0]["t0"]}]
    assert tk["requests"][0]["failure"] == "dns_nxdomain_error"
    control_ok(doc)
    assert verdict_of(doc) == "dns_tampering"


def test_dns_bogon(world: World) -> None:
    censor = world.net.dns(Zone({HOST: ["10.10.34.35"]}))
    cfg = world.probe(resolver=f"127.0.0.1:{censor}", system_resolve=static_hosts({HOST: ["10.10.34.35"]}),
                      connect_map={**world.good.connect_map, "10.10.34.35:443": f"127.0.0.1:{world.net.closed_port()}"})
    doc = world.measure(HTTPS, cfg)
    tk = keys(doc)
    assert tk["queries"][1]["answers"][0]["ipv4"] == "10.10.34.35"
    assert tk["tcp_connect"][0]["status"]["failure"] == "connection_refused"
    control_ok(doc)
    assert verdict_of(doc) == "dns_tampering"


def test_tcp_refused(world: World) -> None:
    cfg = world.probe(connect_map={f"{IP}:443": f"127.0.0.1:{world.net.closed_port()}"})
    doc = world.measure(HTTPS, cfg)
    tk = keys(doc)
    assert tk["queries"][0]["failure"] is None
    assert tk["tcp_connect"][0]["status"] == {"success": False, "failure": "connection_refused", "blocked": True}
    assert tk["tls_handshakes"] == []
    assert tk["requests"][0]["failure"] == "connection_refused"
    control_ok(doc)
    assert verdict_of(doc) == "tcp_reset"


def test_tcp_blackhole(world: World) -> None:
    cfg = world.probe(connect_map={f"{IP}:443": f"127.0.0.1:{world.net.blackhole()}"})
    doc = world.measure(HTTPS, cfg)
    tk = keys(doc)
    assert tk["tcp_connect"][0]["status"]["failure"] == "generic_timeout_error"
    assert 0.9 <= tk["tcp_connect"][0]["t"] - tk["tcp_connect"][0]["t0"] < 5  # the 1 s connect timeout
    control_ok(doc)
    assert verdict_of(doc) == "tcp_blackhole"


@pytest.mark.parametrize(("handler", "failure"), [
    (reset_on_data, "connection_reset"), (eof_on_data, "eof_error"), (stall, "generic_timeout_error"),
])
def test_tls_interference(world: World, handler: Any, failure: str) -> None:
    cfg = world.probe(connect_map={f"{IP}:443": f"127.0.0.1:{world.net.serve(handler)}"})
    doc = world.measure(HTTPS, cfg)
    tk = keys(doc)
    assert tk["tcp_connect"][0]["status"]["success"] is True
    assert tk["tls_handshakes"][0]["failure"] == failure
    assert tk["requests"][0]["failure"] == failure
    control_ok(doc)
    assert verdict_of(doc) == "tls_interference"


def test_tls_mitm_unknown_authority(world: World) -> None:
    rogue = world.net.serve(http_handler(BLOCK_PAGE), tls=world.net.server_context([HOST], ca=world.net.rogue_ca))
    doc = world.measure(HTTPS, world.probe(connect_map={f"{IP}:443": f"127.0.0.1:{rogue}"}))
    tk = keys(doc)
    hs = tk["tls_handshakes"][0]
    assert hs["failure"] == "ssl_unknown_authority"
    assert hs["tls_version"] and len(hs["peer_certificates"][0]["data"]) == 64  # the MITM's cert, recorded
    assert tk["requests"][0]["failure"] == "ssl_unknown_authority"
    control_ok(doc)
    assert verdict_of(doc) == "tls_mitm"


def test_tls_mitm_invalid_hostname(world: World) -> None:
    wrong = world.net.serve(http_handler(page()), tls=world.net.server_context(["blocked.example.net"]))
    doc = world.measure(HTTPS, world.probe(connect_map={f"{IP}:443": f"127.0.0.1:{wrong}"}))
    tk = keys(doc)
    assert tk["tls_handshakes"][0]["failure"] == "ssl_invalid_hostname"
    assert tk["tls_handshakes"][0]["peer_certificates"]
    control_ok(doc)
    assert verdict_of(doc) == "tls_mitm"


def test_http_blockpage(world: World) -> None:
    blocker = world.net.serve(http_handler(BLOCK_PAGE))
    doc = world.measure(HTTP, world.probe(connect_map={f"{IP}:80": f"127.0.0.1:{blocker}"}))
    tk = keys(doc)
    assert tk["tcp_connect"][0]["status"]["success"] is True
    assert tk["tls_handshakes"] == []
    resp = tk["requests"][0]["response"]
    assert resp["code"] == 200 and "Surf Safely" in resp["body"]
    control_ok(doc)
    assert verdict_of(doc) == "http_blockpage"


def test_http_reset_after_request(world: World) -> None:
    doc = world.measure(HTTP, world.probe(connect_map={f"{IP}:80": f"127.0.0.1:{world.net.serve(reset_on_data)}"}))
    tk = keys(doc)
    assert tk["tcp_connect"][0]["status"]["success"] is True
    assert tk["requests"][0]["failure"] == "connection_reset"
    control_ok(doc)
    assert verdict_of(doc) == "http_interference"


def test_throttling(world: World) -> None:
    # ~80 kbit/s: the page loads (slowly) within the HTTP timeout; the control downloads at loopback speed
    slow = world.net.serve(http_handler(page(24 * 1024), trickle=512, trickle_every=0.05),
                           tls=world.net.server_context([HOST]))
    doc = world.measure(HTTPS, world.probe(connect_map={f"{IP}:443": f"127.0.0.1:{slow}"}, http_timeout=5.0))
    tk = keys(doc)
    assert tk["tls_handshakes"][0]["failure"] is None
    assert tk["requests"][0]["response"]["code"] == 200
    probe_dl, control_dl = tk["x_download"], tk["control"]["x_download"]
    assert probe_dl["failure"] is None and probe_dl["bytes"] > 0
    probe_kbps = probe_dl["bytes"] * 8 / probe_dl["seconds"] / 1000
    control_kbps = control_dl["bytes"] * 8 / control_dl["seconds"] / 1000
    assert probe_kbps * 10 <= control_kbps, (probe_kbps, control_kbps)
    assert verdict_of(doc) == "throttling"


def test_unreachable(world: World) -> None:
    silent = world.net.dns(Zone({HOST: "STALL"}))
    hole = world.net.blackhole()
    cfg = world.probe(resolver=f"127.0.0.1:{silent}", system_resolve=static_hosts({}, timeout=True),
                      connect_map={f"{IP}:443": f"127.0.0.1:{hole}"})
    doc = world.measure(HTTPS, cfg)
    tk = keys(doc)
    assert [q["failure"] for q in tk["queries"]] == ["generic_timeout_error"] * 2
    assert all(not t["status"]["success"] for t in tk["tcp_connect"])  # the control's address, tried too
    assert tk["requests"][0]["failure"] == "generic_timeout_error"
    control_ok(doc)
    assert verdict_of(doc) == "unreachable"


def test_without_helper_the_probe_still_measures(world: World) -> None:
    doc = world.measure(HTTPS, world.good, helper=False)
    tk = keys(doc)
    assert tk["control"] is None and tk["x_control_unavailable"] is True and tk["control_failure"]
    assert tk["requests"][0]["response"]["code"] == 200


def test_unreachable_helper_is_a_control_failure(world: World) -> None:
    async def go() -> dict[str, Any]:
        client = HelperClient(f"http://127.0.0.1:{world.net.closed_port()}/", timeout=2)
        runner = Runner(net=world.good, metadata=ProbeMetadata(cc="PK", asn=17557), probe_id="p", helper=client)
        try:
            return await runner.measure(HTTPS)
        finally:
            await client.aclose()

    tk = keys(asyncio.run(go()))
    assert tk["control"] is None and tk["x_control_unavailable"] is True
    assert tk["control_failure"] == "connection_refused"


def test_redirect_followed(world: World) -> None:
    hop = world.net.serve(http_handler(b"", status="301 Moved Permanently", headers={"Location": HTTPS}))
    doc = world.measure(HTTP, world.probe(connect_map={**world.good.connect_map, f"{IP}:80": f"127.0.0.1:{hop}"}))
    reqs = keys(doc)["requests"]
    assert [r["request"]["url"] for r in reqs] == [HTTPS, HTTP]  # OONI order: last hop first
    assert [r["response"]["code"] for r in reqs] == [200, 301]
    assert keys(doc)["x_download"]["url"] == HTTPS


def test_body_capped(world: World) -> None:
    big = world.net.serve(http_handler(page(400 * 1024)), tls=world.net.server_context([HOST]))
    doc = world.measure(HTTPS, world.probe(connect_map={f"{IP}:443": f"127.0.0.1:{big}"}))
    resp = keys(doc)["requests"][0]["response"]
    assert resp["body_is_truncated"] is True and len(resp["body"]) == 128 * 1024
    assert keys(doc)["x_download"]["bytes"] == 400 * 1024


def test_no_probe_address_anywhere(world: World) -> None:
    doc = world.measure(HTTPS, world.good)
    assert "probe_ip" not in doc and "probe_city" not in doc
    import json

    text = json.dumps(doc)
    assert "x_client_address" not in text
    assert "127.0.0.1\"" not in text.replace(world.helper.url, "")  # the helper saw 127.0.0.1; never recorded


def test_ooni_base_and_web_connectivity_fields(world: World) -> None:
    """df-000-base's envelope (minus probe_ip, which we never write) and ts-017's test keys, in their formats."""
    import re

    doc = world.measure(HTTPS, world.good)
    base = {"annotations": dict, "data_format_version": str, "input": str, "measurement_start_time": str,
            "probe_asn": str, "probe_cc": str, "report_id": str, "software_name": str, "software_version": str,
            "test_keys": dict, "test_name": str, "test_runtime": float, "test_start_time": str,
            "test_version": str, "measurement_uid": str, "resolver_asn": str, "resolver_ip": str,
            "resolver_network_name": str, "probe_network_name": str}
    for key, kind in base.items():
        assert isinstance(doc[key], kind), key
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", doc["measurement_start_time"])
    assert re.fullmatch(r"AS\d+", doc["probe_asn"]) and re.fullmatch(r"[A-Z]{2}", doc["probe_cc"])
    assert re.fullmatch(r"\d{8}T\d{6}Z_webconnectivity_PK_17557_n1_[0-9a-f]{16}", doc["report_id"])
    assert (doc["test_name"], doc["test_version"], doc["data_format_version"]) == ("web_connectivity", "0.4.3",
                                                                                 "0.2.0")
    tk = keys(doc)
    for key in ("client_resolver", "queries", "tcp_connect", "tls_handshakes", "requests", "control",
                "control_failure", "dns_experiment_failure", "http_experiment_failure", "blocking", "accessible",
                "x_download"):
        assert key in tk, key
    for step in tk["queries"] + tk["tcp_connect"] + tk["tls_handshakes"] + tk["requests"]:
        assert 0 <= step["t0"] <= step["t"] <= doc["test_runtime"] + 0.01
    assert tk["queries"][0]["answers"][0] == {"answer_type": "A", "ipv4": IP}
    # the typed model of the verdict rules reads it
    wc = measurement_from_dict(doc).web_connectivity()
    assert wc.control is not None and wc.x_download is not None and wc.x_download.kbps


def test_helper_answers_ooni_shape_and_refuses_bad_requests(world: World) -> None:
    import httpx

    url = world.helper.url + "/"
    r = httpx.post(url, json={"http_request": HTTPS, "tcp_connect": [f"{IP}:443", "192.0.2.1:22"]}, timeout=20)
    assert r.status_code == 200
    body = r.json()
    assert set(body) >= {"dns", "tcp_connect", "tls_handshake", "http_request", "x_download", "x_client_address"}
    assert list(body["tcp_connect"]) == [f"{IP}:443"]  # other ports are not the helper's business
    assert body["tls_handshake"][f"{IP}:443"]["status"] is True
    for bad in (b"{", b'{"http_request": 5}', b'{"http_request": "ftp://x/"}',
                b'{"http_request": "https://x/", "tcp_connect": ["nonsense"]}'):
        r = httpx.post(url, content=bad, timeout=10)
        assert r.status_code == 400 and r.json()["error"], bad


def test_down_everywhere(world: World) -> None:
    """The site itself is down: the probe and the control fail alike."""
    dead = {f"{IP}:443": f"127.0.0.1:{world.net.closed_port()}"}
    helper = UvicornThread(make_helper_app(world.probe(connect_map=dead)))
    try:
        async def go() -> dict[str, Any]:
            client = HelperClient(helper.url + "/")
            runner = Runner(net=world.probe(connect_map=dead), metadata=ProbeMetadata(cc="PK", asn=17557),
                            probe_id="p", helper=client)
            try:
                return await runner.measure(HTTPS)
            finally:
                await client.aclose()

        doc = asyncio.run(go())
    finally:
        helper.stop()
    tk = keys(doc)
    assert tk["tcp_connect"][0]["status"] == {"success": False, "failure": "connection_refused", "blocked": False}
    assert tk["control"]["tcp_connect"][f"{IP}:443"] == {"status": False, "failure": "connection_refused"}
    assert tk["control"]["http_request"]["failure"] == "connection_refused"
    assert verdict_of(doc) == "down"
