"""The report: statement, history, context, claim assessment, cost and chart, rendered as text, Markdown,
JSON or self-contained HTML (the chart embedded, no external resources), and as an HTML fragment the
dashboard's incident page can include.

Pure: `build_report` takes the records (the incident, candidate history, context events, series cells) and
returns a `Report`; the renderers turn a Report into text. Reading the store is `gather.py`'s job.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from html import escape
from typing import Any

from observatory import catalog, encoding
from observatory.errors import ConfigError
from observatory.incident import Incident
from observatory.report.assess import ClaimAssessment, assess_claim, assessment_text, network_transitions
from observatory.report.card import card_title, share_card
from observatory.report.charts import incident_chart
from observatory.report.context import DEFAULT_WINDOW, relevant_events
from observatory.report.cost import ATTRIBUTION, CostEstimate, cost_text, estimate_cost, money
from observatory.report.countries import country_name, local_date, local_time
from observatory.report.crowd import user_reports_sentence
from observatory.report.history import DEFAULT_LOOKBACK, History, history, history_sentence
from observatory.report.statement import statement_parts
from observatory.series import SeriesCell
from observatory.signals.view import SignalLine
from observatory.store.base import ContextEvent

FORMATS = ("text", "md", "json", "png", "card", "html")


@dataclass(frozen=True, slots=True, kw_only=True)
class Report:
    incident: Incident
    statement: str
    history: History
    events: tuple[ContextEvent, ...]
    assessment: ClaimAssessment
    cost: CostEstimate | None
    networks_measured: int | None
    chart_png: bytes | None = None
    card_png: bytes | None = None  # the 1200x675 share card (card.py)
    notes: tuple[str, ...] = field(default_factory=tuple)


def incident_span(inc: Incident, now: datetime | None) -> tuple[datetime, datetime]:
    end = inc.end or now or inc.start + timedelta(hours=1)
    return inc.start, max(end, inc.start + timedelta(minutes=5))


def count_networks_measured(inc: Incident, cells: Iterable[SeriesCell], now: datetime | None = None) -> int | None:
    """Networks with judged measurements in the country while the incident lasted (None without cells)."""
    start, end = incident_span(inc, now)
    asns = {c.asn for c in cells if c.country == inc.country and start <= c.bucket < end
            and (c.ok + c.anomalous + c.down) > 0}
    return len(asns) or None


def count_regions_measured(inc: Incident, cells: Iterable[SeriesCell], now: datetime | None = None) -> int | None:
    """Regions with judged measurements in the country while the incident lasted (None without regional cells)."""
    start, end = incident_span(inc, now)
    regions = {c.region for c in cells if c.country == inc.country and c.region and start <= c.bucket < end
               and (c.ok + c.anomalous + c.down) > 0}
    return len(regions) or None


def control_share(inc: Incident, cells: Iterable[SeriesCell], now: datetime | None = None) -> float | None:
    """Share of control-site measurements that succeeded on the affected networks during the incident."""
    start, end = incident_span(inc, now)
    ok = judged = 0
    for c in cells:
        if (c.platform == catalog.CONTROL and c.country == inc.country and start <= c.bucket < end
                and (not inc.asns or c.asn in inc.asns)):
            ok += c.ok
            judged += c.ok + c.anomalous + c.down
    return ok / judged if judged else None


def build_report(inc: Incident, *, history_candidates: Iterable[Incident] = (),
                 events: Iterable[ContextEvent] = (), cells: Sequence[SeriesCell] = (), now: datetime | None = None,
                 event_window: timedelta = DEFAULT_WINDOW, lookback: timedelta = DEFAULT_LOOKBACK,
                 chart: bool = False, card: bool = False, claim: str = "technical_fault",
                 user_reports: Iterable[tuple[str, str, str, int]] = (),
                 signals: Sequence[SignalLine] = ()) -> Report:
    candidates = list(history_candidates)
    events = list(events)
    measured = count_networks_measured(inc, cells, now) if cells else None
    text = " ".join(statement_parts(inc, history=candidates, events=events, networks_measured=measured,
                                    event_window=event_window, lookback=lookback, now=now))
    crowd = user_reports_sentence(inc, user_reports)
    if crowd:
        text = f"{text} {crowd}"
    hist = history(inc, candidates, lookback=lookback)
    notes = []
    if not cells:
        notes.append("No measurement series were available for this incident's day: " +
                     ("the chart shows the outside-in signals only" if chart and signals else "no chart") +
                     ", and network counts come from the incident's evidence.")
    png = incident_chart(inc, cells, previous=hist.previous, signals=signals) if chart and (cells or signals) else None
    related = tuple(relevant_events(inc, events, window=event_window, now=now))
    card_png = share_card(inc, cells, related) if card and cells else None
    return Report(
        incident=inc, statement=text, history=hist,
        events=related,
        assessment=assess_claim(inc, claim, control_reachability_share=control_share(inc, cells, now)
                                if cells else None, transitions=network_transitions(inc, cells) if cells else None,
                                previous=hist.previous, networks_measured=measured),
        cost=estimate_cost(inc, now=now, networks_measured_count=measured,
                           regions_measured_count=count_regions_measured(inc, cells, now) if cells else None),
        networks_measured=measured, chart_png=png, card_png=card_png, notes=tuple(notes),
    )


def _facts(r: Report) -> list[tuple[str, str]]:
    inc = r.incident
    cc = inc.country
    rows = [
        ("Incident", inc.id),
        ("Status", inc.status),
        ("Kind", inc.kind.replace("_", " ")),
        ("Where", (country_name(cc) if cc else "worldwide") + f" ({inc.scope})"),
        ("Started", f"{local_time(inc.start, cc)} on {local_date(inc.start, cc)}"),
    ]
    if inc.end is not None:
        rows.append(("Ended", f"{local_time(inc.end, cc)} on {local_date(inc.end, cc)}"))
    if inc.platforms:
        rows.append(("Platforms", ", ".join(catalog.display_name(p) for p in inc.platforms)))
    if inc.asns:
        rows.append(("Networks", ", ".join(f"AS{a}" for a in inc.asns)))
    if inc.regions:
        rows.append(("Regions", ", ".join(inc.regions)))
    if inc.techniques:
        rows.append(("Techniques", ", ".join(inc.techniques)))
    dropped = signals_named(inc)
    if dropped:
        rows.append(("Outside-in signals", dropped))
    rows.append(("Confidence", f"{inc.confidence:.0%}"))
    return rows


def signals_named(inc: Incident) -> str:
    """The outside-in signals that support the incident, as its evidence names them ("ioda bgp: down to 34%")."""
    named = []
    for sig in inc.evidence.signals or ():
        where = "".join(f" ({w})" for w in (sig.region, f"AS{sig.asn}" if sig.asn else None) if w)
        named.append(f"{sig.source or '?'} {sig.signal or '?'}{where}: down to {sig.min_ratio:.0%}")
    return "; ".join(named)


def _history_lines(r: Report) -> list[str]:
    cc = r.incident.country
    return [f"{local_date(p.start, cc)}: {p.kind.replace('_', ' ')}, "
            f"{', '.join(catalog.display_name(x) for x in p.platforms) or 'connectivity'} ({p.id})"
            for p in r.history.previous]


def _event_lines(r: Report) -> list[str]:
    cc = r.incident.country
    return [f"{local_time(e.time, cc)} on {local_date(e.time, cc)}: {e.title}" + (f" <{e.url}>" if e.url else "")
            for e in r.events]


def render_text(r: Report) -> str:
    out = [r.statement, ""]
    out += [f"{k}: {v}" for k, v in _facts(r)]
    out += ["", "History:"] + ([f"  - {x}" for x in _history_lines(r)] or ["  (no earlier similar incidents)"])
    out += ["", "Context:"] + ([f"  - {x}" for x in _event_lines(r)] or ["  (no context events recorded)"])
    out += ["", assessment_text(r.assessment), ""]
    out += [cost_text(r.cost) if r.cost else "Cost: not estimated (no economic data for this incident)."]
    out += [f"Note: {n}" for n in r.notes]
    return "\n".join(out) + "\n"


def render_markdown(r: Report) -> str:
    """Every value is encoded (observatory.encoding.markdown_text): network names, event titles and notes come
    from outside, and Markdown renderers pass raw HTML and links through."""
    md = encoding.markdown_text
    inc = r.incident
    out = [f"# {md(inc.status.capitalize())}: {md(inc.kind.replace('_', ' '))} ({md(inc.id)})", "",
           md(r.statement), "", "| | |", "|---|---|"]
    out += [f"| {md(k)} | {md(v)} |" for k, v in _facts(r)]
    out += ["", "## History", ""] + ([f"- {md(x)}" for x in _history_lines(r)] or ["No earlier similar incidents."])
    out += ["", "## Context", ""] + ([f"- {md(x)}" for x in _event_lines(r)] or ["No context events recorded."])
    a = r.assessment
    out += ["", f"## Claim: {md(a.claim.replace('_', ' '))}", ""]
    for title, points in (("Against", a.against), ("For", a.supporting), ("Not determinable", a.unknown)):
        out += [f"- **{title}:** {md(p.text)}" for p in points]
    out += ["", f"**Conclusion:** {md(a.conclusion)}", "", "## Cost", ""]
    out += [md(cost_text(r.cost)).replace("\n", "\n\n") if r.cost else "Not estimated."]
    out += [f"\n_{md(n)}_" for n in r.notes]
    return "\n".join(out) + "\n"


def report_json(r: Report) -> dict[str, Any]:
    return {
        "incident": r.incident.to_json(),
        "statement": r.statement,
        "history": {"ordinal": r.history.ordinal, "span_days": round(r.history.span_days, 1),
                    "sentence": history_sentence(r.history), "previous": [p.id for p in r.history.previous]},
        "events": [{"id": e.id, "time": e.time.isoformat().replace("+00:00", "Z"), "title": e.title, "url": e.url}
                   for e in r.events],
        "assessment": r.assessment.to_json(),
        "cost": r.cost.to_json() if r.cost else None,
        "networks_measured": r.networks_measured,
        "notes": list(r.notes),
    }


def render_json(r: Report) -> str:
    return json.dumps(report_json(r), indent=2, ensure_ascii=False) + "\n"


CSS = """
.obs-report{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:46rem;margin:0 auto;
padding:1rem;line-height:1.5;color:#1b1b1b}
.obs-report .statement{font-size:1.15rem;border-left:4px solid #c0392b;padding:.4rem .8rem;background:#fbeeee}
.obs-report table{border-collapse:collapse}.obs-report td{padding:.15rem .8rem .15rem 0;vertical-align:top}
.obs-report img{max-width:100%;height:auto}.obs-report .muted{color:#666;font-size:.9rem}
"""


def render_html_fragment(r: Report) -> str:
    """The report's body as an HTML fragment (a <section>), for the dashboard's incident page."""
    a = r.assessment
    parts = ['<section class="obs-report">', f'<p class="statement">{escape(r.statement)}</p>']
    if r.chart_png:
        data = base64.b64encode(r.chart_png).decode("ascii")
        parts.append(f'<img alt="Reachability of the affected platforms and control sites by network" '
                     f'src="data:image/png;base64,{data}">')
    parts.append("<table>" + "".join(f"<tr><td>{escape(k)}</td><td>{escape(v)}</td></tr>" for k, v in _facts(r))
                 + "</table>")
    parts.append("<h2>History</h2>" + _ul(_history_lines(r), "No earlier similar incidents."))
    parts.append("<h2>Context</h2>" + _ul(_event_lines(r), "No context events recorded."))
    parts.append(f"<h2>Claim: {escape(a.claim.replace('_', ' '))}</h2>")
    for title, points in (("Against", a.against), ("For", a.supporting), ("Not determinable", a.unknown)):
        if points:
            parts.append(f"<h3>{title}</h3>" + _ul([p.text for p in points], ""))
    parts.append(f"<p><strong>Conclusion:</strong> {escape(a.conclusion)}</p>")
    parts.append("<h2>Cost</h2>")
    if r.cost:
        parts.append(f"<p><strong>{escape(money(r.cost.usd.low))} to {escape(money(r.cost.usd.high))}</strong>"
                     "</p>" + "".join(f"<p class=\"muted\">{escape(line)}</p>"
                                      for line in cost_text(r.cost).splitlines()[1:]))
    else:
        parts.append("<p>Not estimated.</p>")
    parts += [f'<p class="muted">{escape(n)}</p>' for n in r.notes]
    parts.append(f'<p class="muted">Economic data: {ATTRIBUTION}.</p></section>')
    return "\n".join(parts)


def _ul(items: list[str], empty: str) -> str:
    if not items:
        return f"<p>{escape(empty)}</p>" if empty else ""
    return "<ul>" + "".join(f"<li>{escape(i)}</li>" for i in items) + "</ul>"


def render_html(r: Report) -> str:
    """A self-contained page: inline style, the chart as a data: URI, nothing fetched from elsewhere."""
    title = escape(f"{r.incident.status.capitalize()}: {card_title(r.incident)}")
    return (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width,initial-scale=1"><title>{title}</title>'
            f"<style>{CSS}</style></head><body>\n{render_html_fragment(r)}\n</body></html>\n")


def render(r: Report, fmt: str) -> str | bytes:
    """The report in one of FORMATS (png: the analyst's chart; card: the share card)."""
    if fmt == "card":
        if r.card_png is None:
            raise ConfigError(f"incident {r.incident.id}: no measurement series in the store for its day, "
                              "so there is no card to draw")
        return r.card_png
    if fmt == "png":
        if r.chart_png is None:
            raise ConfigError(f"incident {r.incident.id}: no measurement series in the store for its day, "
                              "so there is no chart to draw")
        return r.chart_png
    renderers = {"text": render_text, "md": render_markdown, "json": render_json, "html": render_html}
    return renderers[fmt](r)
