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
    cost_lines: list[str] = field(default_factory=list)
    claim: dict[str, Any] | None = None  # the "technical fault" claim weighed: conclusion, for, against


def history_of(store: Store, inc: Incident, *, days: int = 120) -> list[Incident]:
    """Earlier incidents in the same country (newest first), the record a reader compares this one with."""
    if inc.country is None:
        return []
    earlier = store.incidents(IncidentFilter(country=inc.country, since=inc.start - timedelta(days=days),
                                             until=inc.start, limit=50))
    return [e for e in review.attach_all(store, earlier) if e.id != inc.id and e.start < inc.start]


def events_near(store: Store, inc: Incident) -> list[ContextEvent]:
    if inc.country is None:
        return []
    end = inc.end or inc.start + timedelta(hours=12)
    return store.events(country=inc.country, since=inc.start - timedelta(days=2), until=end + timedelta(hours=6))


def view(store: Store, inc: Incident, *, now: datetime | None = None) -> IncidentView:
    """Everything the incident page shows, in observatory.report's words where it has them."""
    inc = review.attach(store, inc)
    earlier = history_of(store, inc)
    events = events_near(store, inc)
    v = IncidentView(incident=inc, statement=plain_statement(inc), history=earlier, events=events)
    try:
        from observatory.report.assess import assess_claim
        from observatory.report.cost import cost_text, estimate_cost
        from observatory.report.history import history, history_sentence
        from observatory.report.statement import statement
    except ImportError:  # pragma: no cover - the reports ship with the package
        if earlier:
            v.history_text = (f"The {_ordinal(len(earlier) + 1)} incident in {country_name(inc.country)} "
                              f"in {(inc.start - min(h.start for h in earlier)).days} days.")
        return v
    v.statement = statement(inc, history=earlier, events=events, now=now)
    v.history_text = history_sentence(history(inc, earlier))
    cost = estimate_cost(inc, now=now)
    if cost is not None:
        v.cost_lines = cost_text(cost).splitlines()
    if inc.country is not None:
        v.claim = assess_claim(inc, "technical_fault").to_json()
    return v


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def timeline(inc: Incident) -> list[tuple[str, datetime | None]]:
    """suspected -> confirmed -> ended, each with its time (None: not reached yet)."""
    return [("suspected", inc.start), ("confirmed", inc.confirmed_at), ("ended", inc.end)]
