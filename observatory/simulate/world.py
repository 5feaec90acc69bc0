"""The simulated world: countries, networks, probes and the platforms' servers, drawn once from the seed.

Everything that stays fixed for a whole run lives here (a network's latency and bandwidth, how its censor
tampers with DNS, which block page it serves, a probe's region, clock skew and lifetime), so the generator's
hot loop only draws what varies per measurement. Addresses come from the documentation and benchmarking
ranges only: platform servers in 198.18.0.0/15, resolvers in 203.0.113.0/24 and 198.51.100.0/24.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field, replace
from datetime import datetime

from observatory import catalog
from observatory.simulate.blockpages import BlockPage, blockpages_for
from observatory.simulate.families import EVENING, SHAPES, Model
from observatory.simulate.scenario import Country, Network, Scenario

DEDICATED = "dedicated"
VOLUNTEER = "volunteer"
ACTIVITIES = (DEDICATED, VOLUNTEER)

# How a network's censor breaks things, when asked to: each network has its own style, as real ISPs do.
DNS_STYLES = ("nxdomain", "bogon", "loopback", "refused")
TLS_FAILURES = ("connection_reset", "connection_reset", "generic_timeout_error", "eof_error")
MITM_FAILURES = ("ssl_invalid_hostname", "ssl_unknown_authority")
BOGON_ANSWERS = ("10.10.34.35", "10.10.34.34", "192.168.100.1", "10.0.0.1")

# Relative activity per local hour (0-23): people measure more in the evening, less at night.
EVENING_WEIGHTS = EVENING
_MEAN_WEIGHT = sum(EVENING_WEIGHTS) / 24
# Dedicated mobile probes (phones) are off for part of the night.
MOBILE_ONLINE = tuple(min(1.0, 0.55 + 0.45 * w / 1.0) for w in EVENING_WEIGHTS)
VOLUNTEER_RUNS_PER_DAY = 3.0
# OONI has many more installations than we have probes, each running rarely.
VOLUNTEERS_PER_PROBE = 3


@dataclass(frozen=True, slots=True, kw_only=True)
class Target:
    """A platform's test URL and what its servers look like from an uncensored vantage."""

    platform: str
    url: str
    hostname: str
    ips: tuple[str, ...]
    cert_sha256: str
    title: str
    body: str
    download_bytes: int  # size of the bounded download (x_download)
    server_ms: float  # the server's own response time


@dataclass(frozen=True, slots=True, kw_only=True)
class NetworkProfile:
    index: int
    cc: str
    timezone: str
    network: Network
    rtt_ms: float  # typical round trip to the platforms' servers
    kbps: float  # typical download throughput
    resolver_ip: str
    dns_style: str
    bogon: str
    tls_failure: str
    mitm_failure: str
    blockpage: BlockPage
    flakiness: dict[str, float]  # platform -> multiplier of the noise failure rate

    @property
    def asn(self) -> int:
        return self.network.asn


@dataclass(frozen=True, slots=True, kw_only=True)
class Probe:
    index: int
    net: NetworkProfile
    region: str
    probe_id: str | None  # None for volunteer (OONI-like) probes: no stable identity
    joins: float  # UNIX time the installation appears
    leaves: float  # UNIX time it disappears
    offset: float  # seconds after each interval start when a dedicated probe runs
    skew: float  # clock skew in seconds, applied to the times the probe records
    rate: float  # volunteer: relative activity (runs per day = rate * VOLUNTEER_RUNS_PER_DAY)
    # drawn from a family Model (the defaults: the historical simulator)
    shape: tuple[float, ...] = EVENING_WEIGHTS  # activity per local hour
    zone_shift: int = 0  # hours between the country's clock and the one this installation lives by
    absences: tuple[tuple[float, float], ...] = ()  # UNIX (from, to): the probe is gone (churn)


@dataclass(frozen=True, slots=True)
class NetworkFault:
    """A correlated fault: for a while, a share of one network's measurements fail the same way."""

    start: float
    end: float
    outcome: str  # an observations outcome: noise_dns (the resolver) or a random noise outcome ("")
    share: float


