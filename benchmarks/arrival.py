"""Confirmation time at arrival: when a live observatory could have confirmed each true incident.

`benchmarks/detection.py` measures confirmation as the detector's `confirmed_at`, the time of the measurement
that completed the evidence. A live observatory sees a measurement only once it has been uploaded, and
volunteers upload late (the simulator's `uploads` family: up to 24 or 72 hours). The replay here ingests a
world's lines in upload order into a fresh DuckDB store and, at cut-off times from the full-data confirmation of
each matched true incident onward (+0, 5, 10 ... 1440 minutes), runs the same `run_detection(store, full=True)`;
the honest confirmation is the first cut-off at which an incident matching the truth (the scorer's `claims` and
`match`) is stored confirmed or ended. The cut-off grid bounds its resolution: a hit at +5 may have been
possible at +1. Outside-in signals count from their own time (IODA publishes within minutes).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from statistics import median

from observatory.detect.score import claims, match
from observatory.incident import Incident
from observatory.ingest import Ingestor
from observatory.service import run_detection, stored_incidents
from observatory.signals import SignalPoint
from observatory.store import Store, open_store

# minutes after the full-data confirmation at which the replay looks (stopping at the first hit)
CUTOFF_MINUTES = (0, 5, 10, 15, 20, 30, 45, 60, 90, 120, 180, 240, 360, 720, 1440)


def cutoffs(confirmed_at: datetime) -> list[datetime]:
    return [confirmed_at + timedelta(minutes=m) for m in CUTOFF_MINUTES]


class Feed:
    """A world's lines (in upload order, with their upload times) and signals, ingested up to a cut-off at a
    time: each call ingests only what arrived since the last."""

    def __init__(self, store: Store, lines: Sequence[bytes], uploads: Sequence[float],
                 signals: Sequence[SignalPoint] = ()) -> None:
        if len(lines) != len(uploads):
            raise ValueError(f"{len(lines)} lines but {len(uploads)} upload times")
        self.store, self.lines, self.uploads = store, lines, uploads
        self.signals = sorted(signals, key=lambda p: p.time)
        self.done = self.signals_done = 0

    def until(self, cut: datetime) -> None:
        edge = cut.timestamp()
        end = self.done
        while end < len(self.lines) and self.uploads[end] <= edge:
            end += 1
        if end > self.done:
            with Ingestor(self.store) as ing:
                for i in range(self.done, end):
                    ing.ingest_bytes(self.lines[i], where="replay", line=i + 1)
            self.done = end
        more = self.signals_done
        while more < len(self.signals) and self.signals[more].time <= cut:
            more += 1
        if more > self.signals_done:
            self.store.insert_signals(self.signals[self.signals_done:more])
            self.signals_done = more


def read_lines(data: Path) -> list[bytes]:
    lines = data.read_bytes().split(b"\n")
    return lines[:-1] if lines and not lines[-1] else lines


def replay(lines: Sequence[bytes], uploads: Sequence[float], truth: Sequence[Incident], detected: Sequence[Incident],
           workdir: Path, signals: Sequence[SignalPoint] = ()) -> list[float]:
    """Minutes from onset to honest confirmation of each true incident the full data confirmed (matched as the
    scorer does), in truth order; math.inf where no cut-off up to the last one holds it confirmed. `lines` in
    upload order, `uploads` their upload times (epoch seconds)."""
    found = claims(detected)
    plan: dict[int, list[datetime]] = {}
    for ti, di in match(found, truth):
        if (confirmed := found[di].confirmed_at) is not None:
            plan[ti] = cutoffs(confirmed)
    honest: dict[int, datetime] = {}
    db = workdir / "arrival.duckdb"
    db.unlink(missing_ok=True)
    store = open_store(str(db))
    try:
        feed = Feed(store, lines, uploads, signals)
        for cut in sorted({c for cs in plan.values() for c in cs}):
            pending = [ti for ti, cs in plan.items() if ti not in honest and cut in cs]
            if not pending:
                continue
            feed.until(cut)
            run_detection(store, full=True)
            held = _held(claims(stored_incidents(store)), truth, cut, pending)
            honest.update((ti, cut) for ti in pending if ti in held)
    finally:
        store.close()
        db.unlink(missing_ok=True)
    return [(honest[ti] - truth[ti].start).total_seconds() / 60 if ti in honest else math.inf
            for ti in sorted(plan)]


def _held(stored: Sequence[Incident], truth: Sequence[Incident], cut: datetime, pending: Sequence[int]) -> set[int]:
    """The truths matched (the scorer's one-to-one matching) by the incidents stored at `cut`, among the truths
    begun by then: an open incident overlaps every later truth as well, and must not be given to one of those."""
    live = [ti for ti, t in enumerate(truth) if t.start <= cut or ti in pending]
    return {live[ti] for ti, _ in match(stored, [truth[ti] for ti in live])}


class Arrivals:
    """Honest confirmation minutes gathered under keys (overall, per scenario, per family option)."""

    def __init__(self) -> None:
        self.minutes: dict[tuple[str, ...], list[float]] = {}

    def add(self, key: tuple[str, ...], minutes: Sequence[float]) -> None:
        self.minutes.setdefault(key, []).extend(minutes)

    def median(self, key: tuple[str, ...]) -> float | None:
        xs = self.minutes.get(key)
        return round(median(xs), 1) if xs else None

    def summary(self, key: tuple[str, ...]) -> dict[str, float | int | None]:
        xs = self.minutes.get(key, [])
        return {"confirm_arrival_median_min": self.median(key),
                "arrival_unconfirmed": sum(1 for x in xs if x == math.inf)}
