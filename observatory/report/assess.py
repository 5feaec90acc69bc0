"""Claim assessment: the evidence for and against an official explanation, from the incident's own data.

What speaks to a "technical fault" depends on what kind of incident it is, so each kind has its own tests:
- a targeted restriction or throttling: whether only the targeted platforms failed while control sites stayed
  reachable, whether independent networks failed and recovered at the same moment, whether one interference
  technique accounts for the failures, and whether the same platforms were restricted before. Faults are
  indiscriminate and uncoordinated; filtering is selective and synchronised.
- a platform's own outage: the platform failing from everywhere at once (several countries, or the control
  vantage) is what a fault at the platform looks like; simultaneity there is expected, not suspicious.
- one network losing everything: the other networks staying up and nothing selective is what an operator's
  fault looks like (an ordered cut of one operator looks the same, and the text says so).
- several networks losing everything: a shared cause, an order or a shared failure (power, transit); what tells
  them apart is a timetable (the same local hour again) and a synchronised, staggered or repaired return.
The machine verdict on the claim is `supported`, `contradicted` or `inconclusive`. Whether onsets were
simultaneous and the control sites healthy is decided by the one judge the detector uses too
(observatory/intent.py).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from observatory.catalog import CONTROL
from observatory.errors import ConfigError
from observatory.incident import Incident
from observatory.intent import CONTROL_HEALTHY, SIMULTANEOUS, signs_of_intent
from observatory.report.facts import (
    by_technique,
    duration_text,
    join_names,
    network_label,
    onsets,
    platform_names,
)
from observatory.report.statement import TECHNIQUE_PHRASES
from observatory.series import SeriesCell
from observatory.vocab import FILTERING_SIGNATURES, ClaimVerdict, IncidentKind

__all__ = ["CONTROL_HEALTHY", "SIMULTANEOUS", "ClaimAssessment", "assess_claim", "assessment_text"]

CLAIMS = ("technical_fault",)
TRANSITION_BUCKET = timedelta(minutes=30)  # the grid on which per-network onsets are read from the series
DOWN_SHARE = 0.5  # a network is "down" for the platforms while fewer than this share of measurements succeed
UNIFORM_SHARE = 0.9  # one technique behind at least this share of anomalies: one configuration


@dataclass(frozen=True, slots=True, kw_only=True)
class Point:
    test: str  # which observation: "targeting", "simultaneity", "technique", "restoration", "scope"
    text: str


VERDICTS = tuple(v.value for v in ClaimVerdict)


@dataclass(frozen=True, slots=True, kw_only=True)
class ClaimAssessment:
    claim: str
    incident_id: str
    against: tuple[Point, ...] = field(default_factory=tuple)
    supporting: tuple[Point, ...] = field(default_factory=tuple)
    unknown: tuple[Point, ...] = field(default_factory=tuple)
    conclusion: str = ""
    verdict: ClaimVerdict = ClaimVerdict.INCONCLUSIVE  # what the data say of the claim
    case: str = ""  # which kind of incident the tests were chosen for (see CASES)

    def to_json(self) -> dict[str, object]:
        return {
            "claim": self.claim, "incident": self.incident_id, "verdict": self.verdict.value, "case": self.case,
            "conclusion": self.conclusion,
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
    wanted = set(inc.platforms) - {CONTROL} if inc.kind != IncidentKind.CONNECTIVITY_LOSS else None
    sums: dict[int, dict[int, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
    for c in cells:
        if c.country != inc.country or c.asn not in inc.asns or not lo <= c.bucket < hi:
            continue
        if (wanted is not None and c.platform not in wanted) or (wanted is None and c.platform == CONTROL):
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


Side = tuple[str, Point]  # ("for" | "against" | "unknown", the observation)

# The kinds of incident whose tests differ (see the module docstring).
PLATFORM_OUTAGE, ONE_NETWORK, SHARED_LOSS, TARGETED = "platform_outage", "one_network", "shared_loss", "targeted"
CASES = (PLATFORM_OUTAGE, ONE_NETWORK, SHARED_LOSS, TARGETED)
RECURRENCE_LOOKBACK = timedelta(days=45)  # "the third in just over a month"
SAME_HOUR = timedelta(hours=1)  # a cut at the same local hour as an earlier one keeps a timetable


def case_of(inc: Incident) -> str:
    if inc.kind == IncidentKind.PLATFORM_OUTAGE or inc.country is None:
        return PLATFORM_OUTAGE
    if inc.kind == IncidentKind.CONNECTIVITY_LOSS:
        return ONE_NETWORK if len(inc.asns) <= 1 else SHARED_LOSS
    return TARGETED


def _targeting(inc: Incident, control: float | None) -> Side:
    names = join_names(platform_names(inc)) or "the platforms"
    if control is None:
        return "unknown", Point(test="targeting", text="Control-site reachability during the incident was not "
                                                       "measured, so selectivity cannot be judged.")
    if signs_of_intent((), control).selective:
        return "against", Point(test="targeting", text=f"Only {names} failed while control sites stayed "
                                f"{control:.0%} reachable on the same networks: a fault would not pick "
                                "out specific platforms.")
    return "for", Point(test="targeting", text=f"Control sites were also degraded ({control:.0%} reachable): "
                                               "the networks themselves had trouble.")


def _everything_failed(inc: Incident) -> Side:
    return "for", Point(test="targeting", text="All traffic failed, control sites included: nothing was singled "
                                               "out, as in a fault (an ordered cut looks the same on this test).")


def _onset_spread(inc: Incident, seen: Transitions | None) -> tuple[list[datetime], timedelta] | None:
    times = list(seen.onsets.values()) if seen and len(seen.onsets) >= 2 else onsets(inc)
    return (times, max(times) - min(times)) if len(times) >= 2 else None


def _simultaneity(inc: Incident, seen: Transitions | None) -> Side:
    spread = _onset_spread(inc, seen)
    if spread is None:
        return "unknown", Point(test="simultaneity", text="Only one network was affected or its onset time is "
                                                          "missing, so simultaneity cannot be judged.")
    times, width = spread
    if signs_of_intent(times, None).synchronized:
        return "against", Point(test="simultaneity", text=f"{len(times)} independent networks were affected "
                                f"{_within(width)}: independent faults rarely coincide.")
    return "for", Point(test="simultaneity", text=f"Onsets on {len(times)} networks spread over "
                        f"{duration_text(width.total_seconds())}, as a cascading fault might.")


def _shared_onset(inc: Incident, seen: Transitions | None) -> Side:
    """Several networks losing everything together: a common cause, which an order and a shared failure (power,
    international transit) both are. Only a slow spread speaks for a fault propagating."""
    spread = _onset_spread(inc, seen)
    if spread is None:
        return "unknown", Point(test="simultaneity", text="Per-network onset times are missing.")
    times, width = spread
    if signs_of_intent(times, None).synchronized:
        return "unknown", Point(test="simultaneity", text=f"{len(times)} networks lost connectivity "
                                f"{_within(width)}: a common cause, which an order to operators and a shared "
                                "failure (power, international links) both are.")
    return "for", Point(test="simultaneity", text=f"Onsets on {len(times)} networks spread over "
                        f"{duration_text(width.total_seconds())}, as a cascading fault might.")


def _within(spread: timedelta) -> str:
    if spread < TRANSITION_BUCKET:
        return "in the same half-hour"
    return f"within {duration_text(spread.total_seconds())} of each other"


def _technique(inc: Incident) -> Side:
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


def _failure_modes(inc: Incident) -> Side:
    """For an incident where everything failed: a filtering signature among the failures (a block page, forged
    DNS answers) is a censor's hand; timeouts and unreachable hosts are what any cut or fault leaves."""
    counts = by_technique(inc)
    signatures = sorted(t for t in (counts or dict.fromkeys(inc.techniques, 1)) if t in FILTERING_SIGNATURES)
    if signatures:
        return "against", Point(test="technique", text="Filtering signatures among the failures ("
                                + join_names([TECHNIQUE_PHRASES.get(t, t) for t in signatures]) + "): a fault does "
                                "not forge answers.")
    if not counts and not inc.techniques:
        return "unknown", Point(test="technique", text="No failure mode was recorded.")
    return "for", Point(test="technique", text="Connections timed out or hosts were unreachable, with no filtering "
                                               "signature: what a fault leaves (and a full cut too).")


