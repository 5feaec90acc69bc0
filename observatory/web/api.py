"""The JSON API (/api/v1): incidents, series, an incident's measurements (JSON, CSV, Parquet), reviews.

Handlers are thin: parse parameters (observatory.web.queries), ask the store, shape the answer. Incidents are
the contract JSON of docs/contracts.md, with the analysts' `review` when there is one.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Hashable
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import urlencode

import msgspec
from fastapi import APIRouter, Body, Header, Query, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from starlette.background import BackgroundTask

from observatory import publish
from observatory.incident import Incident, iso
from observatory.store import MeasurementFilter, Store
from observatory.web import queries, review
from observatory.web.errors import BadRequest, NotFound
from observatory.web.settings import WebSettings

router = APIRouter(prefix="/api/v1", tags=["api"])

Country = Annotated[str | None, Query(description="ISO 3166-1 alpha-2 code, e.g. PK")]
Since = Annotated[str | None, Query(description="ISO 8601 time (UTC), e.g. 2024-01-20T00:00:00Z")]
Until = Annotated[str | None, Query(description="ISO 8601 time (UTC), exclusive")]
Limit = Annotated[int, Query(description="page size (at most the service's maximum, 500 by default)")]
Offset = Annotated[int, Query(le=10_000_000, description="rows to skip (at most 10,000,000)")]


def store_of(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


def settings_of(request: Request) -> WebSettings:
    settings: WebSettings = request.app.state.settings
    return settings


def now_of(store: Store) -> datetime:
    """The data's "now": the newest measurement (a replay of the past has its own present), else the clock."""
    return store.latest_time() or datetime.now(UTC)


def get_incident(store: Store, incident_id: str) -> Incident:
    if len(incident_id) > 200:
        raise BadRequest("incident id too long", parameter="id")
    inc = store.incident(incident_id)
    if inc is None:
        raise NotFound(f"no incident with id {incident_id!r}")
    return review.attach(store, inc)


def _next_link(request: Request, limit: int, offset: int, got: int) -> str | None:
    if got < limit:
        return None
    params = dict(request.query_params) | {"offset": str(offset + limit), "limit": str(limit)}
    return f"{request.url.path}?{urlencode(params)}"


@router.get("/incidents", summary="Incidents, newest first (the contract incident JSON)")
def list_incidents(
    request: Request, country: Country = None,
    platform: Annotated[str | None, Query(description="platform id, e.g. twitter")] = None,
    kind: Annotated[str | None, Query(description="platform_restriction, throttling, ...")] = None,
    status: Annotated[str | None, Query(description="suspected, confirmed or ended")] = None,
    since: Since = None, until: Until = None, limit: Limit = 100, offset: Offset = 0,
) -> JSONResponse:
    """A JSON array of incidents overlapping [since, until). The next page, if any, is in the `Link` header.

    Example: `/api/v1/incidents?country=PK&platform=twitter&since=2024-01-01T00:00:00Z`
    """
    store = store_of(request)
    flt = queries.incident_filter(country_=country, platform_=platform, kind_=kind, status_=status,
                                  since=since, until=until, limit=limit, offset=offset,
                                  max_page_size=settings_of(request).max_page_size)
    found = review.attach_all(store, store.incidents(flt))
    headers = {}
    nxt = _next_link(request, flt.limit, flt.offset, len(found))
    if nxt:
        headers["Link"] = f'<{nxt}>; rel="next"'
    return JSONResponse([i.to_json() for i in found], headers=headers)


@router.get("/incidents/{incident_id}", summary="One incident")
def one_incident(request: Request, incident_id: str) -> dict[str, Any]:
    """Example: `/api/v1/incidents/pk-2024-01-20-...`"""
    return get_incident(store_of(request), incident_id).to_json()


@router.get("/incidents/{incident_id}/measurements", summary="The measurements behind an incident")
def incident_measurements(
    request: Request, incident_id: str, limit: Limit = 100, offset: Offset = 0,
    format: Annotated[str, Query(description="json (paged), csv or parquet (everything, as a download)")] = "json",
) -> Any:
    """Measurements from the incident's country, networks and platforms during it (JSON pages, or a file).

    Example: `/api/v1/incidents/ID/measurements?format=csv`
    """
    store = store_of(request)
    if format not in ("json", "csv", "parquet"):
        raise BadRequest(f"format {format!r}: choose json, csv or parquet", parameter="format")
    inc = get_incident(store, incident_id)
    flt = measurement_filter(inc, store)
    if format == "json":
        limit, offset = queries.page(limit, offset, settings_of(request).max_page_size)
        rows = store.measurements(flt, limit=limit, offset=offset)
        return {"incident": inc.id, "limit": limit, "offset": offset, "measurements": rows,
                "next": _next_link(request, limit, offset, len(rows))}
    fd, path = tempfile.mkstemp(prefix="observatory-export-", suffix="." + format)
    os.close(fd)
    try:
        publish.export(store, flt, format, path)  # documents scrubbed of any address that may be a probe's
    except BaseException:
        os.unlink(path)
        raise
    media = "text/csv" if format == "csv" else "application/vnd.apache.parquet"
    return FileResponse(path, media_type=media, filename=f"incident-{inc.id}.{format}",
                        background=BackgroundTask(_unlink, path))


