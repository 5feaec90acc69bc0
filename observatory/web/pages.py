"""The HTML pages: overview, country, incident, search, docs. Server-rendered (readable without JavaScript);
small bundled scripts draw the charts and keep the pages live by polling the JSON API.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response
from fastapi.templating import Jinja2Templates

from observatory import catalog
from observatory.incident import Incident, iso
from observatory.service import report_for
from observatory.store import IncidentFilter, Store
from observatory.vocab import IncidentKind, Status
from observatory.web import feed, queries, review
from observatory.web.api import get_incident, now_of, settings_of, store_of
from observatory.web.errors import BadRequest, NotFound
from observatory.web.overview import overview
from observatory.web.present import headline, platform_names, timeline, view
from observatory.web.signalchart import signal_lines, signals_svg

router = APIRouter(include_in_schema=False)

_templates_dir = Path(str(resources.files("observatory.web").joinpath("templates")))
templates = Jinja2Templates(directory=_templates_dir)


def fmt_time(t: datetime | None) -> str:
    return t.strftime("%Y-%m-%d %H:%M UTC") if t else "—"


def fmt_duration(a: datetime, b: datetime | None) -> str:
    if b is None:
        return "ongoing"
    minutes = int((b - a).total_seconds() // 60)
    return f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{minutes} min"


def sparkline_svg(points: list[float | None], *, label: str) -> str:
    """A 24-hour line of reachability as inline SVG: no script needed, a few hundred bytes."""
    width, height = 120, 28
    step = width / max(1, len(points) - 1)
    segments: list[list[str]] = [[]]
    for i, p in enumerate(points):
        if p is None:
            if segments[-1]:
                segments.append([])
            continue
        segments[-1].append(f"{i * step:.1f},{2 + (1 - p) * (height - 4):.1f}")
    lines = "".join(f'<polyline points="{" ".join(s)}"/>' for s in segments if len(s) > 1)
    dots = "".join(f'<circle cx="{s[0].split(",")[0]}" cy="{s[0].split(",")[1]}" r="1.5"/>'
                   for s in segments if len(s) == 1)
    known = [p for p in points if p is not None]
    desc = f"{label}: lowest {min(known):.0%} in the last 24 hours" if known else f"{label}: no data in 24 hours"
    return (f'<svg class="spark" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
            f'aria-label="{desc}"><title>{desc}</title><line class="base" x1="0" y1="2" x2="{width}" y2="2"/>'
            f"{lines}{dots}</svg>")


templates.env.globals.update(
    fmt_time=fmt_time, fmt_duration=fmt_duration, iso=iso, country_name=queries.country_name,
    platform_name=catalog.display_name, platform_names=platform_names, headline=headline,
    sparkline_svg=sparkline_svg, review_state=review.state_of,
)


def render(request: Request, name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    settings = settings_of(request)
    context.setdefault("title", settings.title)
    context["settings"] = settings
    return templates.TemplateResponse(request, name, context, status_code=status_code)


def error_page(request: Request, status: int, message: str) -> Response:
    return templates.TemplateResponse(request, "error.html", {"status": status, "message": message,
                                                             "settings": request.app.state.settings,
                                                             "title": f"Error {status}"}, status_code=status)


@router.get("/", response_class=HTMLResponse)
def overview_page(request: Request) -> HTMLResponse:
    store = store_of(request)
    store.refresh_rollup()
    data = overview(store, now_of(store))
    recent = review.attach_all(store, store.incidents(IncidentFilter(limit=10)))
    return render(request, "overview.html", data=data, recent=recent, title="Overview")


def _platform_order(present: set[str]) -> list[str]:
    ordered = [p for p in catalog.platform_ids() if p in present and p != catalog.CONTROL]
    return ordered + ([catalog.CONTROL] if catalog.CONTROL in present else [])


@router.get("/country/{cc}", response_class=HTMLResponse)
def country_page(
    request: Request, cc: str,
    window: Annotated[str | None, Query()] = None,
    until: Annotated[str | None, Query()] = None,
) -> HTMLResponse:
    store = store_of(request)
    try:
        code = queries.country(cc, parameter="country code")
    except BadRequest as exc:
        raise NotFound(str(exc)) from None
    store.refresh_rollup()
    now = now_of(store)
    w = queries.window(since=None, until=until, window_=window or "24h", bucket=None, now=now)
    incidents = review.attach_all(store, store.incidents(
        IncidentFilter(country=code, since=w.since, until=w.until, limit=200)))
    cells = store.rollup(since=w.since, until=w.until, bucket_seconds=86400 * 400, country=code)
    networks = sorted({(c.asn, c.network_name) for c in cells})
    platforms = _platform_order({c.platform for c in cells})
    live = [i for i in incidents if i.end is None and review.state_of(i) != "dismissed"]
    status = "confirmed" if any(i.status == "confirmed" for i in live) else (
        "suspected" if live else "normal")
    affected_asns = sorted({a for i in incidents for a in i.asns})
    affected_regions = sorted({r for i in incidents for r in i.regions})
    names = dict(networks)
    return render(
        request, "country.html", title=queries.country_name(code), cc=code, window=window or "24h",
        windows=list(queries.WINDOWS), until=until, w=w, status=status, incidents=incidents, live=live,
        networks=networks, platforms=platforms, has_data=bool(cells), now=now,
        affected_networks=[(a, names.get(a, "")) for a in affected_asns], affected_regions=affected_regions,
        chart=json.dumps({"country": code, "since": iso(w.since), "until": iso(w.until) if until else None,
                          "window": window or "24h", "platforms": platforms,
                          "poll": settings_of(request).poll_seconds, "live": until is None}),
        signals_chart=signals_svg(signal_lines(store, code, w.since, w.until), since=w.since, until=w.until,
                                  shaded=[(i.start, i.end) for i in incidents]),
    )


@router.get("/incident/{incident_id}", response_class=HTMLResponse)
def incident_page(request: Request, incident_id: str) -> HTMLResponse:
    store = store_of(request)
    inc = get_incident(store, incident_id)
    v = view(store, inc, now=now_of(store))
    margin = timedelta(hours=6)
    # an ongoing incident's chart ends at the data's present, not in an empty future
    until = inc.end + margin if inc.end else now_of(store) + timedelta(minutes=30)
    platforms = [*inc.platforms, catalog.CONTROL] if inc.platforms else []
    chart = {"country": inc.country, "since": iso(inc.start - margin), "until": iso(until),
             "platforms": platforms, "asns": [f"AS{a}" for a in inc.asns], "live": inc.end is None,
             "poll": settings_of(request).poll_seconds, "highlight": inc.id}
    since = inc.start - margin
    signals_chart = signals_svg(signal_lines(store, inc.country, since, until, baseline_until=inc.start),
                                since=since, until=until, shaded=[(inc.start, inc.end)]) if inc.country else ""
    return render(request, "incident.html", title=headline(inc), v=v, inc=v.incident, signals_chart=signals_chart,
                  timeline=timeline(inc), chart=json.dumps(chart) if inc.country else None,
                  evidence=json.dumps(inc.evidence.to_json(), indent=2, sort_keys=True, default=str),
                  share_url=str(request.url))


@router.get("/incident/{incident_id}/card.png")
def incident_card(request: Request, incident_id: str) -> Response:
    """The share card: the finding as a 1200x675 PNG (observatory.report.card)."""
    store = store_of(request)
    get_incident(store, incident_id)  # 404 before any drawing
    rep = report_for(store, incident_id, now=now_of(store), chart=False, card=True)
    if rep.card_png is None:
        raise NotFound(f"incident {incident_id}: no measurements in the store for its day, so no card")
    return Response(rep.card_png, media_type="image/png",
                    headers={"Content-Disposition": f'inline; filename="{incident_id}.png"'})


@router.get("/incidents", response_class=HTMLResponse)
def search_page(
    request: Request,
    country: Annotated[str | None, Query()] = None, platform: Annotated[str | None, Query()] = None,
    kind: Annotated[str | None, Query()] = None, status: Annotated[str | None, Query()] = None,
    since: Annotated[str | None, Query()] = None, until: Annotated[str | None, Query()] = None,
    page: Annotated[int, Query(ge=1, le=10_000)] = 1,
) -> HTMLResponse:
    store = store_of(request)
    size = 50
    form = {"country": country or "", "platform": platform or "", "kind": kind or "", "status": status or "",
            "since": since or "", "until": until or ""}
    # Empty form fields arrive as "": they mean "any".
    flt = queries.incident_filter(country_=country or None, platform_=platform or None, kind_=kind or None,
                                  status_=status or None, since=since or None, until=until or None,
                                  limit=size + 1, offset=(page - 1) * size, max_page_size=size + 1)
    found = review.attach_all(store, store.incidents(flt))
    qs = urlencode({k: v for k, v in form.items() if v})
    return render(request, "search.html", title="Search incidents", form=form, results=found[:size],
                  qs=qs + "&" if qs else "",
                  page=page, more=len(found) > size, countries=_known_countries(store),
                  platforms=[p for p in catalog.platform_ids()], kinds=[k.value for k in IncidentKind],
                  statuses=[s.value for s in Status])


def _known_countries(store: Store) -> list[tuple[str, str]]:
    return sorted(((cc, queries.country_name(cc)) for cc in store.countries()), key=lambda x: x[1])


@router.get("/feed.atom")
def atom_feed(request: Request) -> Response:
    store = store_of(request)
    incidents: list[Incident] = review.attach_all(store, store.incidents(IncidentFilter(limit=100)))
    text = feed.render(incidents, base_url=str(request.base_url), title=f"{settings_of(request).title} incidents")
    return Response(text, media_type="application/atom+xml; charset=utf-8")


@router.get("/docs", response_class=HTMLResponse)
def docs_page(request: Request) -> HTMLResponse:
    """The OpenAPI description as a page (Swagger UI would load from a CDN; this loads nothing)."""
    spec = request.app.openapi()
    ops = []
    for path, methods in spec.get("paths", {}).items():
        for method, op in methods.items():
            params = [{"name": p["name"], "in": p["in"], "required": p.get("required", False),
                       "description": p.get("description", "")} for p in op.get("parameters", [])]
            ops.append({"method": method.upper(), "path": path, "summary": op.get("summary", ""),
                        "description": op.get("description", ""), "params": params,
                        "body": "requestBody" in op})
    return render(request, "docs.html", title="API", ops=ops)
