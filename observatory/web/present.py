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
from observatory.report.assess import assess_claim, network_transitions
from observatory.report.charts import chart_window
from observatory.report.cost import cost_text, estimate_cost
from observatory.report.crowd import user_reports_sentence
from observatory.report.history import history, history_sentence
from observatory.report.render import control_share, count_networks_measured
from observatory.report.statement import statement
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
    # the incident's day of series: how many networks were measured, whether control sites stayed up, whether
    # networks failed and recovered together -- the facts a "technical fault" claim is weighed against
    lo, hi = chart_window(inc)
    cells = store.series(since=lo, until=hi, bucket_seconds=300, countries=[inc.country]) if inc.country else []
    measured = count_networks_measured(inc, cells, now) if cells else None
    v.statement = statement(inc, history=earlier, events=events, now=now, networks_measured=measured)
    if inc.country:
        crowd = user_reports_sentence(inc, store.user_report_counts(
            country=inc.country, since=inc.start - timedelta(hours=1), until=inc.end or now or hi))
        if crowd:
            v.statement = f"{v.statement} {crowd}"
    v.history_text = history_sentence(history(inc, earlier))
    cost = estimate_cost(inc, now=now, networks_measured_count=measured)
    if cost is not None:
        v.cost_lines = cost_text(cost).splitlines()
    v.claim = assess_claim(
        inc, "technical_fault",
        control_reachability_share=control_share(inc, cells, now) if cells else None,
        transitions=network_transitions(inc, cells) if cells else None, previous=earlier,
        networks_measured=measured).to_json()
    return v


def timeline(inc: Incident) -> list[tuple[str, datetime | None]]:
    """suspected -> confirmed -> ended, each with its time (None: not reached yet)."""
    return [("suspected", inc.start), ("confirmed", inc.confirmed_at), ("ended", inc.end)]
