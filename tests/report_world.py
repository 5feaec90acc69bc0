"""Test helpers for observatory.report: series cells generated from a known truth (which networks lose which
platforms when), the incident the detector finds in them, and incidents built directly with evidence of the
detector's own shape (the typed `Evidence`: no key the detector does not write), so tests can check wording
and charts against the data.

What the evidence does not hold (how many networks were measured, the control sites' reachability) the
reports count from the series; a test that wants those words passes the count, as `report/render.py` does."""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from observatory.detect import detect_incidents
from observatory.incident import Evidence, Incident, NetworkEvidence
from observatory.series import SeriesCell, Witness

PK_NETWORKS = {17557: "PTCL", 45669: "Mobilink-PK", 24499: "Telenor Pakistan", 59257: "Zong",
               9541: "Cyber Internet Services", 38193: "Nayatel"}
SOCIAL = ("twitter", "facebook", "instagram", "youtube")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def evidence(start: datetime, asns: Sequence[int] = tuple(PK_NETWORKS), platforms: Sequence[str] = SOCIAL,
             technique: str = "tls_interference", per_network: int = 100, anomalous: int = 95) -> Evidence:
    """Evidence as the detector writes it for a block of `platforms` by `technique` on `asns`, all from
    `start` (per network: `per_network` probe-observations, `anomalous` of them anomalous)."""
    rows = tuple(NetworkEvidence(asn=a, name=PK_NETWORKS.get(a, ""), onset=start, probe_observations=per_network,
                                 anomalous=anomalous, platforms=tuple(sorted(platforms)),
                                 techniques=(technique,) if technique else ())
                 for a in sorted(asns, key=lambda a: f"AS{a}"))
    bad = anomalous * len(rows)
    return Evidence(probes=3 * len(rows), networks=rows, series=len(rows) * len(platforms),
                    probe_observations=per_network * len(rows), anomalous=bad,
                    by_technique={technique: bad} if technique and bad else {},
                    affected_platforms=tuple(sorted(platforms)), countries=("PK",), example_measurements=())


def incident(**kw: Any) -> Incident:
    """A confirmed national TLS restriction of four social platforms in Pakistan on all 6 networks (override any
    field)."""
    start = kw.pop("start", utc(2024, 1, 20, 14, 5))
    d: dict[str, Any] = dict(
        id="PK-test", country="PK", kind="platform_restriction", scope="national", asns=tuple(PK_NETWORKS),
        regions=(), platforms=SOCIAL, techniques=("tls_interference",), start=start, end=None, status="confirmed",
        confirmed_at=start + timedelta(minutes=10), confidence=0.97,
    )
    d.update(kw)
    if "evidence" not in d:
        d["evidence"] = evidence(start, asns=d["asns"], platforms=d["platforms"],
                                 technique=d["techniques"][0] if d["techniques"] else "")
    return Incident(**d)


def detected(**kw: Any) -> Incident:
    """The one incident the detector finds in `cells(**kw)` (by default: the four social platforms blocked on
    every PK network from 14:05 to 17:10 on 20 January 2024, the control sites fine)."""
    start, end = utc(2024, 1, 20, 14, 5), utc(2024, 1, 20, 17, 10)
    kw.setdefault("start", start - timedelta(hours=6))
    kw.setdefault("end", end + timedelta(hours=3))
    kw.setdefault("blocked", [(start, end)])
    found = detect_incidents(cells(**kw))
    assert len(found) == 1, found
    return found[0]


def cells(*, start: datetime, end: datetime, blocked: Sequence[tuple[datetime, datetime]] = (),
          networks: dict[int, str] = PK_NETWORKS, blocked_asns: Sequence[int] | None = None,
          platforms: Sequence[str] = SOCIAL, block_share: float = 0.95, stagger: timedelta = timedelta(0),
          all_down: bool = False, seed: int = 1, bucket: timedelta = timedelta(minutes=5),
          technique: str = "tls_interference") -> list[SeriesCell]:
    """Series cells of PK from `start` to `end`: platforms fail on `blocked_asns` during each `blocked` span
    (each network's span shifted later by `stagger` times its index); with `all_down` the controls fail too.
    Each network has four probes ("p:<asn>:<i>"), of which each bucket's `n` measured every target; a failure
    is `technique`'s (the network's own noise too, as random failures would be some kind of failure)."""
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
                failed = [f"p:{asn}:{j}" for j in range(n) if rng.random() < (block_share if on else 0.02)]
                bad = len(failed)
                out.append(SeriesCell(bucket=t, country="PK", asn=asn, region=None, platform=p, total=n, ok=n - bad,
                                      anomalous=bad, probes=n, network_name=name, anomalous_probes=bad,
                                      by_technique={technique: bad} if bad else {}, anomalous_keys=tuple(failed),
                                      witnesses=tuple(Witness(technique, k) for k in failed)))
        t += bucket
    return out
