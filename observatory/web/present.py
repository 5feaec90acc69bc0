"""What the pages show about an incident, computed from the store's records.

The words (statement, history, assessment, cost, feed) belong to observatory.report; this module gathers the
records report needs (the incident, its country's earlier incidents, context events) and asks it. Until a
report function is available the page still works with a plain, factual summary built here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from observatory import catalog
from observatory.incident import Incident
from observatory.store import ContextEvent, IncidentFilter, Store
from observatory.web import review
from observatory.web.queries import country_name


def platform_names(ids: tuple[str, ...] | list[str]) -> str:
    names = [catalog.display_name(p) for p in ids]
    if len(names) <= 1:
        return "".join(names)
    return ", ".join(names[:-1]) + " and " + names[-1]


def headline(inc: Incident) -> str:
    """One line for lists: 'X/Twitter, Facebook restricted in Pakistan'."""
    where = country_name(inc.country)
    what = platform_names(inc.platforms)
    return {
        "platform_restriction": f"{what} restricted in {where}",
        "throttling": f"{what} throttled in {where}",
        "connectivity_loss": f"Internet connectivity lost in {where}",
        "platform_outage": f"{what} outage ({where.lower() if inc.country is None else where})",
    }.get(inc.kind, f"{inc.kind.replace('_', ' ')} in {where}")


def plain_statement(inc: Incident) -> str:
    """A factual sentence from the incident's fields (used when observatory.report is not available)."""
    status = {"suspected": "Suspected", "confirmed": "Confirmed", "ended": "Ended"}.get(inc.status, inc.status)
    scope = {"national": "a nation-scale", "regional": "a regional", "network": "a network-level"}.get(
        inc.scope, "a")
    kind = inc.kind.replace("_", " ")
    target = f" to {platform_names(inc.platforms)}" if inc.platforms else ""
    where = f" across {country_name(inc.country)}" if inc.country else " worldwide"
    since = inc.start.strftime("%Y-%m-%d %H:%M UTC")
    text = f"{status}: metrics show {scope} {kind}{target}{where}, since {since}."
    if inc.asns:
        text += f" Seen on {len(inc.asns)} network{'s' if len(inc.asns) != 1 else ''}."
    if inc.techniques:
        text += f" Consistent with {', '.join(t.replace('_', ' ') for t in inc.techniques)}."
    if inc.end is not None:
        hours = (inc.end - inc.start).total_seconds() / 3600
        text += f" Ended {inc.end.strftime('%Y-%m-%d %H:%M UTC')} after {hours:.1f} hours."
    return text


@dataclass(slots=True, kw_only=True)
class IncidentView:
    incident: Incident
    statement: str
    history: list[Incident] = field(default_factory=list)
    history_text: str | None = None
    events: list[ContextEvent] = field(default_factory=list)
    cost: dict[str, Any] | None = None
    cost_text: str | None = None


def history_of(store: Store, inc: Incident, *, days: int = 120) -> list[Incident]:
    """Earlier incidents in the same country (newest first), the record a reader compares this one with."""
    if inc.country is None:
        return []
    earlier = store.incidents(IncidentFilter(country=inc.country, since=inc.start - timedelta(days=days),
                                             until=inc.start, limit=50))
    return [e for e in earlier if e.id != inc.id and e.start < inc.start]


def events_near(store: Store, inc: Incident) -> list[ContextEvent]:
    if inc.country is None:
        return []
    end = inc.end or inc.start + timedelta(hours=12)
    return store.events(country=inc.country, since=inc.start - timedelta(days=2), until=end + timedelta(hours=6))


def statement(inc: Incident, history: list[Incident], events: list[ContextEvent]) -> str:
    try:
        from observatory.report import statement as report_statement  # type: ignore[attr-defined]
    except ImportError:
        return plain_statement(inc)
    return str(report_statement(inc, history=history, events=events))  # pragma: no cover - report landed


def view(store: Store, inc: Incident) -> IncidentView:
    inc = review.attach(store, inc)
    history = history_of(store, inc)
    events = events_near(store, inc)
    history_text = None
    if history:
        first = min(h.start for h in history)
        days = (inc.start - first).total_seconds() / 86400
        history_text = (f"The {_ordinal(len(history) + 1)} incident in {country_name(inc.country)} in "
                        f"{days:.0f} days.")
    return IncidentView(incident=inc, statement=statement(inc, history, events), history=history,
                        history_text=history_text, events=events)


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def timeline(inc: Incident) -> list[tuple[str, datetime | None]]:
    """suspected -> confirmed -> ended, each with its time (None: not reached yet)."""
    return [("suspected", inc.start), ("confirmed", inc.confirmed_at), ("ended", inc.end)]
