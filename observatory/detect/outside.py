"""Connectivity loss seen from outside: drops in outside-in signals, and their fusion with the probes' view.

PURE. Each signal series (source, signal, country, region, network) is compared with its own baseline: the
median of the same time of day on earlier days when there are at least two such days, else of all recent
history (so a series that starts only days before an event still works). Points far below it (a fraction per
signal kind, after IODA's per-source thresholds) form outages; outages of one country that overlap in time
are one `connectivity_loss` incident, whose scope comes from which series dropped: every region (or, measured
without regions, a country-wide series or every network) -> national; some regions, or some of a network's
regions (series per network in a region) -> regional; whole networks -> network.

Confirmation needs agreeing independent evidence: two different signals, or one signal that stays down for
`min_points_alone` consecutive points. Platform restrictions are never produced here: outside-in signals
cannot see a platform block, so a country whose signals stay normal keeps its restriction a restriction.
"""

from __future__ import annotations

import bisect
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from observatory.detect.incidents import incident_id
from observatory.incident import Assessment, Evidence, Incident, SignalEvidence
from observatory.signals import SignalPoint, is_level
from observatory.vocab import IncidentKind, Scope, Status

# Fraction of the baseline below which a point is an outage, per signal kind (IODA: BGP is stable, so a small
# drop matters; telescope counts are noisy, so only a deep one does).
DROP_FRACTION = {"bgp": 0.8, "active_probing": 0.5, "ping-slash24": 0.5, "telescope": 0.25, "merit-nt": 0.25,
                 "ucsd-nt": 0.25, "probe_heartbeats": 0.4}


# Series that count things (IODA's prefixes, /24 blocks, telescope sources) when published raw (whole numbers;
# IODA's normalized exports and our pinger's shares are not counts): their chance variation is at least that
# of a count, so a small series (a sparse region's few blocks) dips by half by chance every day, while a large
# one never does. A drop in them is evidence only once its deficit is improbable as a count's variation.
COUNTS = frozenset({"bgp", "ping-slash24", "telescope", "merit-nt", "ucsd-nt"})


def drop_fraction(signal: str, default: float) -> float:
    """The signal's own threshold; a sub-series (IODA's `gtr.WEB_SEARCH`) takes its datasource's."""
    return DROP_FRACTION.get(signal, DROP_FRACTION.get(signal.split(".", 1)[0], default))


@dataclass(frozen=True, slots=True, kw_only=True)
class SignalConfig:
    history: timedelta = timedelta(days=7)
    min_history_points: int = 4
    # a whole day must be seen before a drop is judged: with less, a deep daily cycle (Google traffic at night
    # is a fifth of its day) has no same-time baseline and its evening looks like an outage
    min_history_span: timedelta = timedelta(hours=24)
    min_baseline: float = 1e-9
    default_drop: float = 0.5
    recover: float = 0.8  # back above this share of the baseline ends an outage
    min_points_alone: int = 2
    # a count series' outage is evidence once its accumulated deficit is this many standard deviations of a
    # count (Poisson: variance = mean) below its baselines: a series of thousands is sure at once, a region of
    # five blocks after about an hour of silence
    min_count_z: float = 5.0
    merge_gap: timedelta = timedelta(minutes=30)
    tod_tolerance: timedelta = timedelta(minutes=45)


@dataclass(slots=True)
class Outage:
    key: tuple[str, str, str, str, int]  # source, signal, country, region, asn
    start: datetime
    end: datetime | None
    points: list[tuple[datetime, float, float]] = field(default_factory=list)  # time, value, baseline
    counts: bool = False  # a raw count series (see COUNTS): judged against a count's chance variation

    @property
    def country(self) -> str:
        return self.key[2]

    @property
    def region(self) -> str:
        return self.key[3]

    @property
    def asn(self) -> int:
        return self.key[4]

    @property
    def depth(self) -> float:
        return min(v / b for _, v, b in self.points) if self.points else 1.0

    def confirmed_alone_at(self, n: int) -> datetime | None:
        return self.points[n - 1][0] if len(self.points) >= n else None

    def significant_at(self, z_min: float) -> datetime | None:
        """The first point by which the drop is beyond a count's chance variation (at once for series that
        are not counts): sum(baseline - value) >= z_min * sqrt(sum(baseline))."""
        if not self.counts:
            return self.points[0][0] if self.points else None
        deficit = expected = 0.0
        for t, v, b in self.points:
            deficit += b - v
            expected += b
            if deficit >= z_min * expected ** 0.5:
                return t
        return None

    def evidence_at(self, cfg: SignalConfig) -> datetime | None:
        """When this series alone confirms: down for `min_points_alone` points and beyond chance."""
        n, sig = self.confirmed_alone_at(cfg.min_points_alone), self.significant_at(cfg.min_count_z)
        return None if n is None or sig is None else max(n, sig)


