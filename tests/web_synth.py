"""Synthetic but realistic-shaped data for the web tests: a Pakistani week with a social-media dip.

Rows go in through the store's own insert (with their verdicts, as ingest would give them), incidents through
save_incidents, so the pages and the API read exactly what detection would have written. Deterministic.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from observatory.incident import Assessment, Incident
from observatory.measurement import measurement_from_dict
from observatory.store.base import Row, Store

NETWORKS = {
    17557: ("Pakistan Telecommunication Company Limited", ["Punjab", "Sindh"]),
    45669: ("Mobilink-PK", ["Punjab", "Khyber Pakhtunkhwa"]),
    24499: ("Telenor Pakistan", ["Sindh", "Balochistan"]),
    59257: ("China Mobile Pak (Zong)", ["Punjab"]),
}
SOCIAL = ("twitter", "facebook", "instagram", "youtube")
PLATFORMS = (*SOCIAL, "whatsapp", "control")
URLS = {"twitter": "https://twitter.com/", "facebook": "https://www.facebook.com/",
        "instagram": "https://www.instagram.com/", "youtube": "https://www.youtube.com/",
        "whatsapp": "https://web.whatsapp.com/", "control": "https://www.wikipedia.org/"}


def doc(*, uid: str, t: datetime, cc: str, asn: int, network: str, region: str, probe: str, url: str) -> dict:
    return {
        "measurement_uid": uid, "measurement_start_time": t.strftime("%Y-%m-%d %H:%M:%S"),
        "probe_cc": cc, "probe_asn": f"AS{asn}", "probe_network_name": network,
        "test_name": "web_connectivity", "test_version": "0.5.28", "software_name": "observatory",
        "software_version": "0.1.0", "input": url, "report_id": f"r-{probe}",
        "annotations": {"region": region, "probe_id": probe}, "test_keys": {},
    }


def rows(*, start: datetime, end: datetime, dip: tuple[datetime, datetime] | None, cc: str = "PK",
         every: timedelta = timedelta(minutes=15), seed: int = 7) -> Iterator[Row]:
    """Two probes per network measure every platform every 15 minutes; during `dip` the social platforms
    fail with tls_interference 95% of the time; elsewhere 2% random failures."""
    rnd = random.Random(seed)
    t = start
    n = 0
    while t < end:
        in_dip = dip is not None and dip[0] <= t < dip[1]
        for asn, (network, regions) in NETWORKS.items():
            for p, region in enumerate(regions[:2] * (2 // len(regions[:2]))):
                probe = f"{cc}{asn}p{p}"
                for platform in PLATFORMS:
                    n += 1
                    m = measurement_from_dict(doc(uid=f"{cc}-{seed}-{n:09d}", t=t, cc=cc, asn=asn, network=network,
                                                  region=region, probe=probe, url=URLS[platform]))
                    if in_dip and platform in SOCIAL and rnd.random() < 0.95:
                        verdict = "tls_interference"
                    elif rnd.random() < 0.02:
                        verdict = rnd.choice(["tcp_reset", "down", "unknown"])
                    else:
                        verdict = "ok"
                    yield Row(measurement=m, verdict=verdict, kbps=None, source="observatory")
        t += every


def insert(store: Store, it: Iterator[Row], batch: int = 5000) -> int:
    buf: list[Row] = []
    total = 0
    for r in it:
        buf.append(r)
        if len(buf) >= batch:
            total += store.insert(buf).accepted
            buf.clear()
    if buf:
        total += store.insert(buf).accepted
    return total


def incident(*, id: str, start: datetime, end: datetime | None, status: str, cc: str = "PK",
             platforms: tuple[str, ...] = SOCIAL, kind: str = "platform_restriction") -> Incident:
    return Incident(
        id=id, country=cc, kind=kind, scope="national", asns=tuple(NETWORKS), regions=("Punjab", "Sindh"),
        platforms=platforms, techniques=("tls_interference",), start=start, end=end, status=status,
        confirmed_at=start + timedelta(minutes=10) if status != "suspected" else None, confidence=0.97,
        assessment=Assessment(deliberate=0.93, reasons=("every network at once", "control sites unaffected")),
        evidence={"networks_affected": 4, "probes_affected": 8},
    )


# The reference scene: measurements from 18 Jan 00:00 to 20 Jan 15:30 UTC, an earlier ended incident on
# 18 Jan and the 20 Jan one still going at the data's "now".
T_START = datetime(2024, 1, 18, tzinfo=UTC)
DIP_EARLIER = (datetime(2024, 1, 18, 15, 0, tzinfo=UTC), datetime(2024, 1, 18, 19, 0, tzinfo=UTC))
DIP_NOW = datetime(2024, 1, 20, 13, 45, tzinfo=UTC)
T_NOW = datetime(2024, 1, 20, 15, 30, tzinfo=UTC)
EARLIER_ID = "PK-20240118-1500-platform_restriction"
ONGOING_ID = "PK-20240120-1345-platform_restriction"


def pakistan_scene(store: Store) -> int:
    n = insert(store, rows(start=T_START, end=DIP_EARLIER[1], dip=DIP_EARLIER))
    n += insert(store, rows(start=DIP_EARLIER[1], end=T_NOW, dip=(DIP_NOW, T_NOW), seed=8))
    # A quiet neighbour, so the overview has a "normal" row to contrast with.
    n += insert(store, rows(start=T_NOW - timedelta(hours=30), end=T_NOW, dip=None, cc="IN", seed=9))
    store.save_incidents([
        incident(id=EARLIER_ID, start=DIP_EARLIER[0], end=DIP_EARLIER[1], status="ended"),
        incident(id=ONGOING_ID, start=DIP_NOW, end=None, status="confirmed"),
    ])
    store.refresh_rollup()
    return n
