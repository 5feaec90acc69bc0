"""Detection quality against ground truth: matching and scores (used by benchmarks/detection.py and tests).

A detected incident matches a true one when they share country and kind, overlap in time, and their platform
sets overlap by at least half of the larger set (a truth without platforms, e.g. a connectivity loss, matches
any). Only confirmed or ended incidents count: a suspicion is not a claim.

An edge (start or end) can only be placed between the last measurement before the change and the first one
after it in the affected series: when that sampling gap is wider than twice the target, no estimator that does
not know the truth can promise the target there. Scores keep each edge's gap, so a miss the data allowed is
told from one it did not.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from statistics import median

from observatory.incident import Incident

EDGE_TARGET_MINUTES = 15.0  # start and end within this of the truth (the detector's acceptance target)
_FAR = datetime.max


def _end(i: Incident) -> datetime:
    return i.end or _FAR.replace(tzinfo=i.start.tzinfo)


def overlap_seconds(a: Incident, b: Incident) -> float:
    return (min(_end(a), _end(b)) - max(a.start, b.start)).total_seconds()


def matches(detected: Incident, truth: Incident) -> bool:
    if detected.country != truth.country or detected.kind != truth.kind:
        return False
    if overlap_seconds(detected, truth) <= 0:
        return False
    if truth.platforms:
        common = len(set(detected.platforms) & set(truth.platforms))
        if common < 0.5 * max(len(truth.platforms), len(detected.platforms)):
            return False
    return True


def claims(incidents: Sequence[Incident]) -> list[Incident]:
    """The incidents the observatory stands behind: confirmed or ended."""
    return [i for i in incidents if i.status != "suspected" and i.confirmed_at is not None]


def match(detected: Sequence[Incident], truth: Sequence[Incident]) -> list[tuple[int, int]]:
    """One-to-one pairs (truth index, detected index), best overlap first."""
    pairs = sorted(
        ((overlap_seconds(d, t), ti, di) for ti, t in enumerate(truth) for di, d in enumerate(detected)
         if matches(d, t)),
        reverse=True,
    )
    used_t: set[int] = set()
    used_d: set[int] = set()
    out = []
    for _, ti, di in pairs:
        if ti not in used_t and di not in used_d:
            used_t.add(ti)
            used_d.add(di)
            out.append((ti, di))
    return sorted(out)


@dataclass(slots=True)
class Score:
    truth: int = 0
    detected: int = 0
    true_positives: int = 0
    false_national: int = 0
    country_weeks: float = 0.0
    confirm_minutes: list[float] = field(default_factory=list)
    start_error_minutes: list[float] = field(default_factory=list)
    end_error_minutes: list[float] = field(default_factory=list)
    # the sampling gap (minutes) around each true edge, aligned with the error lists; None: not known
    start_gap_minutes: list[float | None] = field(default_factory=list)
    end_gap_minutes: list[float | None] = field(default_factory=list)
    scope_right: int = 0
    technique_right: int = 0
    outage_as_restriction: int = 0
    false_ids: list[str] = field(default_factory=list)

    @property
    def false_positives(self) -> int:
        return self.detected - self.true_positives

    @property
    def recall(self) -> float:
        return self.true_positives / self.truth if self.truth else 1.0

    @property
    def precision(self) -> float:
        return self.true_positives / self.detected if self.detected else 1.0

    @property
    def false_per_country_week(self) -> float:
        return self.false_positives / self.country_weeks if self.country_weeks else 0.0

    def add(self, other: Score) -> None:
        for name in ("truth", "detected", "true_positives", "false_national", "scope_right", "technique_right",
                     "outage_as_restriction"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.country_weeks += other.country_weeks
        self.confirm_minutes += other.confirm_minutes
        self.start_error_minutes += other.start_error_minutes
        self.end_error_minutes += other.end_error_minutes
        self.start_gap_minutes += other.start_gap_minutes
        self.end_gap_minutes += other.end_gap_minutes
        self.false_ids += other.false_ids

    def edges(self) -> list[tuple[float, float | None]]:
        """(error, sampling gap) of every matched start and end."""
        return (list(zip(self.start_error_minutes, self.start_gap_minutes, strict=True))
                + list(zip(self.end_error_minutes, self.end_gap_minutes, strict=True)))

    def edges_within_target(self) -> float | None:
        edges = self.edges()
        return sum(abs(e) <= EDGE_TARGET_MINUTES for e, _ in edges) / len(edges) if edges else None

    def avoidable_edge_misses(self) -> int:
        """Edges off by more than the target although the data around them were dense enough to allow it."""
        return sum(1 for e, gap in self.edges()
                   if abs(e) > EDGE_TARGET_MINUTES and (gap is None or gap <= 2 * EDGE_TARGET_MINUTES))

    def summary(self) -> dict[str, float | int | None]:
        def med(xs: list[float]) -> float | None:
            return round(median(xs), 1) if xs else None

        def worst(xs: list[float]) -> float | None:
            if not xs:
                return None
            top: float = max(xs, key=_magnitude)
            return round(top, 1)

        tp = self.true_positives
        return {
            "truth": self.truth, "detected": self.detected, "tp": tp,
            "recall": round(self.recall, 3), "precision": round(self.precision, 3),
            "confirm_median_min": med(self.confirm_minutes), "confirm_worst_min": worst(self.confirm_minutes),
            "start_err_median_min": med([abs(x) for x in self.start_error_minutes]),
            "start_err_worst_min": worst(self.start_error_minutes),
            "end_err_median_min": med([abs(x) for x in self.end_error_minutes]),
            "end_err_worst_min": worst(self.end_error_minutes),
            "edges_within_target": (None if (w := self.edges_within_target()) is None else round(w, 3)),
            "avoidable_edge_misses": self.avoidable_edge_misses(),
            "scope_acc": round(self.scope_right / tp, 3) if tp else None,
            "technique_acc": round(self.technique_right / tp, 3) if tp else None,
            "false_per_country_week": round(self.false_per_country_week, 3),
            "false_national": self.false_national,
            "outage_as_restriction": self.outage_as_restriction,
        }


def _magnitude(x: float) -> float:
    return abs(x)


def _minutes(a: datetime, b: datetime) -> float:
    return (a - b).total_seconds() / 60


def sampling_gap(edge: datetime, times: Sequence[datetime]) -> float | None:
    """Minutes between the last of `times` (sorted) before `edge` and the first at or after it; None when the
    edge is not bracketed by data."""
    i = bisect_left(times, edge)
    if i == 0 or i == len(times):
        return None
    return _minutes(times[i], times[i - 1])


def score(detected: Sequence[Incident], truth: Sequence[Incident], *, country_weeks: float = 0.0,
          gaps: Sequence[tuple[float | None, float | None]] | None = None) -> Score:
    """Scores detections against the truth (times in scenario time). `gaps`, aligned with `truth`: the
    sampling gap around each true start and end (see `sampling_gap`), when the caller knows the data."""
    found = claims(detected)
    s = Score(truth=len(truth), detected=len(found), country_weeks=country_weeks)
    pairs = match(found, truth)
    s.true_positives = len(pairs)
    for ti, di in pairs:
        t, d = truth[ti], found[di]
        if d.confirmed_at is not None:
            s.confirm_minutes.append(_minutes(d.confirmed_at, t.start))
        s.start_error_minutes.append(_minutes(d.start, t.start))
        start_gap, end_gap = gaps[ti] if gaps is not None else (None, None)
        s.start_gap_minutes.append(start_gap)
        if t.end is not None:
            # still open when the truth had ended: an end missed by the whole rest of the data
            s.end_error_minutes.append(_minutes(d.end, t.end) if d.end is not None else math.inf)
            s.end_gap_minutes.append(end_gap)
        s.scope_right += d.scope == t.scope
        s.technique_right += bool(set(d.techniques) & set(t.techniques)) or not t.techniques
    matched = {di for _, di in pairs}
    for di, d in enumerate(found):
        if di in matched:
            continue
        s.false_ids.append(d.id)
        s.false_national += d.scope == "national" and d.kind != "platform_outage"
    for t in truth:  # the platform's own outage reported as censorship: the worst mistake
        if t.kind == "platform_outage":
            s.outage_as_restriction += sum(
                1 for d in found if d.kind == "platform_restriction" and overlap_seconds(d, t) > 0
                and set(d.platforms) & set(t.platforms))
    return s
