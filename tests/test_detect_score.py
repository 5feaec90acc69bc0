"""Scoring against the truth: the sampling gap around an edge, and an incident left open counted as a miss."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

from observatory.detect.score import EDGE_TARGET_MINUTES, sampling_gap, score
from observatory.incident import Assessment, Incident

T = datetime(2024, 1, 20, 13, 40, tzinfo=UTC)


def _incident(start: datetime, end: datetime | None, *, confirmed: bool = True) -> Incident:
    return Incident(id=f"PK-{start:%H%M}", country="PK", kind="platform_restriction", scope="national",
                    asns=(17557,), regions=(), platforms=("twitter",), techniques=("tls_interference",),
                    start=start, end=end, status="ended" if end else "confirmed",
                    confirmed_at=start + timedelta(minutes=10) if confirmed else None, confidence=0.9,
                    assessment=Assessment(deliberate=0.8, reasons=()), evidence={})


def test_the_sampling_gap_is_between_the_measurements_that_bracket_the_edge() -> None:
    times = [T - timedelta(minutes=50), T - timedelta(minutes=5), T + timedelta(minutes=25)]
    assert sampling_gap(T, times) == 30
    assert sampling_gap(T - timedelta(minutes=50), times) is None  # nothing before it
    assert sampling_gap(T + timedelta(hours=1), times) is None  # nothing after it


def test_an_edge_missed_in_a_wide_gap_is_not_avoidable_and_one_in_a_narrow_gap_is() -> None:
    truth = [_incident(T, T + timedelta(hours=3))]
    late = [_incident(T + timedelta(minutes=25), T + timedelta(hours=3))]
    wide = score(late, truth, gaps=[(70.0, 5.0)])
    assert wide.avoidable_edge_misses() == 0 and wide.edges_within_target() == 0.5
    narrow = score(late, truth, gaps=[(2 * EDGE_TARGET_MINUTES, 5.0)])
    assert narrow.avoidable_edge_misses() == 1


def test_an_incident_still_open_when_the_truth_had_ended_is_an_end_miss() -> None:
    truth = [_incident(T, T + timedelta(hours=3))]
    s = score([_incident(T, None)], truth, gaps=[(5.0, 5.0)])
    assert s.end_error_minutes == [math.inf]
    assert s.avoidable_edge_misses() == 1 and s.summary()["end_err_worst_min"] == math.inf