def _unlink(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


def measurement_filter(inc: Incident, store: Store) -> MeasurementFilter:
    return MeasurementFilter(
        country=inc.country, since=inc.start, until=inc.end or now_of(store),
        platforms=tuple(inc.platforms) or None, asns=tuple(inc.asns) or None,
    )


@router.post("/incidents/{incident_id}/review", summary="Annotate, mark reviewed or dismiss (analysts)")
def review_incident(
    request: Request, incident_id: str, action: Annotated[review.ReviewAction, Body()],
    authorization: Annotated[str | None, Header()] = None,
) -> dict[str, Any]:
    """Needs `Authorization: Bearer <admin token>`. A dismissed incident stays on record, marked dismissed.

    Example body: `{"action": "dismissed", "note": "probe fault on one network, confirmed with the ISP"}`
    """
    review.check_admin(authorization, settings_of(request).admin_token,
                       attempts=request.app.state.admin_attempts,
                       address=request.client.host if request.client else "")
    store = store_of(request)
    inc = get_incident(store, incident_id)
    review.apply(store, inc, action)
    return get_incident(store, incident_id).to_json()


class AnswerCache:
    """Encoded answers by request and data version: polling dashboards ask the same question again and again,
    and while nothing new was stored the answer is the same bytes (a week of a country is an aggregation over
    every measurement of that week: worth computing once per data version)."""

    def __init__(self, size: int = 128) -> None:
        self._size = size
        self._answers: OrderedDict[Hashable, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> bytes | None:
        with self._lock:
            body = self._answers.get(key)
            if body is not None:
                self._answers.move_to_end(key)
            return body

    def put(self, key: Hashable, body: bytes) -> None:
        with self._lock:
            self._answers[key] = body
            self._answers.move_to_end(key)
            while len(self._answers) > self._size:
                self._answers.popitem(last=False)


def answer_cache_of(request: Request) -> AnswerCache:
    state = request.app.state
    cache: AnswerCache | None = getattr(state, "answer_cache", None)
    if cache is None:
        cache = state.answer_cache = AnswerCache()
    return cache


@router.get("/series", summary="Reachability series of a country, by network and platform",
            response_model=dict[str, Any])
def series(
    request: Request, country: Annotated[str, Query(description="ISO 3166-1 alpha-2 code, e.g. PK")],
    asn: Annotated[str | None, Query(description="one network, e.g. AS17557")] = None,
    platform: Annotated[str | None, Query(description="one platform id")] = None,
    since: Since = None, until: Until = None,
    window: Annotated[str | None, Query(description="24h, 3d, 7d, 30d or 90d ending at `until` (default now)")]
    = None,
    bucket: Annotated[str | None, Query(description="bucket size: 5m, 15m, 1h, 1d or seconds (x 300)")] = None,
) -> Response:
    """Counts per bucket for each (network, platform): points are `[t, total, ok, down, anomalous]` with `t`
    in UNIX seconds; reachability = ok / (ok + down + anomalous).

    Example: `/api/v1/series?country=PK&window=7d&bucket=1h`
    """
    store = store_of(request)
    cc = queries.country(country)
    flt_asn = queries.asn(asn) if asn else None
    flt_platform = queries.platform(platform) if platform else None
    # The data's version, read before the rollup is brought up to date: measurements are only ever added, so
    # an unchanged count means nothing was stored since (the rollup, the data's "now" and so the answer are
    # the same), and what the rollup holds after the refresh below includes everything counted.
    stored = store.count()
    cache = answer_cache_of(request)
    key = ("series", stored, cc, flt_asn, flt_platform, since, until, window, bucket)
    body = cache.get(key)
    if body is None:
        store.refresh_rollup()  # cheap when nothing new: the chart is as fresh as the store
        now = now_of(store)
        w = queries.window(since=since, until=until, window_=window, bucket=bucket, now=now)
        body = msgspec.json.encode(_series(store, cc, flt_asn, flt_platform, w, now))
        if stored:  # an empty store's "now" is the clock's
            cache.put(key, body)
    return Response(body, media_type="application/json")


def _series(store: Store, cc: str, asn: int | None, platform: str | None, w: queries.Window,
            now: datetime) -> dict[str, Any]:
    cells = store.rollup(since=w.since, until=w.until, bucket_seconds=w.bucket_seconds, country=cc,
                         asn=asn, platform=platform)
    lines: dict[tuple[int, str], dict[str, Any]] = {}
    for c in cells:
        line = lines.get((c.asn, c.platform))
        if line is None:
            line = lines[(c.asn, c.platform)] = {"asn": f"AS{c.asn}", "network": c.network_name,
                                                 "platform": c.platform, "points": []}
        line["points"].append([int(c.bucket.timestamp()), c.total, c.ok, c.down, c.anomalous])
    return {"country": cc, "since": iso(w.since), "until": iso(w.until), "bucket_seconds": w.bucket_seconds,
            "as_of": iso(now), "columns": ["t", "total", "ok", "down", "anomalous"],
            "series": sorted(lines.values(), key=lambda s: (s["platform"], s["asn"]))}


@router.get("/countries", summary="Every country measured, with its status now and a 24 h sparkline")
def countries(request: Request) -> dict[str, Any]:
    """Status is `confirmed` or `suspected` while such an incident is open, else `normal`.

    Example: `/api/v1/countries`
    """
    from observatory.web.overview import overview

    store = store_of(request)
    store.refresh_rollup()
    return overview(store, now_of(store))