def _restoration(inc: Incident, seen: Transitions | None, *, shared_cause: bool = False) -> Side:
    if inc.end is None:
        return "unknown", Point(test="restoration", text="The disruption is still ongoing.")
    # the evidence holds no per-network end: restorations are read from the series only (`Transitions`)
    ends = list(seen.restorations.values()) if seen else []
    if len(ends) < 2:
        return "unknown", Point(test="restoration", text="Per-network restoration times are not in the evidence.")
    spread = max(ends) - min(ends)
    together = bool(signs_of_intent(ends, None).synchronized)
    if together and shared_cause:
        return "unknown", Point(test="restoration", text=f"Connectivity returned on {len(ends)} networks "
                                f"{_within(spread)}: an order lifted or a shared failure repaired.")
    if together:
        return "against", Point(test="restoration", text=f"Access returned on {len(ends)} networks "
                                f"{_within(spread)}: a switch flipped back, not repairs.")
    return "for", Point(test="restoration", text=f"Restoration was staggered over "
                        f"{duration_text(spread.total_seconds())}, as repairs would be.")


def _recurrence(inc: Incident, previous: Sequence[Incident], *, same_hour: bool) -> Side | None:
    """Earlier incidents of the same kind in the country on the same platforms (targeted) or at the same local
    hour (connectivity): faults do not pick the same platforms again, nor keep a timetable."""
    def same(p: Incident) -> bool:
        if p.id == inc.id or p.country != inc.country or p.kind != inc.kind or p.start >= inc.start:
            return False
        if inc.start - p.start > RECURRENCE_LOOKBACK:
            return False
        if same_hour:
            gap = (inc.start - p.start) % timedelta(days=1)
            return min(gap, timedelta(days=1) - gap) <= SAME_HOUR
        return bool(set(p.platforms) & set(inc.platforms))

    earlier = sorted((p for p in previous if same(p)), key=lambda p: p.start)
    if not earlier:
        return None
    days = duration_text((inc.start - earlier[0].start).total_seconds())
    what = "at the same time of day" if same_hour else "of the same platforms"
    return "against", Point(test="recurrence", text=f"The {_ordinal(len(earlier) + 1)} such incident {what} in "
                            f"{days}: faults do not keep to a pattern like that.")