@dataclass(frozen=True, slots=True, kw_only=True)
class World:
    scenario: Scenario
    activity: str
    targets: tuple[Target, ...]
    networks: tuple[NetworkProfile, ...]
    probes: tuple[Probe, ...]
    model: Model = Model()
    faults: dict[int, tuple[NetworkFault, ...]] = field(default_factory=dict)  # network index -> faults


def build_world(scenario: Scenario, activity: str = DEDICATED, model: Model | None = None) -> World:
    """The fixed part of the simulation, drawn deterministically from the scenario's seed (and the family
    model's own draws, from a separate stream: without a model the world is the historical one)."""
    if activity not in ACTIVITIES:
        raise ValueError(f"activity {activity!r}: choose one of {', '.join(ACTIVITIES)}")
    if not isinstance(scenario.start, datetime) or not isinstance(scenario.end, datetime):
        raise ValueError("the scenario has offsets: resolve it with Scenario.resolve(start) first")
    rng = random.Random(f"{scenario.seed}/world/{activity}")
    targets = tuple(_target(i, pid, rng) for i, pid in enumerate(scenario.targets))
    networks: list[NetworkProfile] = []
    for country in scenario.countries:
        pages = blockpages_for(country.code)
        for net in country.networks:
            networks.append(_network(len(networks), country, net, pages, scenario.targets, rng))
    start, end = scenario.start.timestamp(), scenario.end.timestamp()
    probes: list[Probe] = []
    for country in scenario.countries:
        profiles = [n for n in networks if n.cc == country.code]
        singles = _single_probe_networks(profiles) if activity == VOLUNTEER else set()
        for prof in profiles:
            if activity == VOLUNTEER:
                count = 1 if prof.asn in singles else prof.network.probes * VOLUNTEERS_PER_PROBE
            else:
                count = prof.network.probes
            for k in range(count):
                probes.append(_probe(len(probes), prof, k, activity, start, end, scenario, rng))
    world = World(
        scenario=scenario, activity=activity, targets=targets, networks=tuple(networks), probes=tuple(probes)
    )
    if model is None or model.is_default:
        return world
    return _apply_model(world, model, start, end)


def _apply_model(world: World, model: Model, start: float, end: float) -> World:
    """The world with the model's per-probe habits, absences and clocks, and its networks' faults."""
    rng = random.Random(f"{world.scenario.seed}/model/{world.activity}/{model.label}")
    probes = tuple(_modelled_probe(p, model, start, end, rng) for p in world.probes)
    days = (end - start) / 86400
    faults: dict[int, tuple[NetworkFault, ...]] = {}
    for n in world.networks:
        drawn = [
            _fault(start, end, rng, outcome, hours)
            for rate, outcome, hours in (
                (model.flaky_hour_rate, "", (1.0, 1.0)),
                (model.resolver_fault_rate, "noise_dns", (0.5, 3.0)),
            )
            for _ in range(_poisson(rate * days, rng))
        ]
        if drawn:
            faults[n.index] = tuple(sorted(drawn, key=lambda f: f.start))
    return replace(world, probes=probes, model=model, faults=faults)


def _modelled_probe(p: Probe, model: Model, start: float, end: float, rng: random.Random) -> Probe:
    shape = SHAPES[rng.choice(model.shapes)]
    shift = rng.choice((-3, -2, -1, 1, 2, 3)) if rng.random() < model.zone_shift_share else 0
    skew = rng.uniform(-model.skew_max_s, model.skew_max_s) if rng.random() < model.skew_share else p.skew
    absences = []
    t = start + rng.expovariate(model.absence_rate) * 86400 if model.absence_rate > 0 else end
    while t < end:
        length = rng.uniform(*model.absence_days) * 86400
        absences.append((t, t + length))
        t += length + rng.expovariate(model.absence_rate) * 86400
    rate = p.rate * model.runs_per_day / VOLUNTEER_RUNS_PER_DAY
    return replace(p, shape=shape, zone_shift=shift, skew=skew, absences=tuple(absences), rate=rate)