class _History:
    """A series' past values, indexed by time of day, so each baseline costs a few dozen look-ups, not a scan."""

    def __init__(self, cfg: SignalConfig) -> None:
        self.cfg = cfg
        self.times: list[datetime] = []
        self.values: list[float] = []
        self.slot_seconds = max(60, int(cfg.tod_tolerance.total_seconds()))
        self.by_slot: dict[int, list[tuple[datetime, float]]] = defaultdict(list)

    def _slot(self, t: datetime) -> int:
        return (t.hour * 3600 + t.minute * 60 + t.second) // self.slot_seconds

    def add(self, t: datetime, v: float) -> None:
        self.times.append(t)
        self.values.append(v)
        self.by_slot[self._slot(t)].append((t, v))

    def baseline(self, t: datetime) -> float | None:
        """Median of the same time of day on earlier days when there is one, else of all recent history."""
        cfg = self.cfg
        first = bisect.bisect_left(self.times, t - cfg.history)
        n = len(self.times) - first
        if n < cfg.min_history_points or t - self.times[first] < cfg.min_history_span:
            return None
        slots = 86400 // self.slot_seconds + 1
        here = self._slot(t)
        same_time = [v for s in (here - 1, here, here + 1) for u, v in self.by_slot.get(s % slots, ())
                     if t - cfg.history <= u and t - u >= timedelta(hours=12)
                     and _tod_distance(u, t) <= cfg.tod_tolerance]
        if same_time:
            return statistics.median(same_time)
        return statistics.median(self.values[max(first, len(self.values) - 2000):])


def _tod_distance(a: datetime, b: datetime) -> timedelta:
    sa = a.hour * 3600 + a.minute * 60 + a.second
    sb = b.hour * 3600 + b.minute * 60 + b.second
    d = abs(sa - sb)
    return timedelta(seconds=min(d, 86400 - d))


def series_outages(points: Iterable[SignalPoint], cfg: SignalConfig = SignalConfig()) -> list[Outage]:
    """Outages of every series; a point judged anomalous is replaced by its baseline in the history
    (IODA's inpainting), so a long outage does not drag its own baseline down."""
    by_key: dict[tuple[str, str, str, str, int], list[SignalPoint]] = defaultdict(list)
    for p in points:
        by_key[p.key].append(p)
    out: list[Outage] = []
    for key, pts in sorted(by_key.items()):
        if not is_level(key[1]):
            continue
        pts.sort(key=lambda p: p.time)
        drop = drop_fraction(key[1], cfg.default_drop)
        counts = key[1].split(".", 1)[0] in COUNTS and all(p.value == int(p.value) for p in pts)
        history = _History(cfg)
        current: Outage | None = None
        for p in pts:
            base = history.baseline(p.time)
            if base is None or base <= cfg.min_baseline:
                history.add(p.time, p.value)
                continue
            ratio = p.value / base
            if current is None and ratio < drop:
                current = Outage(key=key, start=p.time, end=None, counts=counts)
            if current is not None:
                if ratio >= max(cfg.recover, drop):
                    current.end = p.time
                    out.append(current)
                    current = None
                    history.add(p.time, p.value)
                    continue
                current.points.append((p.time, p.value, base))
                history.add(p.time, base)
            else:
                history.add(p.time, p.value)
        if current is not None:
            out.append(current)
    return out


@dataclass(slots=True)
class _Group:
    country: str
    outages: list[Outage]

    @property
    def start(self) -> datetime:
        return min(o.start for o in self.outages)

    @property
    def end(self) -> datetime | None:
        ends = [o.end for o in self.outages]
        return None if any(e is None for e in ends) else max(e for e in ends if e is not None)


def _group(outages: list[Outage], cfg: SignalConfig) -> list[_Group]:
    groups: list[_Group] = []
    for o in sorted(outages, key=lambda o: (o.country, o.start)):
        last = groups[-1] if groups and groups[-1].country == o.country else None
        if last is not None and (last.end is None or o.start <= last.end + cfg.merge_gap):
            last.outages.append(o)
        else:
            groups.append(_Group(o.country, [o]))
    return groups


@dataclass(slots=True)
class _Measured:
    """What a country's series cover: regions, networks, and (region, network) cells."""

    regions: set[str] = field(default_factory=set)
    asns: set[int] = field(default_factory=set)
    cells: set[tuple[str, int]] = field(default_factory=set)
    networks: set[int] = field(default_factory=set)  # networks with a country-wide series of their own