def _ordinal(n: int) -> str:
    return {2: "second", 3: "third", 4: "fourth", 5: "fifth"}.get(n, f"{n}th")


def _worldwide(inc: Incident) -> Side:
    names = join_names(platform_names(inc)) or "The platform"
    count = len(inc.evidence.countries or ())
    where = f"in {count} countries at once" if count > 1 else "from the uncensored control vantage as well"
    return "for", Point(test="reach", text=f"{names} failed {where}: the platform's own servers were "
                        "unreachable, which no single country's censor can cause.")


def _outage_together() -> Side:
    return "for", Point(test="simultaneity", text="Networks failed together, as they do when the platform "
                                                  "itself fails: here simultaneity is expected, not suspicious.")


def _others_up(inc: Incident, measured: int | None) -> Side:
    if not measured or measured <= 1:
        return "unknown", Point(test="breadth", text="No other network was measured at the time, so a fault of "
                                                     "this operator cannot be told from a wider event.")
    return "for", Point(test="breadth", text=f"Only {network_label(inc, inc.asns[0]) if inc.asns else 'one network'}"
                        f" lost connectivity; the other {measured - 1} measured networks stayed up: a fault in one "
                        "operator's network is the usual cause (an operator ordered to cut looks the same).")


def tests_for(case: str, inc: Incident, *, control: float | None, seen: Transitions | None,
              previous: Sequence[Incident], measured: int | None) -> list[Side]:
    """The observations that speak to a technical fault for this kind of incident."""
    sides: list[Side | None]
    if case == PLATFORM_OUTAGE:
        sides = [_worldwide(inc), _outage_together()]
        if signs_of_intent((), control).selective:
            sides.append(("for", Point(test="targeting", text=f"Other sites stayed {control:.0%} reachable: "
                                       "the networks worked, the platform did not.")))
    elif case == ONE_NETWORK:
        sides = [_everything_failed(inc), _others_up(inc, measured), _failure_modes(inc),
                 _recurrence(inc, previous, same_hour=True)]
    elif case == SHARED_LOSS:
        sides = [_everything_failed(inc), _shared_onset(inc, seen), _failure_modes(inc),
                 _restoration(inc, seen, shared_cause=True), _recurrence(inc, previous, same_hour=True)]
    else:
        sides = [_targeting(inc, control), _simultaneity(inc, seen), _technique(inc), _restoration(inc, seen),
                 _recurrence(inc, previous, same_hour=False)]
    return [s for s in sides if s is not None]


