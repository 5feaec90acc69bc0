"""Context events: what was happening when the disruption began (a rally, an election, exam day).

An event is mentioned when it falls within the incident or starts within a window before it: a shutdown
ordered two hours before a rally is part of the story; a rally a month earlier is not.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from observatory.incident import Incident
from observatory.report.countries import local_date, local_time
from observatory.report.facts import duration_text
from observatory.store.base import ContextEvent

DEFAULT_WINDOW = timedelta(hours=48)
# an ongoing incident "covers" the hours after its start until a report is written; events scheduled in the
# next hours are relevant (a rally announced for 20:00 when access went at 19:05)
ONGOING_AHEAD = timedelta(hours=12)


def relevant_events(inc: Incident, events: Iterable[ContextEvent], *, window: timedelta = DEFAULT_WINDOW,
                    now: datetime | None = None) -> list[ContextEvent]:
    """Events of the incident's country that overlap it or start within `window` before its start."""
    if inc.country is None:
        return []
    end = inc.end or max(now or inc.start, inc.start) + ONGOING_AHEAD
    return sorted(
        (e for e in events if e.country.upper() == inc.country.upper() and inc.start - window <= e.time <= end),
        key=lambda e: e.time,
    )


def event_sentence(inc: Incident, e: ContextEvent) -> str:
    """One sentence relating an event to the incident, in the country's local time."""
    cc = inc.country
    when = local_time(e.time, cc)
    if local_date(e.time, cc) != local_date(inc.start, cc):
        when += f" on {local_date(e.time, cc, year=False)}"
    gap = duration_text(abs((e.time - inc.start).total_seconds()))
    if e.time < inc.start:
        return f"It began {gap} after {e.title} ({when})."
    if e.time == inc.start:
        return f"It began at the time of {e.title} ({when})."
    return f"It began {gap} before {e.title} ({when})."


def context_sentences(inc: Incident, events: Iterable[ContextEvent], *, window: timedelta = DEFAULT_WINDOW,
                      now: datetime | None = None) -> list[str]:
    return [event_sentence(inc, e) for e in relevant_events(inc, events, window=window, now=now)]
