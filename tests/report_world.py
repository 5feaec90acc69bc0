"""Test helpers for observatory.report: incidents built directly and series cells generated from a known truth
(which networks lose which platforms when), so tests can check wording and charts against the data."""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from observatory.incident import Incident
from observatory.series import SeriesCell

PK_NETWORKS = {17557: "PTCL", 45669: "Mobilink-PK", 24499: "Telenor Pakistan", 59257: "Zong",
               9541: "Cyber Internet Services", 38193: "Nayatel"}
SOCIAL = ("twitter", "facebook", "instagram", "youtube")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def incident(**kw: Any) -> Incident:
    """A confirmed national TLS restriction of four social platforms in Pakistan on all 6 networks (override any
    field)."""
    start = kw.pop("start", utc(2024, 1, 20, 14, 5))
    d: dict[str, Any] = dict(
        id="PK-test", country="PK", kind="platform_restriction", scope="national", asns=tuple(PK_NETWORKS),
        regions=(), platforms=SOCIAL, techniques=("tls_interference",), start=start, end=None, status="confirmed",
        confirmed_at=start + timedelta(minutes=10), confidence=0.97,
        evidence={"networks_measured": 6,
                  "networks": [{"asn": f"AS{a}", "name": n, "onset": start.strftime("%Y-%m-%dT%H:%M:%SZ")}
                               for a, n in PK_NETWORKS.items()]},
    )
    d.update(kw)
    return Incident(**d)


def cells(*, start: datetime, end: datetime, blocked: Sequence[tuple[datetime, datetime]] = (),
          networks: dict[int, str] = PK_NETWORKS, blocked_asns: Sequence[int] | None = None,
          platforms: Sequence[str] = SOCIAL, block_share: float = 0.95, stagger: timedelta = timedelta(0),
          all_down: bool = False, seed: int = 1, bucket: timedelta = timedelta(minutes=5)) -> list[SeriesCell]:
    """Series cells of PK from `start` to `end`: platforms fail on `blocked_asns` during each `blocked` span
    (each network's span shifted later by `stagger` times its index); with `all_down` the controls fail too."""
    rng = random.Random(seed)
    out = []
    t = start
    hit = set(networks if blocked_asns is None else blocked_asns)
    while t < end:
        for i, (asn, name) in enumerate(networks.items()):
            for p in (*platforms, "control"):
                n = rng.randint(2, 4)
                on = asn in hit and (p != "control" or all_down) and any(
                    a + stagger * i <= t < b + stagger * i for a, b in blocked)
                bad = sum(rng.random() < (block_share if on else 0.02) for _ in range(n))
                out.append(SeriesCell(bucket=t, country="PK", asn=asn, region=None, platform=p, total=n, ok=n - bad,
                                      anomalous=bad, probes=n, network_name=name))
        t += bucket
    return out