def assess_claim(inc: Incident, claim: str = "technical_fault", *,
                 control_reachability_share: float | None = None,
                 transitions: Transitions | None = None, previous: Sequence[Incident] = (),
                 networks_measured: int | None = None) -> ClaimAssessment:
    """The evidence for and against `claim`, chosen for the incident's kind. `control_reachability_share`: share
    of control-site measurements that succeeded on the affected networks during the incident (from the store's
    series; the evidence does not hold it); `transitions`: per-network onsets and restorations from the series (else the
    evidence's onsets); `previous`: the country's earlier incidents; `networks_measured`: networks measured in the
    country meanwhile."""
    if claim not in CLAIMS:
        raise ConfigError(f"claim {claim!r}: the claims that can be assessed are {', '.join(CLAIMS)}")
    control = control_reachability_share
    case = case_of(inc)
    sides: dict[str, list[Point]] = {"against": [], "for": [], "unknown": []}
    for side, point in tests_for(case, inc, control=control, seen=transitions, previous=previous,
                                 measured=networks_measured):
        sides[side].append(point)
    verdict = judge(len(sides["against"]), len(sides["for"]))
    return ClaimAssessment(claim=claim, incident_id=inc.id, against=tuple(sides["against"]),
                           supporting=tuple(sides["for"]), unknown=tuple(sides["unknown"]),
                           conclusion=_conclusion(verdict, len(sides["against"]), len(sides["for"])),
                           verdict=verdict, case=case)


def judge(against: int, supporting: int) -> ClaimVerdict:
    """Two independent observations one way, and more of them than the other way, decide; else inconclusive."""
    if against >= 2 and against > supporting:
        return ClaimVerdict.CONTRADICTED
    if supporting >= 2 and supporting > against:
        return ClaimVerdict.SUPPORTED
    return ClaimVerdict.INCONCLUSIVE


def _conclusion(verdict: ClaimVerdict, against: int, supporting: int) -> str:
    if verdict == ClaimVerdict.CONTRADICTED:
        return (f"The data contradicts a technical fault: {against} of the observations point to deliberate "
                "restriction" + (f", {supporting} {'is' if supporting == 1 else 'are'} compatible with a fault."
                                 if supporting else "."))
    if verdict == ClaimVerdict.SUPPORTED:
        return f"The data is consistent with a technical fault ({supporting} observations support it)."
    return "The data is inconclusive on whether this was a technical fault."


def assessment_text(a: ClaimAssessment) -> str:
    lines = [f"Claim: {a.claim.replace('_', ' ')} (incident {a.incident_id})", ""]
    for title, points in (("Against the claim", a.against), ("For the claim", a.supporting),
                          ("Not determinable", a.unknown)):
        if points:
            lines.append(f"{title}:")
            lines += [f"  - {p.text}" for p in points]
    lines += ["", f"Conclusion: {a.conclusion}", f"Verdict on the claim: {a.verdict}"]
    return "\n".join(lines)
