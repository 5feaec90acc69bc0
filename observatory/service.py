"""The one place where the pipeline meets the world: read the store, detect, save, report, alert.

`detect/` and `report/` are pure (plain data in, plain data out). This thin module does their I/O around them:
`run_detection` reads what changed since the last run, calls the detector, reconciles with and saves to the
store; `report_for` gathers one incident's context from the store for the renderers; `deliver` posts webhooks
and keeps the "sent once" state in the store. The CLI commands, the service's scheduler (`serve`) and the
demo all go through here, so each step has one implementation.

Detection is incremental: only countries and times that received measurements since the last run
(`changes_since`, late data included), and the times newly imported signals describe, are re-examined, with a
trailing window before them for the baselines. The first run on a store, and a full one, look at everything it
holds. Restart-safe: new detections are matched to stored incidents (same country and kind, overlapping time)
and keep their ids, so running twice, or after a crash, never duplicates or renumbers an incident. The
watermark is saved last.

Delivery is at least once, never twice after a success: see `observatory.report.deliver` for the key, the
signature and the retry policy.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import httpx

from observatory.detect import DetectConfig, detect_incidents
from observatory.detect.outside import SignalConfig, fuse, heartbeat_points, signal_incidents
from observatory.detect.run import (
    SCREEN_MIN_CELLS,
    SCREEN_SECONDS,
    SIGNAL_HISTORY,
    SIGNALS_KEY,
    SPAN_KEY,
    TRAILING,
    WARMUP,
    WATERMARK_KEY,
    DetectRun,
    _countries_of,
    _parse_span,
    data_ends,
    reconcile,
    within_data,
)
from observatory.detect.screen import candidate_countries, down_alarms, screen
from observatory.errors import ConfigError
from observatory.incident import Incident
from observatory.report.charts import chart_window
from observatory.report.context import DEFAULT_WINDOW
from observatory.report.deliver import (
    DEFAULT_STAGES,
    DELIVERY_HEADER,
    SIGNATURE_HEADER,
    Delivery,
    Webhook,
    payload,
    sign,
    state_key,
)
from observatory.report.feed import stages
from observatory.report.history import DEFAULT_LOOKBACK
from observatory.report.render import Report, build_report
from observatory.series import SeriesCell
from observatory.signals import SignalPoint
from observatory.signals.view import normalised_lines
from observatory.store.base import IncidentFilter, Store
from observatory.vocab import TECHNIQUES

SIGNAL_BASELINE = timedelta(days=7)  # the week before the chart gives each signal its usual level

__all__ = ["DetectRun", "Webhook", "alerting_detector", "deliver", "load_incident", "note_signal_span", "post",
           "report_for", "run_detection", "stored_incidents", "with_examples"]


# --- detection: read what changed, detect, reconcile, save, advance the watermark


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



# --- reports: one incident and what the renderers need around it


def load_incident(store: Store, incident_id: str) -> Incident:
    inc = store.incident(incident_id)
    if inc is None:
        raise ConfigError(f"incident {incident_id!r} is not in the store {store.url} "
                          "(list them with `observatory detect --format json`)")
    return inc



def report_for(store: Store, incident_id: str, *, now: datetime | None = None, chart: bool = True, card: bool = False,
               event_window: timedelta = DEFAULT_WINDOW, lookback: timedelta = DEFAULT_LOOKBACK,
               bucket_seconds: int = 300, claim: str = "technical_fault") -> Report:
    inc = load_incident(store, incident_id)
    candidates = []
    if inc.country:
        candidates = store.incidents(IncidentFilter(country=inc.country, since=inc.start - lookback,
                                                    until=inc.start, limit=500))
    events = store.events(country=inc.country, since=inc.start - event_window,
                          until=(inc.end or now or inc.start) + timedelta(hours=13)) if inc.country else []
    start, end = chart_window(inc)
    cells = store.series(since=start, until=end, bucket_seconds=bucket_seconds,
                         countries=[inc.country] if inc.country else None)
    crowd = store.user_report_counts(country=inc.country, since=inc.start - timedelta(hours=1),
                                     until=inc.end or now or inc.start + timedelta(days=2)) if inc.country else []
    signals = []
    if inc.country and chart:
        points = store.signal_points(since=start - SIGNAL_BASELINE, until=end, countries=[inc.country])
        signals = normalised_lines(points, since=start, until=end, baseline_until=inc.start)
    return build_report(inc, history_candidates=candidates, events=events, cells=cells, now=now, chart=chart, card=card,
                        event_window=event_window, lookback=lookback, claim=claim, user_reports=crowd,
                        signals=signals)



# --- alerts: webhooks, signed, retried, never twice after a success


def post(hook: Webhook, body: bytes, *, delivery_key: str, client: httpx.Client,
         sleep: Callable[[float], None] = time.sleep) -> tuple[bool, int, int | None, str | None]:
    """POSTs with retries: (ok, attempts made, last status, last error)."""
    headers = {"Content-Type": "application/json", DELIVERY_HEADER: delivery_key,
               "User-Agent": "observatory-alerts"}
    if hook.secret:
        headers[SIGNATURE_HEADER] = sign(body, hook.secret)
    status: int | None = None
    error: str | None = None
    for attempt in range(1, hook.attempts + 1):
        try:
            resp = client.post(hook.url, content=body, headers=headers, timeout=hook.timeout)
            status, error = resp.status_code, None
            if 200 <= status < 300:
                return True, attempt, status, None
            if status < 500 and status != 429:
                return False, attempt, status, f"rejected with HTTP {status}"
            error = f"HTTP {status}"
        except httpx.TimeoutException:
            status, error = None, "timed out"
        except httpx.TransportError as exc:
            status, error = None, f"connection failed: {exc}"
        if attempt < hook.attempts:
            sleep(hook.backoff * 2 ** (attempt - 1))
    return False, hook.attempts, status, error



def deliver(store: Store, incidents: Iterable[Incident], hooks: Sequence[Webhook], *,
            stages_wanted: Sequence[str] = DEFAULT_STAGES, base_url: str | None = None,
            client: httpx.Client | None = None, sleep: Callable[[float], None] = time.sleep) -> list[Delivery]:
    """Sends each incident's reached stages (oldest first) to each webhook, once ever. Failed deliveries are
    not marked and are tried again on the next run."""
    own = client is None
    http = client or httpx.Client(follow_redirects=False)
    out: list[Delivery] = []
    try:
        pending = sorted(((when, stage, inc) for inc in incidents for stage, when in stages(inc)
                          if stage in stages_wanted), key=lambda x: x[0])
        for hook in hooks:
            for _, stage, inc in pending:
                key = state_key(hook, inc, stage)
                if store.get_state(key) is not None:
                    continue
                body = json.dumps(payload(inc, stage, style=hook.style, base_url=base_url),
                                  separators=(",", ":"), ensure_ascii=False).encode()
                ok, attempts, status, error = post(hook, body, delivery_key=key, client=http, sleep=sleep)
                if ok:
                    store.set_state(key, str(status))
                out.append(Delivery(webhook=hook.key, incident=inc.id, stage=stage, ok=ok, attempts=attempts,
                                    status=status, error=error))
    finally:
        if own:
            http.close()
    return out



def alerting_detector(hooks: Sequence[Webhook], base_url: str) -> Callable[[Store], DetectRun]:
    """Incremental detection, then the webhooks for what it saved (deduplicated in the store): the scheduler's
    job when `serve` is given webhooks."""

    def detect_and_alert(store: Store) -> DetectRun:
        result = run_detection(store)
        if result.saved:
            deliver(store, result.saved, hooks, base_url=base_url)
        return result

    return detect_and_alert