def _scope(g: _Group, measured: dict[str, _Measured]) -> tuple[str, list[str], list[int]]:
    """National when every region dropped (its own series, or all of its network-in-region cells), or, for a
    country measured without regions, when its country-wide series or every network did. A country-wide
    drop alone does not make a shutdown national where region series show some regions still answering:
    a country-wide count such as the probes' heartbeats falls with the share of probes that sit in the cut
    regions. Regional when some regions dropped, or networks lost some of their regions; else network."""
    known = measured.get(g.country, _Measured())
    country_out = any(not o.region and not o.asn for o in g.outages)
    region_out = {o.region for o in g.outages if o.region and not o.asn}
    asn_out = {o.asn for o in g.outages if o.asn and not o.region}
    cells_out = {(o.region, o.asn) for o in g.outages if o.region and o.asn}
    regions = sorted(region_out | {r for r, _ in cells_out})
    asns = sorted(asn_out | {a for _, a in cells_out})
    if known.regions:
        whole = {r for r in known.regions if known.cells and {c for c in known.cells if c[0] == r} <= cells_out}
        national = (region_out | whole) >= known.regions
    else:
        national = country_out or bool(known.asns and asn_out >= known.asns)
    # a network whose own country-wide series kept answering contradicts a national cut: every region then
    # fell by the share of the networks that were cut (one big network down everywhere is that network's)
    networks_up = known.networks - asn_out
    if national and networks_up and known.regions:
        return (Scope.NETWORK if asn_out else Scope.REGIONAL), regions, asns
    if national:
        return Scope.NATIONAL, regions, asns
    # a network whose own country-wide series dropped while others kept answering is down in each of its
    # regions: a region series that fell with it fell by that network's share (its footprint), not a second,
    # regional event
    if asn_out and networks_up:
        return Scope.NETWORK, regions, asns
    partial = any({c for c in known.cells if c[1] == a} - cells_out for _, a in cells_out)
    if region_out or partial:
        return Scope.REGIONAL, regions, asns
    return Scope.NETWORK, regions, asns


def _confirmed_at(g: _Group, cfg: SignalConfig) -> datetime | None:
    """Two independent signals agreeing, or one staying down long enough, whichever comes first."""
    candidates = [t for o in g.outages if (t := o.evidence_at(cfg))]
    signals: dict[tuple[str, str], datetime] = {}
    for o in g.outages:
        if (t := o.significant_at(cfg.min_count_z)) is not None:
            sig = (o.key[0], o.key[1])
            signals[sig] = min(signals.get(sig, t), t)
    if len(signals) >= 2:
        candidates.append(sorted(signals.values())[1])
    return min(candidates) if candidates else None


def signal_incidents(points: Iterable[SignalPoint], cfg: SignalConfig = SignalConfig()) -> list[Incident]:
    pts = list(points)
    measured: dict[str, _Measured] = defaultdict(_Measured)
    for p in pts:
        m = measured[p.country]
        if p.region:
            m.regions.add(p.region)
        if p.asn:
            m.asns.add(p.asn)
        if p.region and p.asn:
            m.cells.add((p.region, p.asn))
        if p.asn and not p.region:
            m.networks.add(p.asn)
    incidents = []
    # an outage a count's chance variation explains is no witness: it neither confirms nor widens the scope
    outages = [o for o in series_outages(pts, cfg) if o.end is None or o.significant_at(cfg.min_count_z)]
    for g in _group(outages, cfg):
        scope, regions, asns = _scope(g, measured)
        confirmed = _confirmed_at(g, cfg)
        if g.end is not None and not confirmed:
            continue  # a blip that never gathered evidence is noise, not an incident
        status = Status.ENDED if g.end is not None else Status.CONFIRMED if confirmed else Status.SUSPECTED
        signals = sorted({f"{o.key[0]}:{o.key[1]}" for o in g.outages})
        reasons = [f"{len(signals)} outside-in signal(s) dropped: {', '.join(signals)}",
                   f"deepest drop to {min(o.depth for o in g.outages):.0%} of the usual level"]
        incidents.append(Incident(
            id=incident_id(g.country, IncidentKind.CONNECTIVITY_LOSS, int(g.start.timestamp())),
            country=g.country, kind=IncidentKind.CONNECTIVITY_LOSS, scope=Scope(scope), asns=tuple(asns),
            regions=tuple(regions), platforms=(), techniques=("unreachable",), start=g.start, end=g.end,
            status=status, confirmed_at=confirmed, confidence=min(0.99, 0.6 + 0.15 * len(signals)),
            assessment=Assessment(deliberate=0.5, reasons=tuple(reasons)),
            evidence=Evidence(signals=tuple(
                SignalEvidence(source=o.key[0], signal=o.key[1], region=o.region or None, asn=o.asn or None,
                               start=o.start, end=o.end, min_ratio=round(o.depth, 3)) for o in g.outages)),
        ))
    return incidents


