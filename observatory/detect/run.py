"""Detection's bookkeeping, pure: the state keys and windows of an incremental run, reconciling new detections
with stored incidents, and the end of the data. The run itself (reading the store, saving, the watermark) is
`observatory.service.run_detection`.

Restart-safe by `reconcile`: new detections are matched to stored incidents (same country and kind,
overlapping time) and keep their ids, so running twice, or after a crash, never duplicates or renumbers an
incident.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from observatory.incident import Incident
from observatory.series import SeriesCell
from observatory.signals import SignalPoint
from observatory.vocab import Status

WATERMARK_KEY = "detect.seq"
SIGNALS_KEY = "detect.signals"
SPAN_KEY = "detect.signals_span"  # 'first|last' of signals imported since the last run (any time, old or new)
SIGNAL_HISTORY = timedelta(days=7)  # outside-in baselines look back this far
TRAILING = timedelta(hours=26)  # history before the new data that the baselines need
SCREEN_SECONDS = 3600
SCREEN_MIN_CELLS = 20_000  # hourly cells below which every country gets the fine look
WARMUP = timedelta(hours=6)  # after this much history the baselines are settled: incidents there are re-judged


@dataclass(frozen=True, slots=True)
class DetectRun:
    examined_since: datetime | None
    examined_until: datetime | None
    cells: int
    detected: int
    saved: tuple[Incident, ...]
    watermark: int


def data_ends(cells: Sequence[SeriesCell], signals: Sequence[SignalPoint], bucket_seconds: int) -> dict[str, datetime]:
    """Per country, the end of the newest bucket its measurements or its signals describe ("" for all)."""
    step = timedelta(seconds=bucket_seconds)
    ends: dict[str, datetime] = {}
    for country, t in [(c.country, c.bucket + step) for c in cells] + [(p.country, p.time + step) for p in signals]:
        for key in (country, ""):
            if key not in ends or t > ends[key]:
                ends[key] = t
    return ends


def within_data(incidents: Sequence[Incident], ends: dict[str, datetime]) -> list[Incident]:
    """The end of the data is not an event (#21): a probes' incident that starts once its country's data has
    ended (another country's later data stretching the examined time) is dropped, and one confirmed only
    after that end goes back to suspected: nothing was seen then, so nothing can have been confirmed."""
    out = []
    for inc in incidents:
        end = ends.get(inc.country or "")
        if end is None or inc.start < end:
            if end is not None and inc.confirmed_at is not None and inc.confirmed_at >= end and inc.end is None:
                inc = inc.with_(confirmed_at=None, status=Status.SUSPECTED)
            out.append(inc)
    return out


def _countries_of(inc: Incident) -> set[str]:
    """The countries an incident concerns: its own, or for a platform's outage across countries, theirs."""
    if inc.country:
        return {inc.country}
    return set(inc.evidence.countries or ())


def _parse_span(value: str | None) -> tuple[datetime, datetime] | None:
    if not value or "|" not in value:
        return None
    try:
        a, b = (datetime.fromisoformat(v) for v in value.split("|", 1))
    except ValueError:
        return None
    return a, b


def _overlap_seconds(a: Incident, b: Incident) -> float:
    far = datetime.max.replace(tzinfo=a.start.tzinfo)
    lo = max(a.start, b.start)
    hi = min(a.end or far, b.end or far)
    return (hi - lo).total_seconds()


def reconcile(detected: Sequence[Incident], stored: Sequence[Incident], *,
              edge: datetime | None = None) -> list[Incident]:
    """Detections matched to stored incidents (same country and kind, overlapping time) keep the stored id.

    A detection that starts at the edge of the examined window (`edge`) may be the tail of a stored incident
    that began earlier: it keeps the stored start and confirmation time. Analysts' reviews are kept.
    """
    free = list(stored)
    used_ids: set[str] = {s.id for s in stored}
    out: list[Incident] = []
    for d in detected:
        candidates = [s for s in free if s.country == d.country and s.kind == d.kind and _overlap_seconds(s, d) >= 0]
        if candidates:
            s = max(candidates, key=lambda s: (_overlap_seconds(s, d), s.id))
            free.remove(s)
            start, confirmed = d.start, d.confirmed_at
            if edge is not None and d.start <= edge and s.start < d.start:
                start = s.start
            if s.confirmed_at is not None and (confirmed is None or s.confirmed_at < confirmed):
                confirmed = s.confirmed_at if s.confirmed_at >= start else confirmed
            out.append(d.with_(id=s.id, start=start, confirmed_at=confirmed, review=s.review))
            continue
        new_id, n = d.id, 1
        while new_id in used_ids:
            n += 1
            new_id = f"{d.id}-{n}"
        used_ids.add(new_id)
        out.append(d.with_(id=new_id))
    return out
