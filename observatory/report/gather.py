"""Reads from the store what the pure renderers need for one incident: the incident, the country's earlier
incidents, context events and the series of the incident's day. The only store access in observatory.report
besides delivery's dedupe state."""

from __future__ import annotations

from datetime import datetime, timedelta

from observatory.errors import ConfigError
from observatory.incident import Incident
from observatory.report.charts import chart_window
from observatory.report.context import DEFAULT_WINDOW
from observatory.report.history import DEFAULT_LOOKBACK
from observatory.report.render import Report, build_report
from observatory.signals.view import normalised_lines
from observatory.store.base import IncidentFilter, Store

SIGNAL_BASELINE = timedelta(days=7)  # the week before the chart gives each signal its usual level


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
