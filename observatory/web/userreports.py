"""People's own reports: "I cannot reach X from Lahore on Jazz". A weak signal, shown beside the measurements.

Rate-limited per address, but the address is never stored or logged: the limiter keys on a keyed hash that
changes with every process start. Reports carry only platform, region, network, country and free text.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field

from observatory import catalog
from observatory.store import UserReport
from observatory.web.errors import BadRequest, RateLimited
from observatory.web.pages import render

MAX_TEXT = 1000
WINDOW_SECONDS = 600
PER_ADDRESS = 5  # reports per address per window
GLOBAL_PER_MINUTE = 600

router = APIRouter()


class _Limiter:
    """Sliding-window counts per keyed hash of the caller's address, kept only in memory."""

    def __init__(self) -> None:
        self._key = os.urandom(32)
        self._hits: dict[str, list[float]] = {}
        self._global: list[float] = []
        self._lock = threading.Lock()

    def allow(self, address: str, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        tag = hmac.new(self._key, address.encode(), hashlib.sha256).hexdigest()[:24]
        with self._lock:
            self._global = [t for t in self._global if now - t < 60]
            hits = [t for t in self._hits.get(tag, []) if now - t < WINDOW_SECONDS]
            if len(hits) >= PER_ADDRESS or len(self._global) >= GLOBAL_PER_MINUTE:
                self._hits[tag] = hits
                return False
            hits.append(now)
            self._hits[tag] = hits
            self._global.append(now)
            if len(self._hits) > 100_000:  # forget the oldest callers rather than grow without bound
                self._hits = dict(list(self._hits.items())[-50_000:])
            return True


_limiter = _Limiter()


class UserReportIn(BaseModel):
    country: str = Field(min_length=2, max_length=2, description="ISO 3166-1 alpha-2, e.g. PK")
    platform: str = Field(max_length=40, description="A platform id of the catalog, e.g. twitter")
    region: str = Field(default="", max_length=100, description="City or region, e.g. Lahore")
    network: str = Field(default="", max_length=100, description="Network or provider, e.g. Jazz")
    text: str = Field(default="", max_length=MAX_TEXT, description="What happened, in your words")


def _validated(body: UserReportIn) -> UserReport:
    cc = body.country.strip().upper()
    if not cc.isalpha() or len(cc) != 2:
        raise BadRequest(f"country {body.country!r}: expected an ISO 3166-1 alpha-2 code such as PK",
                         parameter="country")
    if body.platform not in catalog.platforms() or body.platform == catalog.CONTROL:
        choices = ", ".join(p for p in catalog.platform_ids() if p != catalog.CONTROL)
        # what was sent is not echoed: an answer never reflects the caller's text
        raise BadRequest(f"platform: not one of the catalog's; choose one of {choices}", parameter="platform")
    clean = {k: " ".join(getattr(body, k).split()) for k in ("region", "network", "text")}
    return UserReport(time=datetime.now(UTC), country=cc, platform=body.platform, **clean)


def _accept(request: Request, body: UserReportIn) -> UserReport:
    report = _validated(body)
    address = request.client.host if request.client else ""
    if not _limiter.allow(address):
        raise RateLimited(f"too many reports from this address: at most {PER_ADDRESS} every "
                          f"{WINDOW_SECONDS // 60} minutes")
    request.app.state.store.add_user_report(report)
    return report


@router.post("/api/v1/user-reports", status_code=201, tags=["user reports"],
             summary="Report that a platform does not work for you (no address is stored)")
def post_user_report(request: Request, body: UserReportIn) -> dict[str, Any]:
    r = _accept(request, body)
    return {"accepted": True, "country": r.country, "platform": r.platform, "region": r.region}


@router.get("/api/v1/user-reports", tags=["user reports"], summary="Counts of user reports by region and platform")
def get_user_reports(
    request: Request,
    country: Annotated[str | None, Query(min_length=2, max_length=2)] = None,
    hours: Annotated[int, Query(ge=1, le=24 * 90)] = 24,
) -> dict[str, Any]:
    until = datetime.now(UTC)
    rows = request.app.state.store.user_report_counts(
        country=country.upper() if country else None, since=until - timedelta(hours=hours), until=until)
    return {"hours": hours, "counts": [{"country": c, "region": r or None, "platform": p, "reports": n}
                                       for c, r, p, n in rows]}


@router.get("/report-a-problem", response_class=HTMLResponse, include_in_schema=False)
def report_form(request: Request) -> HTMLResponse:
    return render(request, "report_problem.html", title="Report a problem", form={}, done=False,
                  platforms=[p for p in catalog.platform_ids() if p != catalog.CONTROL])


@router.post("/report-a-problem", response_class=HTMLResponse, include_in_schema=False)
def report_form_submit(
    request: Request,
    country: Annotated[str, Form(max_length=2)],
    platform: Annotated[str, Form(max_length=40)],
    region: Annotated[str, Form(max_length=100)] = "",
    network: Annotated[str, Form(max_length=100)] = "",
    text: Annotated[str, Form(max_length=MAX_TEXT)] = "",
) -> HTMLResponse:
    body = UserReportIn(country=country, platform=platform, region=region, network=network, text=text)
    _accept(request, body)
    return render(request, "report_problem.html", title="Thank you", form={}, done=True,
                  platforms=[p for p in catalog.platform_ids() if p != catalog.CONTROL])
