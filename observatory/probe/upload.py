"""Uploads the spool to a collector: signed batches, retries with backoff, deletion only after acknowledgement.

A batch is `{"measurements": [...]}` with `Authorization: Bearer <token>` and `X-Observatory-Signature`
(hex HMAC-SHA256 of the exact body bytes with the probe's secret). The collector answers per item; accepted
and duplicate items leave the spool, rejected ones move to `rejected/`. A network error or a 5xx leaves the
spool as it was and is retried with exponential backoff; a probe that was offline for a day (a shutdown)
sends everything when it is back.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from observatory.probe.spool import Spool

log = logging.getLogger("observatory.probe.upload")

ENDPOINT = "/api/v1/measurements"
SIGNATURE_HEADER = "X-Observatory-Signature"


def sign(body: bytes, secret: str) -> str:
    """hex HMAC-SHA256 of the body with the probe's secret (docs/contracts.md; checked by observatory.web.auth)."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def collector_endpoint(url: str) -> str:
    """A collector given as its base URL (`http://host/`) or as the full endpoint."""
    url = url.strip()
    if url.rstrip("/").endswith(ENDPOINT):
        return url.rstrip("/")
    return url.rstrip("/") + ENDPOINT


class UploadError(Exception):
    """The collector refused the probe itself (401/403): retrying will not help until the config changes."""


@dataclass(slots=True)
class UploadReport:
    sent: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    remaining: int = 0
    error: str | None = None


class Uploader:
    def __init__(self, spool: Spool, collector: str, *, token: str, secret: str, batch_size: int = 200,
                 max_batch_bytes: int = 8 * 1024 * 1024, timeout: float = 30.0, retries: int = 5,
                 backoff: float = 1.0, max_backoff: float = 300.0,
                 sleep: Callable[[float], None] = time.sleep,
                 on_batch: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.spool = spool
        self.url = collector_endpoint(collector)
        self.token = token
        self.secret = secret
        self.batch_size = batch_size
        self.max_batch_bytes = max_batch_bytes
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.sleep = sleep
        self.on_batch = on_batch

    def _batch(self) -> tuple[list[Path], bytes]:
        paths: list[Path] = []
        parts: list[bytes] = []
        size = 0
        for p in self.spool.pending(self.batch_size):
            try:
                data = p.read_bytes()
            except FileNotFoundError:
                continue
            if parts and size + len(data) > self.max_batch_bytes:
                break
            paths.append(p)
            parts.append(data)
            size += len(data) + 1
        return paths, b'{"measurements":[' + b",".join(parts) + b"]}"

    def _post(self, client: httpx.Client, body: bytes) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token}", SIGNATURE_HEADER: sign(body, self.secret),
                   "Content-Type": "application/json"}
        return client.post(self.url, content=body, headers=headers)

    def upload_all(self) -> UploadReport:
        """Sends the whole spool, batch by batch. Stops (leaving the rest spooled) after `retries` failures."""
        report = UploadReport()
        attempt = 0
        timeout = httpx.Timeout(self.timeout, connect=min(5.0, self.timeout))
        with httpx.Client(timeout=timeout, trust_env=False) as client:
            while True:
                paths, body = self._batch()
                if not paths:
                    break
                resp: httpx.Response | None
                failure: str | None
                try:
                    resp = self._post(client, body)
                except httpx.HTTPError as exc:
                    resp, failure = None, f"{type(exc).__name__}: {exc}"
                else:
                    failure = None if resp.status_code < 500 else f"collector answered {resp.status_code}"
                if resp is not None and resp.status_code in (401, 403):
                    report.error = f"collector refused this probe ({resp.status_code}): {_message(resp)}"
                    break
                if resp is not None and resp.status_code == 413 and len(paths) > 1:
                    self.batch_size = max(1, len(paths) // 2)
                    continue
                if failure is None and resp is not None and resp.status_code != 200:
                    failure = f"collector answered {resp.status_code}: {_message(resp)}"
                if failure is not None:
                    attempt += 1
                    if attempt > self.retries:
                        report.error = failure
                        break
                    delay = min(self.max_backoff, self.backoff * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)
                    log.info("upload failed (%s); retry %d in %.1fs", failure, attempt, delay)
                    self.sleep(delay)
                    continue
                attempt = 0
                assert resp is not None
                self._settle(paths, resp.json(), report)
        report.remaining = len(self.spool)
        return report

    def _settle(self, paths: list[Path], answer: dict[str, Any], report: UploadReport) -> None:
        """Applies the collector's per-item answer: acknowledged items leave the spool."""
        results = answer.get("results") or []
        done: list[Path] = []
        for r in results:
            i = r.get("index")
            if not isinstance(i, int) or not 0 <= i < len(paths):
                continue
            status = r.get("status")
            if status in ("accepted", "duplicate"):
                done.append(paths[i])
            elif status == "rejected":
                self.spool.reject(paths[i], str(r.get("reason")))
        self.spool.acknowledge(done)
        report.sent += len(paths)
        report.accepted += int(answer.get("accepted", 0))
        report.duplicates += int(answer.get("duplicates", 0))
        report.rejected += int(answer.get("rejected", 0))
        if self.on_batch:
            self.on_batch(answer)


def _message(resp: httpx.Response) -> str:
    try:
        return str(resp.json().get("error"))
    except (ValueError, AttributeError):
        return resp.text[:200]
