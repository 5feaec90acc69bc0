"""Outside-in signals as IODA would see the simulated world: the country and each region, from its ground truth.

Active probing ("ping-slash24", every 10 minutes; per country, region and network, as IODA's entities) counts
the /24 blocks that answer; each (network, region)
cell holds some blocks, each answering with a probability that dips at local night (home routers and phones
off), so the count is binomial: a region with few blocks gives a small, noisy series, as IODA's sparse regions
do. BGP ("bgp", every 5 minutes, country only) counts visible prefixes: it falls only when a whole network is
withdrawn, never for a regional cut (the routes stay announced) nor a platform restriction.

A connectivity loss silences the blocks of the cells it covers, so a series drops by the share of its address
space that is cut (one network cut: the country series by that network's share). Platform restrictions and
throttling leave every series as it is: outside-in probing cannot see them.

PURE: `outside_signals(scenario, model)` returns points; writing them to a store is the caller's business.
"""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from observatory.signals import SignalPoint
from observatory.simulate.families import Model
from observatory.simulate.scenario import Country, Event, Scenario
from observatory.vocab import IncidentKind

SOURCE = "ioda"
ACTIVE_STEP = timedelta(minutes=10)
BGP_STEP = timedelta(minutes=5)
# /24 blocks per probe of a network, spread over its regions; "noisy" worlds have sparse address space
BLOCKS_PER_PROBE = {"present": 60.0, "noisy": 4.0}
PREFIXES_PER_PROBE = 20.0


def outside_signals(scenario: Scenario, model: Model) -> list[SignalPoint]:
    """Every series of every country, or nothing in a world drawn without signals."""
    if model.signals not in BLOCKS_PER_PROBE:
        return []
    rng = random.Random(f"{scenario.seed}/signals")
    out: list[SignalPoint] = []
    for country in scenario.countries:
        out += _active_probing(scenario, country, BLOCKS_PER_PROBE[model.signals], rng)
        out += _bgp(scenario, country, rng)
    return out


def _cells(country: Country, blocks_per_probe: float, rng: random.Random) -> dict[tuple[int, str], int]:
    """(asn, region) -> /24 blocks; a network's address space is split unevenly over its regions."""
    cells: dict[tuple[int, str], int] = {}
    for n in country.networks:
        for region in n.regions:
            share = rng.uniform(0.5, 1.5) / len(n.regions)
            cells[(n.asn, region)] = max(3, round(blocks_per_probe * n.probes * share))
    return cells


def _cut(events: list[Event], cc: str, asn: int, region: str | None, t: datetime) -> bool:
    """Whether a connectivity loss covers this network (and region, None: any of it) at t."""
    for e in events:
        assert isinstance(e.start, datetime) and isinstance(e.end, datetime)
        if e.country != cc or not e.start <= t < e.end:
            continue
        if e.asns and asn not in e.asns:
            continue
        if region is not None and e.regions and region not in e.regions:
            continue
        if region is None and e.regions:
            continue  # BGP: a regional cut leaves the network's routes announced
        return True
    return False


def _losses(scenario: Scenario) -> list[Event]:
    return [e for e in scenario.events if e.kind == IncidentKind.CONNECTIVITY_LOSS]


def _times(scenario: Scenario, step: timedelta) -> list[datetime]:
    assert isinstance(scenario.start, datetime) and isinstance(scenario.end, datetime)
    t, out = scenario.start.astimezone(UTC), []
    while t < scenario.end:
        out.append(t)
        t += step
    return out


def _answer_rate(local_hour: float) -> float:
    """Share of a block's addresses up at a local hour: lowest before dawn (devices off, lines idle)."""
    return 0.85 - 0.1 * math.cos(2 * math.pi * (local_hour - 16) / 24)


def _active_probing(scenario: Scenario, country: Country, blocks_per_probe: float,
                    rng: random.Random) -> list[SignalPoint]:
    cells = _cells(country, blocks_per_probe, rng)
    zone, losses = ZoneInfo(country.timezone), _losses(scenario)
    out: list[SignalPoint] = []
    for t in _times(scenario, ACTIVE_STEP):
        local = t.astimezone(zone)
        rate = _answer_rate(local.hour + local.minute / 60)
        by_region: dict[str, float] = {}
        by_asn: dict[int, float] = {}
        for (asn, region), blocks in cells.items():
            up = 0 if _cut(losses, country.code, asn, region, t) else _binomial(blocks, rate, rng)
            by_region[region] = by_region.get(region, 0.0) + up
            by_asn[asn] = by_asn.get(asn, 0.0) + up
        out += [SignalPoint(time=t, country=country.code, region=r, asn=None, signal="ping-slash24",
                            source=SOURCE, value=v) for r, v in sorted(by_region.items())]
        out += [SignalPoint(time=t, country=country.code, region=None, asn=a, signal="ping-slash24",
                            source=SOURCE, value=v) for a, v in sorted(by_asn.items())]
        out.append(SignalPoint(time=t, country=country.code, region=None, asn=None, signal="ping-slash24",
                               source=SOURCE, value=sum(by_region.values())))
    return out


def _bgp(scenario: Scenario, country: Country, rng: random.Random) -> list[SignalPoint]:
    prefixes = {n.asn: max(2, round(PREFIXES_PER_PROBE * n.probes)) for n in country.networks}
    losses = _losses(scenario)
    out = []
    for t in _times(scenario, BGP_STEP):
        seen = sum(_binomial(p, 0.995, rng) for asn, p in prefixes.items()
                   if not _cut(losses, country.code, asn, None, t))
        out.append(SignalPoint(time=t, country=country.code, region=None, asn=None, signal="bgp", source=SOURCE,
                               value=float(seen)))
    return out


def _binomial(n: int, p: float, rng: random.Random) -> int:
    """A binomial draw: exact for the small counts of sparse regions, normal beyond them (speed)."""
    if n <= 30:
        return sum(rng.random() < p for _ in range(n))
    return max(0, min(n, round(rng.gauss(n * p, math.sqrt(n * p * (1 - p))))))