def heartbeat_points(beats: Iterable[tuple[str, datetime, str, int, str | None]], *, since: datetime,
                     until: datetime, bucket_seconds: int = 300, window_seconds: int = 900) -> list[SignalPoint]:
    """Probes heard per network (and country) in a sliding window, as a signal: when a network's probes go
    silent at once, this series drops while the probes themselves cannot say anything.

    Only buckets that end by the newest beat heard from anyone are counted: after it the collector has told us
    nothing yet (it may be down, or its beats not yet stored), and that absence is not a shutdown. A network
    that falls silent while others are still heard does drop."""
    by_net: dict[tuple[str, int], list[tuple[float, str]]] = defaultdict(list)
    for probe, t, cc, asn, _region in beats:
        by_net[(cc, asn)].append((t.timestamp(), probe))
    if not by_net:
        return []
    newest = max(t for seen in by_net.values() for t, _ in seen)
    start = int(since.timestamp()) // bucket_seconds * bucket_seconds
    stop = min(int(until.timestamp()), int(newest) - bucket_seconds + 1)
    out: list[SignalPoint] = []
    country_counts: dict[tuple[str, int], set[str]] = defaultdict(set)
    for (cc, asn), seen in sorted(by_net.items()):
        seen.sort()
        first_heard = int(seen[0][0]) // bucket_seconds * bucket_seconds
        window: Counter[str] = Counter()
        lo = hi = 0
        for b in range(max(start, first_heard), stop, bucket_seconds):
            end = b + bucket_seconds
            while hi < len(seen) and seen[hi][0] < end:  # beats entering the window
                window[seen[hi][1]] += 1
                hi += 1
            while lo < hi and seen[lo][0] < end - window_seconds:  # beats leaving it
                window[seen[lo][1]] -= 1
                if not window[seen[lo][1]]:
                    del window[seen[lo][1]]
                lo += 1
            country_counts[(cc, b)] |= {f"{asn}:{p}" for p in window}
            out.append(SignalPoint(time=datetime.fromtimestamp(b, UTC), country=cc, region=None, asn=asn,
                                   signal="probe_heartbeats", source="collector", value=float(len(window))))
    for (cc, b), probes in sorted(country_counts.items()):
        out.append(SignalPoint(time=datetime.fromtimestamp(b, UTC), country=cc, region=None, asn=None,
                               signal="probe_heartbeats", source="collector", value=float(len(probes))))
    return out


def fuse(probe_incidents: Sequence[Incident], outside: Sequence[Incident]) -> list[Incident]:
    """One connectivity loss per country and time, whoever saw it: outside-in evidence joins the probes'
    incident (earliest confirmation wins, scope widens); restrictions are left as they are."""
    result = list(probe_incidents)
    for o in outside:
        match = next((i for i, p in enumerate(result) if p.kind == IncidentKind.CONNECTIVITY_LOSS
                      and p.country == o.country and _overlaps(p, o)), None)
        if match is None:
            result.append(o)
            continue
        p = result[match]
        confirmations = [t for t in (p.confirmed_at, o.confirmed_at) if t is not None]
        ends = [p.end, o.end]
        order = [Scope.NETWORK, Scope.REGIONAL, Scope.NATIONAL]
        # a suspicion of the probes (silence not yet confirmed) says nothing sure about the extent: when only
        # the signals confirm, their extent is the incident's (one region's series never makes it national)
        extent = o if p.status == Status.SUSPECTED and o.status != Status.SUSPECTED else None
        result[match] = p.with_(
            start=min(p.start, o.start),
            end=None if any(e is None for e in ends) else max(e for e in ends if e is not None),
            confirmed_at=min(confirmations) if confirmations else None,
            status=p.status if p.status != Status.SUSPECTED else o.status,
            scope=extent.scope if extent else max(p.scope, o.scope, key=lambda s: order.index(Scope(s))),
            asns=tuple(sorted(set(p.asns) | set(o.asns))),
            regions=extent.regions if extent else tuple(sorted(set(p.regions) | set(o.regions))),
            confidence=max(p.confidence, o.confidence),
            evidence=replace(p.evidence, signals=o.evidence.signals or ()),
            assessment=Assessment(deliberate=p.assessment.deliberate,
                                  reasons=p.assessment.reasons + o.assessment.reasons),
        )
    return result


def _overlaps(a: Incident, b: Incident) -> bool:
    far = datetime.max.replace(tzinfo=UTC)
    return a.start <= (b.end or far) and b.start <= (a.end or far)

