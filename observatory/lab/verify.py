"""What the censor did against what the detector found: each event matched to one incident, nothing else.

Pure: plain data in, a `Verification` out. An event is *found* when an incident of the same kind overlaps it
and names the same technique, scope, platforms, networks and regions, with start and end within the
tolerance (two probe intervals by default); an incident that matches no event is an *extra*.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from observatory.incident import Incident, iso
from observatory.lab.plan import LabEvent, LabPlan
from observatory.vocab import IncidentKind, Scope


@dataclass(frozen=True, slots=True, kw_only=True)
class Expected:
    """An event as the incident it should produce."""

    event: LabEvent
    kind: str
    technique: str | None
    scope: str
    country: str | None
    asns: tuple[int, ...]
    regions: tuple[str, ...]
    platforms: tuple[str, ...]
    start: datetime
    end: datetime


def expected_scope(plan: LabPlan, ev: LabEvent) -> tuple[str, tuple[int, ...], tuple[str, ...]]:
    """(scope, asns, regions) the detector should report for an event of this plan."""
    country_nets = [n for n in plan.networks if ev.country is None or n.country == ev.country]
    hit = [n for n in country_nets if ev.affected_regions(n)]
    asns = tuple(sorted(n.asn for n in hit))
    regions = tuple(sorted({n.regions[r] for n in hit for r in ev.affected_regions(n)}))
    all_regions = {r for n in country_nets for r in n.regions}
    if ev.regions and set(regions) < all_regions:
        return Scope.REGIONAL.value, asns, regions
    if len(hit) < len(country_nets):
        return Scope.NETWORK.value, asns, regions
    return Scope.NATIONAL.value, asns, regions


def expected_incidents(plan: LabPlan, t0: datetime,
                       actual: dict[int, tuple[datetime, datetime]] | None = None) -> list[Expected]:
    """The incidents the plan's events should produce. `actual` (event index -> when the censor really
    applied and lifted it) wins over the planned offsets: the truth is what the censor did."""
    out = []
    for ev in plan.events:
        scope, asns, regions = expected_scope(plan, ev)
        start, end = (actual or {}).get(ev.index, (t0 + timedelta(seconds=ev.start_s),
                                                   t0 + timedelta(seconds=ev.end_s)))
        out.append(Expected(event=ev, kind=ev.kind, technique=ev.technique, scope=scope, country=ev.country,
                            asns=asns, regions=regions, platforms=tuple(sorted(ev.platforms)),
                            start=start, end=end))
    return out


@dataclass(frozen=True, slots=True, kw_only=True)
class EventResult:
    expected: Expected
    incident: Incident | None
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return self.incident is not None and not self.problems


@dataclass(frozen=True, slots=True, kw_only=True)
class Verification:
    events: tuple[EventResult, ...]
    extras: tuple[Incident, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        return all(e.ok for e in self.events) and not self.extras


def _overlaps(inc: Incident, exp: Expected, slack: timedelta) -> bool:
    far = datetime.max.replace(tzinfo=exp.start.tzinfo)
    return inc.start <= exp.end + slack and (inc.end or far) >= exp.start - slack


def differences(inc: Incident, exp: Expected, tolerance: timedelta) -> list[str]:
    """Every way an incident departs from what the event should have produced (empty: a perfect match)."""
    out = []
    if exp.technique and exp.kind != IncidentKind.PLATFORM_OUTAGE and exp.technique not in inc.techniques:
        out.append(f"technique {list(inc.techniques)} != {exp.technique}")
    if exp.kind != IncidentKind.PLATFORM_OUTAGE and inc.scope != exp.scope:
        out.append(f"scope {inc.scope} != {exp.scope}")
    if exp.kind != IncidentKind.CONNECTIVITY_LOSS and tuple(sorted(inc.platforms)) != exp.platforms:
        out.append(f"platforms {sorted(inc.platforms)} != {list(exp.platforms)}")
    if exp.kind != IncidentKind.PLATFORM_OUTAGE and tuple(sorted(inc.asns)) != exp.asns:
        out.append(f"asns {sorted(inc.asns)} != {list(exp.asns)}")
    if exp.scope == Scope.REGIONAL and tuple(sorted(inc.regions)) != exp.regions:
        out.append(f"regions {sorted(inc.regions)} != {list(exp.regions)}")
    if abs(inc.start - exp.start) > tolerance:
        out.append(f"start {iso(inc.start)} is {(inc.start - exp.start).total_seconds():+.0f}s off")
    if inc.end is None:
        out.append("never ended")
    elif abs(inc.end - exp.end) > tolerance:
        out.append(f"end {iso(inc.end)} is {(inc.end - exp.end).total_seconds():+.0f}s off")
    return out


def verify(expected: list[Expected], incidents: list[Incident], tolerance: timedelta) -> Verification:
    """Matches each expected incident to the best found one (same kind and country, overlapping in time)."""
    free = list(incidents)
    results = []
    for exp in sorted(expected, key=lambda e: e.start):
        candidates = [i for i in free if i.kind == exp.kind and i.country == exp.country
                      and _overlaps(i, exp, tolerance)]
        if not candidates:
            results.append(EventResult(expected=exp, incident=None, problems=("not detected",)))
            continue
        best = min(candidates, key=lambda i: (len(differences(i, exp, tolerance)), abs(i.start - exp.start)))
        free.remove(best)
        results.append(EventResult(expected=exp, incident=best,
                                   problems=tuple(differences(best, exp, tolerance))))
    return Verification(events=tuple(results), extras=tuple(free))


def render(v: Verification, t0: datetime) -> str:
    """The events next to the incidents found, as a plain-text table (times as offsets from the start)."""

    def off(t: datetime | None) -> str:
        if t is None:
            return "-"
        s = int((t - t0).total_seconds())
        return f"{'+' if s >= 0 else '-'}{abs(s) // 60}m{abs(s) % 60:02d}s"

    lines = [f"{'event':<44} {'start':>8} {'end':>8} | {'found':<44} {'start':>8} {'end':>8} | result"]
    for r in v.events:
        e = r.expected
        what = f"{e.kind}/{e.technique or '-'} {e.scope} {','.join(e.platforms) or 'all'}"
        if r.incident is None:
            found, fs, fe = "nothing", "", ""
        else:
            i = r.incident
            found = f"{i.kind}/{','.join(i.techniques) or '-'} {i.scope} {','.join(sorted(i.platforms)) or 'all'}"
            fs, fe = off(i.start), off(i.end)
        result = "ok" if r.ok else "MISS: " + "; ".join(r.problems)
        lines.append(f"{what[:44]:<44} {off(e.start):>8} {off(e.end):>8} | {found[:44]:<44} {fs:>8} {fe:>8} | "
                     f"{result}")
    for i in v.extras:
        found = f"{i.kind}/{','.join(i.techniques) or '-'} {i.scope} {','.join(sorted(i.platforms)) or 'all'}"
        lines.append(f"{'(no event)':<44} {'':>8} {'':>8} | {found[:44]:<44} {off(i.start):>8} {off(i.end):>8} | "
                     f"EXTRA {i.id}")
    lines.append("all events found, nothing else" if v.ok else
                 f"{sum(not r.ok for r in v.events)} event(s) missed or wrong, {len(v.extras)} extra incident(s)")
    return "\n".join(lines)