def _fault(start: float, end: float, rng: random.Random, outcome: str, hours: tuple[float, float]) -> NetworkFault:
    t = rng.uniform(start, end)
    return NetworkFault(t, t + rng.uniform(*hours) * 3600, outcome, rng.uniform(0.3, 0.8))


def _poisson(mean: float, rng: random.Random) -> int:
    """A Poisson draw (counts of rare events over a run) by adding exponential gaps."""
    n, t = 0, rng.expovariate(1.0) if mean > 0 else 1.0
    while t < mean:
        n += 1
        t += rng.expovariate(1.0)
    return n


def _target(i: int, platform: str, rng: random.Random) -> Target:
    p = catalog.get(platform)
    url = p.urls[0]
    host = catalog.hostname_of(url)
    n_ips = 1 + (i % 2)
    ips = tuple(f"198.18.{i + 1}.{10 + k}" for k in range(n_ips))
    title = p.name if not p.is_control else "Wikipedia"
    body = (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{title}</title></head>'
        f'<body><div id="root">{title}</div></body></html>'
    )
    return Target(
        platform=platform,
        url=url,
        hostname=host,
        ips=ips,
        cert_sha256=hashlib.sha256(f"cert:{host}".encode()).hexdigest(),
        title=title,
        body=body,
        download_bytes=rng.choice((262144, 524288, 1048576)),
        server_ms=rng.uniform(15, 60),
    )


def _network(
    index: int,
    country: Country,
    net: Network,
    pages: tuple[BlockPage, ...],
    targets: tuple[str, ...],
    rng: random.Random,
) -> NetworkProfile:
    mobile = net.is_mobile
    return NetworkProfile(
        index=index,
        cc=country.code,
        timezone=country.timezone,
        network=net,
        rtt_ms=rng.uniform(60, 160) if mobile else rng.uniform(15, 60),
        kbps=rng.uniform(10_000, 30_000) if mobile else rng.uniform(20_000, 90_000),
        resolver_ip=f"203.0.113.{1 + index % 254}" if index < 254 else f"198.51.100.{1 + index % 254}",
        dns_style=DNS_STYLES[index % len(DNS_STYLES)],
        bogon=rng.choice(BOGON_ANSWERS),
        tls_failure=TLS_FAILURES[index % len(TLS_FAILURES)],
        mitm_failure=MITM_FAILURES[index % len(MITM_FAILURES)],
        blockpage=pages[index % len(pages)],
        flakiness={t: rng.choice((0.3, 0.6, 1.0, 1.0, 1.5, 2.5)) for t in targets},
    )


def _single_probe_networks(nets: list[NetworkProfile]) -> set[int]:
    """Volunteer populations are uneven: in a country of 3+ networks, the smallest third has one probe."""
    if len(nets) < 3:
        return set()
    by_size = sorted(nets, key=lambda n: (n.network.probes, n.asn))
    return {n.asn for n in by_size[: len(nets) // 3]}


def _probe(
    index: int,
    net: NetworkProfile,
    k: int,
    activity: str,
    start: float,
    end: float,
    scenario: Scenario,
    rng: random.Random,
) -> Probe:
    span = end - start
    volunteer = activity == VOLUNTEER
    # Most probes are there from the start; some join later and some leave early (volunteers churn more).
    joins = start if rng.random() < (0.6 if volunteer else 0.85) else start + rng.uniform(0, 0.5) * span
    leaves = (
        end if rng.random() < (0.75 if volunteer else 0.92) else joins + rng.uniform(0.3, 1.0) * (end - joins)
    )
    regions = net.network.regions
    return Probe(
        index=index,
        net=net,
        region=regions[k % len(regions)] if k < len(regions) else rng.choice(regions),
        probe_id=None if volunteer else f"{rng.getrandbits(128):032x}",
        joins=joins,
        leaves=leaves,
        offset=rng.uniform(0, max(1.0, scenario.interval.total_seconds() * 0.5)),
        skew=rng.uniform(-5, 5),
        rate=rng.lognormvariate(0, 0.6) if volunteer else 1.0,
    )
