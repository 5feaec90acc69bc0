"""/metrics in Prometheus' text exposition format: what an operator alerts on.

measurements ingested, detection lag (how long the newest stored data has waited for detection), incidents
open by status, and the scheduler's own health. Computed on request from the store and the scheduler's state.
"""

from __future__ import annotations

from datetime import UTC, datetime

from observatory.store import IncidentFilter, Store
from observatory.web.scheduler import DetectionScheduler

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _metric(lines: list[str], name: str, kind: str, help_: str, samples: list[tuple[str, float]]) -> None:
    lines.append(f"# HELP {name} {help_}")
    lines.append(f"# TYPE {name} {kind}")
    for labels, value in samples:
        lines.append(f"{name}{labels} {value:g}" if isinstance(value, float) else f"{name}{labels} {value}")


def detection_lag_seconds(store: Store, scheduler: DetectionScheduler, now: datetime) -> float:
    """0 when detection has seen everything stored; else the time since detection last finished (or started)."""
    st = scheduler.state
    pending = store.changes_since(st.seen_seq).spans
    if not pending:
        return 0.0
    since = st.last_finished or st.last_started
    return (now - since).total_seconds() if since else float("nan")


def render(store: Store, scheduler: DetectionScheduler, *, requests: dict[str, int] | None = None) -> str:
    now = datetime.now(UTC)
    lines: list[str] = []
    _metric(lines, "observatory_measurements_ingested_total", "counter",
            "Measurements stored (after deduplication).", [("", store.count())])
    _metric(lines, "observatory_detection_lag_seconds", "gauge",
            "Seconds the newest stored measurements have waited for detection (0: none waiting).",
            [("", round(detection_lag_seconds(store, scheduler, now), 3))])
    open_by_status: list[tuple[str, float]] = []
    for status in ("suspected", "confirmed"):
        n = len(store.incidents(IncidentFilter(status=status, limit=100_000)))
        open_by_status.append((f'{{status="{status}"}}', n))
    _metric(lines, "observatory_incidents_open", "gauge", "Incidents not yet ended, by status.", open_by_status)
    st = scheduler.state
    _metric(lines, "observatory_detection_runs_total", "counter", "Detection runs by the scheduler.",
            [("", st.runs)])
    _metric(lines, "observatory_detection_errors_total", "counter", "Detection runs that failed.",
            [("", st.errors)])
    _metric(lines, "observatory_detection_last_duration_seconds", "gauge", "Duration of the last detection run.",
            [("", round(st.last_duration, 6))])
    last = st.last_finished.timestamp() if st.last_finished else 0.0
    _metric(lines, "observatory_detection_last_run_timestamp_seconds", "gauge",
            "UNIX time the last detection run finished (0: never).", [("", round(last, 3))])
    if requests is not None:
        _metric(lines, "observatory_http_responses_total", "counter", "HTTP responses by status class.",
                [(f'{{code="{k}"}}', v) for k, v in sorted(requests.items())])
    return "\n".join(lines) + "\n"
