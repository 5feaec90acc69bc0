"""The control test helper: the same steps from a vantage point outside the censored network.

`observatory helper --listen HOST:PORT` serves `POST /` (OONI's th request shape:
`{"http_request": URL, "http_request_headers": {}, "tcp_connect": ["ip:port", ...]}`) and answers OONI's
response shape (`dns`, `tcp_connect`, `tls_handshake`, `http_request`) plus our `x_download`, and
`x_client_address`: the address the request came from, so the probe can look up its network. The helper
keeps nothing and logs no addresses.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlsplit

import msgspec
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from observatory.measurement import ControlDNS, ControlHTTP, ControlTCP, ControlTLS, Download
from observatory.probe import dns, http
from observatory.probe.net import Clock, NetConfig, endpoint, split_endpoint
from observatory.probe.tcp import tcp_connect
from observatory.probe.tls import tls_handshake

MAX_ENDPOINTS = 32
MAX_REQUEST_BYTES = 64 * 1024


class CheckRequest(msgspec.Struct, kw_only=True):
    http_request: str
    http_request_headers: dict[str, Any] = msgspec.field(default_factory=dict)
    tcp_connect: list[str] = msgspec.field(default_factory=list)


async def _resolve(host: str, cfg: NetConfig, clock: Clock) -> ControlDNS:
    query = (await dns.udp_lookup(host, cfg.resolver, cfg=cfg, clock=clock) if cfg.resolver
             else await dns.system_lookup(host, cfg=cfg, clock=clock))
    return ControlDNS(failure=query.failure, addrs=dns.addresses(query))


async def control_check(url: str, probe_endpoints: list[str], *, cfg: NetConfig) -> dict[str, Any]:
    """What the helper sees for `url`: DNS, TCP and TLS to its own and the probe's addresses, HTTP, download."""
    clock = Clock()
    parts = urlsplit(url)
    host = parts.hostname or ""
    https = parts.scheme == "https"
    port = parts.port or (443 if https else 80)
    control_dns = await _resolve(host, cfg, clock)
    # the probe's addresses, on the URL's port only: the helper is not a port scanner for whoever asks
    theirs = [ep for ep in probe_endpoints if split_endpoint(ep)[1] == port]
    endpoints = list(dict.fromkeys([endpoint(ip, port) for ip in control_dns.addrs] + theirs))
    endpoints = endpoints[:MAX_ENDPOINTS]

    async def connect(ep: str) -> tuple[str, ControlTCP, ControlTLS | None]:
        ip, p = split_endpoint(ep)
        tcp = await tcp_connect(ip, p, cfg=cfg, clock=clock)
        ctcp = ControlTCP(status=tcp.status.success, failure=tcp.status.failure)
        if not (https and tcp.status.success):
            return ep, ctcp, None
        tls = await tls_handshake(ip, p, host, cfg=cfg, clock=clock)
        return ep, ctcp, ControlTLS(server_name=host, status=tls.failure is None, failure=tls.failure)

    async def resolve(name: str) -> list[str]:
        q = await _resolve(name, cfg, clock)
        if q.failure:
            raise http.dns_failure(q.failure)
        return q.addrs

    connects_task = asyncio.gather(*(connect(ep) for ep in endpoints))
    first_ip = control_dns.addrs[0] if control_dns.addrs else None
    http_task = asyncio.create_task(_http(url, first_ip, resolve, control_dns.failure, cfg, clock))
    connects = await connects_task
    control_http, download = await http_task
    return {
        "dns": msgspec.to_builtins(control_dns),
        "tcp_connect": {ep: msgspec.to_builtins(t) for ep, t, _ in connects},
        "tls_handshake": {ep: msgspec.to_builtins(s) for ep, _, s in connects if s is not None},
        "http_request": msgspec.to_builtins(control_http),
        "x_download": msgspec.to_builtins(download),
    }


async def _http(url: str, first_ip: str | None, resolve: http.Resolve, dns_failure: str | None,
                cfg: NetConfig, clock: Clock) -> tuple[ControlHTTP, Download]:
    def failed(failure: str | None, final_url: str) -> tuple[ControlHTTP, Download]:
        return (ControlHTTP(failure=failure, status_code=-1, body_length=-1, title="", headers={}),
                Download(url=final_url, failure=failure))

    if first_ip is None:
        return failed(dns_failure or "dns_no_answer", url)
    transactions, resp, final_url = await http.get(url, first_ip, resolve, cfg=cfg, clock=clock)
    if resp is None:
        return failed(transactions[0].failure, final_url)
    control = ControlHTTP(failure=None, status_code=resp.code, body_length=len(resp.body),
                          title=http.title_of(resp.body), headers=resp.headers)
    try:
        final_ip = first_ip if final_url == url else (await resolve(urlsplit(final_url).hostname or ""))[0]
    except OSError as exc:
        return control, Download(url=final_url, failure=getattr(exc, "failure", None) or "dns_no_answer")
    return control, await http.download(final_url, final_ip, cfg=cfg)


def make_helper_app(cfg: NetConfig) -> FastAPI:
    """The helper as an ASGI app (serve it with uvicorn, access log off: it must not log addresses)."""
    app = FastAPI(title="observatory control helper", docs_url=None, redoc_url=None, openapi_url=None)

    async def check(request: Request) -> JSONResponse:
        body = await request.body()
        if len(body) > MAX_REQUEST_BYTES:
            return JSONResponse({"error": f"request over {MAX_REQUEST_BYTES} bytes"}, status_code=413)
        try:
            req = msgspec.json.decode(body, type=CheckRequest)
            for ep in req.tcp_connect:
                split_endpoint(ep)
        except Exception as exc:
            return JSONResponse({"error": f"bad request: {exc}"}, status_code=400)
        if urlsplit(req.http_request).scheme not in ("http", "https"):
            return JSONResponse({"error": "http_request must be an http(s) URL"}, status_code=400)
        result = await control_check(req.http_request, req.tcp_connect[:MAX_ENDPOINTS], cfg=cfg)
        # only the probe that asked learns its address; it is used for a lookup and never written down
        result["x_client_address"] = request.client.host if request.client else None
        return JSONResponse(result)

    app.add_api_route("/", check, methods=["POST"])
    app.add_api_route("/api/v1/check", check, methods=["POST"])

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app
