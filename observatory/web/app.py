"""create_app(settings, store): the one FastAPI application behind `observatory serve` and `observatory demo`.

It wires the routers (pages, JSON API, collector, feed, metrics), the background detection scheduler, and one
exception handler that turns the observatory's errors into clear 4xx JSON (or an HTML page for a browser).
"""

from __future__ import annotations

import gc
import logging
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from observatory.errors import ObservatoryError
from observatory.store import Store
from observatory.web import api, limits, metrics, pages, userreports
from observatory.web.collector import ProbeQuotas, make_collector_router
from observatory.web.errors import status_for
from observatory.web.scheduler import DetectionScheduler, Detector, default_detector
from observatory.web.settings import WebSettings

log = logging.getLogger("observatory.web")

_AUTO: Any = object()
# Pages use only what this service sends: no CDN, no inline script, nothing from elsewhere.
_CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'")
_JSON_PREFIXES = ("/api/", "/metrics", "/healthz", "/feed.atom", "/openapi.json")


def _quiet_gc() -> None:
    """What the service loaded to start (modules, the app, its routes) is frozen: never scanned by the garbage
    collector again. A chart's answer allocates thousands of objects, and each full collection would walk the
    whole heap, most of it loaded at start-up and never freed.
    Young collections also run less often; a request's objects are freed by reference counting anyway."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)


def create_app(settings: WebSettings, store: Store, *, detector: Detector | None = _AUTO) -> FastAPI:
    """The whole service over one store. `detector` defaults to observatory.detect's orchestration."""
    scheduler = DetectionScheduler(store, default_detector() if detector is _AUTO else detector,
                                   every_seconds=settings.detect_every_seconds)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        _quiet_gc()
        scheduler.start()
        try:
            yield
        finally:
            scheduler.stop()

    app = FastAPI(
        title="observatory",
        summary="An open internet observatory: measurements in, incidents out.",
        version="1",
        docs_url=None,  # FastAPI's Swagger UI loads from a CDN; /docs is served from here instead
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.store = store
    app.state.settings = settings
    app.state.scheduler = scheduler
    app.state.responses = Counter()
    app.state.admin_attempts = limits.FailedAttempts(limit=settings.admin_failures)

    _install_error_handlers(app)
    _install_middleware(app)

    static_dir = Path(str(resources.files("observatory.web").joinpath("static")))
    app.mount("/static", StaticFiles(directory=static_dir), name="static")
    app.include_router(api.router)
    quotas = ProbeQuotas(per_hour=settings.probe_per_hour, per_day=settings.probe_per_day,
                         bytes_per_hour=settings.probe_bytes_per_hour, bytes_per_day=settings.probe_bytes_per_day)
    app.include_router(make_collector_router(lambda: store, quotas=quotas))
    app.include_router(userreports.router)
    app.include_router(pages.router)

    @app.get("/metrics", include_in_schema=True, tags=["service"], summary="Prometheus metrics")
    def prometheus() -> PlainTextResponse:
        text = metrics.render(store, scheduler, requests=dict(app.state.responses))
        return PlainTextResponse(text, media_type=metrics.CONTENT_TYPE)

    @app.get("/healthz", tags=["service"], summary="Liveness: the store answers")
    def healthz() -> dict[str, Any]:
        return {"status": "ok", "measurements": store.count(), "detection_runs": scheduler.state.runs}

    return app


def _wants_json(request: Request) -> bool:
    path = request.url.path
    if path.startswith(_JSON_PREFIXES):
        return True
    return "text/html" not in request.headers.get("accept", "")


def error_response(request: Request, status: int, message: str, **extra: Any) -> Response:
    if _wants_json(request):
        return JSONResponse({"error": message, "status": status, **extra}, status_code=status)
    return pages.error_page(request, status, message)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ObservatoryError)
    async def observatory_error(request: Request, exc: ObservatoryError) -> Response:
        status = status_for(exc)
        parameter = getattr(exc, "parameter", None)
        extra = {"parameter": parameter} if parameter else {}
        if status == 401:
            resp = error_response(request, status, str(exc), **extra)
            resp.headers["WWW-Authenticate"] = "Bearer"
            return resp
        if isinstance(exc, limits.RetryLater):
            resp = error_response(request, status, str(exc), **extra)
            resp.headers["Retry-After"] = str(exc.retry_after)
            return resp
        return error_response(request, status, str(exc), **extra)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        problems = []
        for e in exc.errors():
            where = ".".join(str(p) for p in e.get("loc", ()) if p not in ("query", "body", "path", "header"))
            # what was sent is never echoed (an answer the size of the body, or the caller's text reflected)
            problems.append(f"{where[:100] or 'request'}: {e.get('msg', 'invalid')[:200]}")
        return error_response(request, 422, "; ".join(problems) or "invalid request")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        message = exc.detail if isinstance(exc.detail, str) else "error"
        if exc.status_code == 404 and message == "Not Found":
            message = f"no such page: {request.url.path}"
        return error_response(request, exc.status_code, message)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:  # pragma: no cover - a bug
        log.exception("unhandled error on %s", request.url.path)
        return error_response(request, 500, "internal error: the service logged the details")


def _install_middleware(app: FastAPI) -> None:
    settings: WebSettings = app.state.settings
    # pure ASGI, ahead of routing: a refused request costs no parsing or handler (the counting middleware below
    # wraps it, so refusals are counted and carry the security headers)
    app.add_middleware(limits.BoundsMiddleware, small_body=settings.small_body_bytes,
                       default_body=settings.default_body_bytes, api_rate=settings.api_rate,
                       api_burst=settings.api_burst)

    @app.middleware("http")
    async def headers_and_counts(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        response = await call_next(request)
        app.state.responses[f"{response.status_code // 100}xx"] += 1
        response.headers.setdefault("Content-Security-Policy", _CSP)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        return response
