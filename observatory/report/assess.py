"""Claim assessment: the evidence for and against an official explanation, from the incident's own data.

When authorities call a disruption a "technical fault", four observations speak to it: whether only the
targeted platforms failed while control sites stayed reachable, whether independent networks failed at the
same moment, whether they all show the same interference technique, and whether they recovered together.
Faults are indiscriminate and uncoordinated; filtering is selective and synchronised.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from observatory.errors import ConfigError
from observatory.incident import Incident
from observatory.report.facts import (
    by_technique,
    control_reachability,
    duration_text,
    join_names,
    onsets,
    platform_names,
    restorations,
)
from observatory.report.statement import TECHNIQUE_PHRASES
from observatory.series import SeriesCell

CLAIMS = ("technical_fault",)
SIMULTANEOUS = timedelta(minutes=30)  # onsets closer than this across operators are "at the same moment"
TRANSITION_BUCKET = timedelta(minutes=30)  # the grid on which per-network onsets are read from the series
DOWN_SHARE = 0.5  # a network is "down" for the platforms while fewer than this share of measurements succeed
CONTROL_HEALTHY = 0.9  # control sites at least this reachable: the network itself worked
UNIFORM_SHARE = 0.9  # one technique behind at least this share of anomalies: one configuration
# techniques that are a censor's signature, not a failure mode
FILTERING_SIGNATURES = frozenset({"dns_tampering", "tls_interference", "tcp_reset", "http_blockpage", "tls_mitm",
                                  "http_interference"})


@dataclass(frozen=True, slots=True, kw_only=True)
class Point:
    test: str  # which observation: "targeting", "simultaneity", "technique", "restoration", "scope"
    text: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ClaimAssessment:
    claim: str
    incident_id: str
    against: tuple[Point, ...] = field(default_factory=tuple)
    supporting: tuple[Point, ...] = field(default_factory=tuple)
    unknown: tuple[Point, ...] = field(default_factory=tuple)
    conclusion: str = ""

    def to_json(self) -> dict[str, object]:
        return {
            "claim": self.claim, "incident": self.incident_id, "conclusion": self.conclusion,
            "against": [{"test": p.test, "text": p.text} for p in self.against],
            "for": [{"test": p.test, "text": p.text} for p in self.supporting],
            "unknown": [{"test": p.test, "text": p.text} for p in self.unknown],
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class Transitions:
    """When each affected network lost and regained the platforms, read from the measurement series."""

    onsets: dict[int, datetime]
    restorations: dict[int, datetime]


def network_transitions(inc: Incident, cells: Iterable[SeriesCell], *,
                        margin: timedelta = timedelta(hours=2)) -> Transitions:
    """Per affected network: the first half-hour in which the incident's platforms mostly failed, and the first
    one after the last such half-hour (restoration). Read from the series because an incident's own onsets are
    when the detector became sure, which depends on each network's probe count, not when the block began."""
    step = int(TRANSITION_BUCKET.total_seconds())
    lo, hi = inc.start - margin, (inc.end or inc.start) + margin
    wanted = set(inc.platforms) - {"control"} if inc.kind != "connectivity_loss" else None
    sums: dict[int, dict[int, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
    for c in cells:
        if c.country != inc.country or c.asn not in inc.asns or not lo <= c.bucket < hi:
            continue
        if (wanted is not None and c.platform not in wanted) or (wanted is None and c.platform == "control"):
            continue
        ts = int(c.bucket.timestamp())
        s = sums[c.asn][ts - ts % step]
        s[0] += c.ok
        s[1] += c.ok + c.anomalous + c.down
    onsets_: dict[int, datetime] = {}
    restored: dict[int, datetime] = {}
    for asn, buckets in sums.items():
        down = sorted(b for b, (ok, judged) in buckets.items() if judged and ok / judged < DOWN_SHARE)
        if not down:
            continue
        onsets_[asn] = datetime.fromtimestamp(down[0], UTC)
        after = [b for b, (ok, judged) in buckets.items() if b > down[-1] and judged and ok / judged >= DOWN_SHARE]
        if inc.end is not None and after:
            restored[asn] = datetime.fromtimestamp(min(after), UTC)
    return Transitions(onsets=onsets_, restorations=restored)


def _targeting(inc: Incident, control: float | None) -> tuple[str, Point]:
    names = join_names(platform_names(inc)) or "the platforms"
    if inc.kind == "platform_outage":
        return "for", Point(test="targeting", text=f"{names} failed worldwide, not in one country: consistent "
                                                   "with a fault at the platform itself.")
    if inc.kind == "connectivity_loss":
        return "for", Point(test="targeting", text="All traffic failed, control sites included: on this test "
                                                   "alone a shutdown and a major fault look alike.")
    if control is None:
        return "unknown", Point(test="targeting", text="Control-site reachability during the incident was not "
                                                       "measured, so selectivity cannot be judged.")
    if control >= CONTROL_HEALTHY:
        return "against", Point(test="targeting", text=f"Only {names} failed while control sites stayed "
                                f"{control:.0%} reachable on the same networks: a fault would not pick "
                                "out specific platforms.")
    return "for", Point(test="targeting", text=f"Control sites were also degraded ({control:.0%} reachable): "
                                               "the networks themselves had trouble.")


def _simultaneity(inc: Incident, seen: Transitions | None) -> tuple[str, Point]:
    times = list(seen.onsets.values()) if seen and len(seen.onsets) >= 2 else onsets(inc)
    if len(times) < 2:
        return "unknown", Point(test="simultaneity", text="Only one network was affected or its onset time is "
                                                          "missing, so simultaneity cannot be judged.")
    spread = max(times) - min(times)
    if spread <= SIMULTANEOUS:
        return "against", Point(test="simultaneity", text=f"{len(times)} independent networks were affected "
                                f"{_within(spread)}: independent faults rarely coincide.")
    return "for", Point(test="simultaneity", text=f"Onsets on {len(times)} networks spread over "
                        f"{duration_text(spread.total_seconds())}, as a cascading fault might.")


def _within(spread: timedelta) -> str:
    if spread < TRANSITION_BUCKET:
        return "in the same half-hour"
    return f"within {duration_text(spread.total_seconds())} of each other"


def _technique(inc: Incident) -> tuple[str, Point]:
    counts = by_technique(inc)
    techniques = sorted(counts, key=lambda t: -counts[t]) if counts else list(inc.techniques)
    if not techniques:
        return "unknown", Point(test="technique", text="No interference technique was recorded.")
    top = techniques[0]
    share = counts[top] / sum(counts.values()) if counts else (1.0 if len(techniques) == 1 else 0.5)
    phrase = TECHNIQUE_PHRASES.get(top, top.replace("_", " "))
    if share >= UNIFORM_SHARE and top in FILTERING_SIGNATURES:
        return "against", Point(test="technique", text=f"The same technique, {phrase}, accounts for {share:.0%} of "
                                "the failures: a deliberate filtering signature, not a failure mode.")
    if share >= UNIFORM_SHARE:
        return "unknown", Point(test="technique", text=f"One failure mode ({phrase}) throughout: uniform, but "
                                "not by itself a filtering signature.")
    return "for", Point(test="technique", text=f"Failures were mixed ({join_names(techniques[:3])}), as faults "
                        "tend to be.")


def _restoration(inc: Incident, seen: Transitions | None) -> tuple[str, Point]:
    if inc.end is None:
        return "unknown", Point(test="restoration", text="The disruption is still ongoing.")
    ends = list(seen.restorations.values()) if seen and len(seen.restorations) >= 2 else restorations(inc)
    if len(ends) < 2:
        return "unknown", Point(test="restoration", text="Per-network restoration times are not in the evidence.")
    spread = max(ends) - min(ends)
    if spread <= SIMULTANEOUS:
        return "against", Point(test="restoration", text=f"Access returned on {len(ends)} networks "
                                f"{_within(spread)}: a switch flipped back, not repairs.")
    return "for", Point(test="restoration", text=f"Restoration was staggered over "
                        f"{duration_text(spread.total_seconds())}, as repairs would be.")


def assess_claim(inc: Incident, claim: str = "technical_fault", *,
                 control_reachability_share: float | None = None,
                 transitions: Transitions | None = None) -> ClaimAssessment:
    """The evidence for and against `claim`. `control_reachability_share`: share of control-site measurements
    that succeeded on the affected networks during the incident (from the store's series), else the evidence's;
    `transitions`: per-network onsets and restorations from the series (else the evidence's onsets)."""
    if claim not in CLAIMS:
        raise ConfigError(f"claim {claim!r}: the claims that can be assessed are {', '.join(CLAIMS)}")
    control = control_reachability_share if control_reachability_share is not None else control_reachability(inc)
    sides: dict[str, list[Point]] = {"against": [], "for": [], "unknown": []}
    for side, point in (_targeting(inc, control), _simultaneity(inc, transitions), _technique(inc),
                        _restoration(inc, transitions)):
        sides[side].append(point)
    return ClaimAssessment(claim=claim, incident_id=inc.id, against=tuple(sides["against"]),
                           supporting=tuple(sides["for"]), unknown=tuple(sides["unknown"]),
                           conclusion=_conclusion(len(sides["against"]), len(sides["for"])))


def _conclusion(against: int, supporting: int) -> str:
    if against >= 2 and against > supporting:
        return (f"The data contradicts a technical fault: {against} of the observations point to deliberate "
                "restriction" + (f", {supporting} {'is' if supporting == 1 else 'are'} compatible with a fault."
                                 if supporting else "."))
    if supporting >= 2 and supporting > against:
        return f"The data is consistent with a technical fault ({supporting} observations support it)."
    return "The data is inconclusive on whether this was a technical fault."


def assessment_text(a: ClaimAssessment) -> str:
    lines = [f"Claim: {a.claim.replace('_', ' ')} (incident {a.incident_id})", ""]
    for title, points in (("Against the claim", a.against), ("For the claim", a.supporting),
                          ("Not determinable", a.unknown)):
        if points:
            lines.append(f"{title}:")
            lines += [f"  - {p.text}" for p in points]
    lines += ["", f"Conclusion: {a.conclusion}"]
    return "\n".join(lines)
