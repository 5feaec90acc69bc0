"""Synthetic stored rows for the store contract tests and benchmarks/store.py.

Dedicated probes (each with its own `annotations.probe_id`) measure every platform once per 15-minute cycle,
in a fixed 5-minute phase; a little noise; events make chosen measurements fail with a technique. The rows
carry their verdict directly (the store's job is to keep and aggregate verdicts, not to compute them), and a
compact web_connectivity document in the shape of docs/measurement-format.md as the stored raw JSON.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from observatory.measurement import Measurement
from observatory.store.base import Row

T0 = datetime(2024, 1, 15, tzinfo=UTC)
URLS = {
    "twitter": "https://x.com/",
    "facebook": "https://www.facebook.com/",
    "youtube": "https://www.youtube.com/",
    "whatsapp": "https://web.whatsapp.com/",
    "control": "https://www.wikipedia.org/",
}
_FIELDS = ("UID", "TIME", "CC", "ASN", "NET", "INPUT", "REGION", "PROBE", "TLSFAIL")


def _template() -> list[str]:
    """The document as text, split at its variable fields (joining is much cheaper than encoding JSON)."""
    doc = {
        "measurement_uid": "@UID@", "report_id": "@UID@", "data_format_version": "0.2.0",
        "test_name": "web_connectivity", "test_version": "0.4.3", "software_name": "observatory",
        "software_version": "0.1.0", "measurement_start_time": "@TIME@", "test_start_time": "@TIME@",
        "test_runtime": 1.23, "probe_cc": "@CC@", "probe_asn": "@ASN@", "probe_network_name": "@NET@",
        "resolver_asn": "@ASN@", "resolver_ip": "203.0.113.53", "input": "@INPUT@",
        "annotations": {"region": "@REGION@", "probe_id": "@PROBE@"},
        "test_keys": {
            "queries": [{"hostname": "example", "query_type": "A", "engine": "system", "resolver_address": "",
                         "failure": None, "answers": [{"answer_type": "A", "ipv4": "192.0.2.10"}],
                         "t0": 0.001, "t": 0.021}],
            "tcp_connect": [{"ip": "192.0.2.10", "port": 443,
                             "status": {"success": True, "failure": None, "blocked": False},
                             "t0": 0.022, "t": 0.061}],
            "tls_handshakes": [{"address": "192.0.2.10:443", "server_name": "example", "failure": "@TLSFAIL@",
                                "tls_version": "TLSv1.3", "cipher_suite": "TLS_AES_128_GCM_SHA256",
                                "negotiated_protocol": "h2",
                                "peer_certificates": [{"format": "sha256", "data": "9f" * 32}],
                                "t0": 0.062, "t": 0.140}],
            "requests": [{"request": {"url": "@INPUT@", "method": "GET", "headers": {"Accept": "*/*"}},
                          "response": {"code": 200, "headers": {"Content-Type": "text/html"},
                                       "body": "<!doctype html><title>ok</title>", "body_is_truncated": False},
                          "failure": None, "t0": 0.141, "t": 0.402}],
            "x_download": {"url": "@INPUT@", "bytes": 1048576, "seconds": 0.42, "failure": None},
            "control": {"dns": {"addrs": ["192.0.2.10"], "failure": None},
                        "http_request": {"status_code": 200, "body_length": 33, "title": "ok", "failure": None}},
        },
    }
    text = json.dumps(doc, separators=(",", ":")).replace('"@TLSFAIL@"', "@TLSFAIL@")
    parts: list[str] = []
    rest = text
    while "@" in rest:
        head, _, tail = rest.partition("@")
        name, _, rest = tail.partition("@")
        assert name in _FIELDS, name
        parts.extend([head, name])
    parts.append(rest)
    return parts


_PARTS = _template()


def document(values: dict[str, str]) -> bytes:
    return "".join(values[p] if i % 2 else p for i, p in enumerate(_PARTS)).encode()


@dataclass(frozen=True)
class Net:
    cc: str
    asn: int
    probes: int
    regions: tuple[str, ...] = ("North", "South")


@dataclass(frozen=True)
class Event:
    country: str
    start: datetime
    end: datetime
    platforms: tuple[str, ...] = ("twitter", "facebook")
    technique: str = "tls_interference"
    asns: tuple[int, ...] = ()
    coverage: float = 0.95


@dataclass
class World:
    nets: list[Net] = field(default_factory=lambda: [Net("PK", 17557, 12), Net("PK", 45669, 12),
                                                     Net("PK", 23674, 12)])
    start: datetime = T0
    cycles: int = 288  # 15-minute cycles (288 = 3 days)
    platforms: tuple[str, ...] = ("twitter", "facebook", "youtube", "control")
    noise: float = 0.02
    seed: int = 1
    events: list[Event] = field(default_factory=list)

    def size(self) -> int:
        return self.cycles * len(self.platforms) * sum(n.probes for n in self.nets)

    def rows(self, *, first_cycle: int = 0, last_cycle: int | None = None) -> Iterator[Row]:
        """Rows cycle by cycle (time order), so a prefix of the stream is the world up to some moment."""
        rng = random.Random(self.seed * 1_000_003 + first_cycle)
        last = self.cycles if last_cycle is None else last_cycle
        for cycle in range(first_cycle, last):
            for net in self.nets:
                for i in range(net.probes):
                    t = self.start + timedelta(minutes=15 * cycle + 5 * (i % 3), seconds=7 * (i % 40))
                    region = net.regions[i % len(net.regions)]
                    for platform in self.platforms:
                        yield self._row(rng, t, net, i, region, platform)

    def _row(self, rng: random.Random, t: datetime, net: Net, i: int, region: str, platform: str) -> Row:
        verdict = "ok"
        if rng.random() < self.noise:
            verdict = rng.choice(["tcp_blackhole", "tls_interference", "dns_tampering"])
        for e in self.events:
            if (e.country == net.cc and e.start <= t < e.end and platform in e.platforms
                    and (not e.asns or net.asn in e.asns) and rng.random() < e.coverage):
                verdict = e.technique
        kbps = round(20000.0 * (0.8 + 0.4 * rng.random()), 3) if verdict == "ok" else None
        stamp = t.strftime("%Y%m%dT%H%M%SZ")
        uid = f"{stamp}_webconnectivity_{net.cc}_{net.asn}_n1_{rng.getrandbits(64):016x}"
        probe = f"{net.cc.lower()}-{net.asn}-{i}"
        values = {"UID": uid, "TIME": t.strftime("%Y-%m-%d %H:%M:%S"), "CC": net.cc, "ASN": f"AS{net.asn}",
                  "NET": f"Network {net.asn}", "INPUT": URLS[platform], "REGION": region, "PROBE": probe,
                  "TLSFAIL": '"connection_reset"' if verdict == "tls_interference" else "null"}
        m = Measurement(
            uid=uid, start_time=t, probe_cc=net.cc, probe_asn=net.asn, network_name=f"Network {net.asn}",
            region=region, probe_key="p:" + probe, resolver_asn=net.asn, test_name="web_connectivity",
            test_version="0.4.3", software_name="observatory", input=URLS[platform], platform=platform,
            doc={}, raw_json=document(values),
        )
        return Row(measurement=m, verdict=verdict, kbps=kbps, source="observatory")


def pk_block_world(**kw: object) -> World:
    """Three days of Pakistan; on the third evening twitter and facebook are blocked by SNI for three hours."""
    start = T0 + timedelta(days=2, hours=13, minutes=45)
    return World(events=[Event("PK", start, start + timedelta(hours=3))], **kw)  # type: ignore[arg-type]
