"""The one place detection touches the store: read new data's series, detect, reconcile, save, advance.

Incremental: only countries and times that received measurements since the last run (`changes_since`,
late data included), and the times newly imported signals describe, are re-examined, with a trailing window
before them for the baselines. The first run on a store, and a full one, look at everything it holds. Restart-safe: new
detections are matched to stored incidents (same country and kind, overlapping time) and keep their ids, so
running twice, or after a crash, never duplicates or renumbers an incident. The watermark is saved last.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from observatory.detect import DetectConfig, detect_incidents
from observatory.detect.outside import SignalConfig, fuse, heartbeat_points, signal_incidents
from observatory.detect.screen import candidate_countries, down_alarms, screen
from observatory.incident import Incident
from observatory.series import SeriesCell
from observatory.signals import SignalPoint
from observatory.store.base import IncidentFilter, Store
from observatory.vocab import TECHNIQUES, Status

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


def run_detection(store: Store, *, config: DetectConfig | None = None, full: bool = False,
                  trailing: timedelta = TRAILING, signal_config: SignalConfig | None = None) -> DetectRun:
    cfg = config or DetectConfig()
    since_seq = 0 if full else int(store.get_state(WATERMARK_KEY) or 0)
    changes = store.changes_since(since_seq)
    # outside-in signals arrive when measurements cannot (a shutdown silences the probes): they count as news
    signals_now = _signals_version(store)
    signals_seen = store.get_state(SIGNALS_KEY) if signals_now is not None else None
    signals_new = signals_now is not None and (full or signals_now != signals_seen)
    pending = store.get_state(SPAN_KEY) if signals_now is not None else None
    if not changes.spans and not signals_new:
        return DetectRun(None, None, 0, 0, (), changes.max_seq)
    spans = list(changes.spans.values())
    if signals_new and signals_now:
        spans += _signal_spans(store, signals_now, whole=full or signals_seen is None, pending=pending,
                               measured=bool(changes.spans))
    if not spans:  # an empty signals table changed nothing
        if signals_now is not None:
            store.set_state(SIGNALS_KEY, signals_now)
        return DetectRun(None, None, 0, 0, (), changes.max_seq)
    lo = min(a for a, _ in spans) - trailing
    latest = max(b for _, b in spans)
    # everything after the new data matters too: a late measurement can start or extend an incident in the past
    top = getattr(store, "latest_time", None)
    hi = max(latest, top() or latest) if callable(top) else latest
    until = hi + timedelta(seconds=cfg.bucket_seconds)
    stored = store.incidents(IncidentFilter(since=lo, limit=1_000_000))
    # a full run looks at every country; an incremental one at the countries that received data and those with
    # incidents in the window (a platform's own outage is judged across countries: its countries are stored in
    # its evidence). Of those, only the ones whose hourly counts show anything at all get the fine look (at
    # scale, most are quiet)
    scope: list[str] | None = None
    if not full and changes.spans:
        scope = sorted(set(changes.spans) | {c for s in stored for c in _countries_of(s)})
    coarse = getattr(store, "network_series", None)
    countries: list[str] | None = scope
    if callable(coarse):
        hourly = coarse(since=lo, until=until, bucket_seconds=SCREEN_SECONDS, countries=scope)
        # the screen saves time at scale; on little data (a lab run, a young deployment) its hourly view is
        # too coarse to be trusted and the fine look is cheap anyway
        if len(hourly) > SCREEN_MIN_CELLS:
            countries = sorted(_screen(store, hourly, lo, until, scope, cfg))
    if countries == []:
        cells = []
    else:
        cells = store.series(since=lo, until=until, bucket_seconds=cfg.bucket_seconds, countries=countries)
    outside = _outside_points(store, lo, until, cfg)
    detected = within_data(detect_incidents(cells, config=cfg), data_ends(cells, outside, cfg.bucket_seconds))
    detected = fuse(detected, signal_incidents(outside, signal_config or SignalConfig()))
    edge = lo + trailing if not full else None
    saved = reconcile(detected, stored, edge=edge)
    saved = [with_examples(store, inc) for inc in saved]
    # stored incidents wholly inside the re-examined time that detection no longer finds (late data showed
    # the suspicion was noise) are removed, unless an analyst reviewed them
    kept = {i.id for i in saved}
    examined_from = lo if full else lo + min(trailing, WARMUP)
    stale = [s.id for s in stored if s.id not in kept and s.review is None and s.start >= examined_from]
    store.delete_incidents(stale)
    store.save_incidents(saved)
    store.set_state(WATERMARK_KEY, str(changes.max_seq))
    if signals_now is not None:
        store.set_state(SIGNALS_KEY, signals_now)
        if pending and store.get_state(SPAN_KEY) == pending:
            store.set_state(SPAN_KEY, "")
    return DetectRun(lo, until, len(cells), len(detected), tuple(saved), changes.max_seq)


def _screen(store: Store, hourly: list[SeriesCell], lo: datetime, until: datetime, scope: list[str] | None,
            cfg: DetectConfig) -> set[str]:
    """The countries worth the fine look: the hourly screen, told which probes lost their connection and which
    techniques the failing probes saw; the hours where a platform was seen down are looked at in 5-minute
    buckets (few series, few hours) before their country is let through."""
    failing = getattr(store, "failing_probes", None)
    techniques = getattr(store, "technique_probes", None)
    down = getattr(store, "down_counts", None)
    if not (callable(failing) and callable(techniques) and callable(down)):
        return candidate_countries(hourly, bucket_seconds=SCREEN_SECONDS, config=cfg)
    kw = {"since": lo, "until": until, "bucket_seconds": SCREEN_SECONDS, "countries": scope}
    countries, down_hours = screen(hourly, failing=failing(**kw), techniques=techniques(**kw),
                                   bucket_seconds=SCREEN_SECONDS, config=cfg)
    # an hour before (a run of evidence may begin there) to an hour after, per hour: one query per window
    windows: dict[int, set[tuple[str, int, str]]] = {}
    for country, asn, platform, t in down_hours:
        windows.setdefault(t, set()).add((country, asn, platform))
    for t, series in sorted(windows.items()):
        series = {s for s in series if s[0] not in countries}
        if series:
            start = datetime.fromtimestamp(t - SCREEN_SECONDS, UTC)
            counts = down(since=start, until=start + timedelta(seconds=3 * SCREEN_SECONDS),
                          bucket_seconds=cfg.bucket_seconds, series=sorted(series))
            countries |= down_alarms(counts, config=cfg)
    return countries


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


def _signals_version(store: Store) -> str | None:
    """'count|newest time' of outside-in signals and heartbeats, or None for a store without them."""
    version = getattr(store, "signals_version", None)
    return version() if callable(version) else None


def note_signal_span(store: Store, first: datetime, last: datetime) -> None:
    """Remembers the time an import described, for the next run: an imported history can lie anywhere, long
    before the newest data, and only the importer knows where."""
    prev = _parse_span(store.get_state(SPAN_KEY))
    if prev is not None:
        first, last = min(first, prev[0]), max(last, prev[1])
    store.set_state(SPAN_KEY, f"{first.isoformat()}|{last.isoformat()}")


def _parse_span(value: str | None) -> tuple[datetime, datetime] | None:
    if not value or "|" not in value:
        return None
    try:
        a, b = (datetime.fromisoformat(v) for v in value.split("|", 1))
    except ValueError:
        return None
    return a, b


def _signal_spans(store: Store, version: str, *, whole: bool, pending: str | None,
                  measured: bool) -> list[tuple[datetime, datetime]]:
    """The times new signals describe. A first or full run looks at every stored series from its first point;
    an incremental one at the span imports noted, and at the newest point for the pinger's and the collector's
    series (they only ever grow at the end). Heartbeats carry the collector's clock, measurements their own:
    that newest point is only looked at when no measurement arrived."""
    spans: list[tuple[datetime, datetime]] = []
    listing = getattr(store, "signal_series", None)
    if whole and callable(listing):
        series = listing()
        if series:
            spans.append((min(s.first for s in series), max(s.last for s in series)))
    noted = _parse_span(pending)
    if noted is not None:
        spans.append(noted)
    newest = datetime.fromisoformat(version.split("|", 1)[1])
    if not spans and not measured and newest.year > 1970:
        spans.append((newest, newest))
    return spans


def _outside_points(store: Store, lo: datetime, until: datetime, cfg: DetectConfig) -> list[SignalPoint]:
    """Imported and pinger series, and the collector's heartbeats as a series, with history for baselines."""
    if _signals_version(store) is None:
        return []
    since = lo - SIGNAL_HISTORY
    points = store.signal_points(since=since, until=until)
    beats = store.heartbeats(since=since, until=until)
    if beats:
        points += heartbeat_points(beats, since=since, until=until, bucket_seconds=cfg.bucket_seconds,
                                   window_seconds=3 * cfg.bucket_seconds)
    return points


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


def with_examples(store: Store, inc: Incident, limit: int = 5) -> Incident:
    """Adds a few measurement ids that show the incident (the evidence an analyst opens first)."""
    end = inc.end or (inc.start + timedelta(days=1))
    verdicts = sorted(TECHNIQUES) if inc.kind != "platform_outage" else ["down"]
    if inc.kind == "connectivity_loss":
        verdicts = ["unreachable", *[t for t in sorted(TECHNIQUES) if t != "unreachable"]]
    uids = store.example_uids(country=inc.country, since=inc.start, until=end, asns=list(inc.asns),
                              platforms=list(inc.platforms), verdicts=verdicts, limit=limit)
    return inc.with_(evidence=replace(inc.evidence, example_measurements=tuple(uids)))


def stored_incidents(store: Store, *, country: str | None = None, since: datetime | None = None,
                     until: datetime | None = None) -> list[Incident]:
    out = store.incidents(IncidentFilter(country=country, since=since, until=until, limit=1_000_000))
    return sorted(out, key=lambda i: (i.start, i.id))
