"""Delivery: incidents pushed to webhooks, signed, retried, and never sent twice.

The one place in observatory.report with network and store I/O. Each (webhook, incident, stage) is sent once:
after a 2xx the key `alert:<hook>:<incident>:<stage>` is written to the store's state, and every run skips keys
already there, so restarting the service or re-running the command never re-sends. Delivery is at least once:
a crash between a receiver's 2xx and the state write would re-send on the next run, so each POST carries the
key in `X-Observatory-Delivery` for receivers that want to drop the rare duplicate.

Signature: `X-Observatory-Signature: <hex HMAC-SHA256 of the exact body with the webhook's secret>` (the same
scheme as probe uploads). Retries: on 5xx, 429, timeouts and connection errors, with exponential backoff; a
4xx other than 429 is the receiver rejecting the alert and is not retried.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from observatory import encoding
from observatory.errors import ConfigError
from observatory.incident import Incident
from observatory.report.feed import headline, stages
from observatory.report.statement import statement
from observatory.store.base import Store

STYLES = ("json", "slack", "matrix")
DEFAULT_STAGES = ("confirmed", "ended")
SIGNATURE_HEADER = "X-Observatory-Signature"
DELIVERY_HEADER = "X-Observatory-Delivery"


@dataclass(frozen=True, slots=True, kw_only=True)
class Webhook:
    url: str
    secret: str | None = None
    # "json": the incident and its statement; "slack": {"text": ...} (Slack, Mattermost); "matrix": an m.notice
    # event's content with an HTML formatted_body (for a Matrix bridge or a hookshot webhook)
    style: str = "json"
    timeout: float = 5.0
    attempts: int = 4
    backoff: float = 0.5  # seconds before the 2nd attempt; doubles each time

    def __post_init__(self) -> None:
        if not self.url.startswith(("http://", "https://")):
            raise ConfigError(f"webhook {self.url!r}: expected an http:// or https:// URL")
        if self.style not in STYLES:
            raise ConfigError(f"webhook style {self.style!r}: choose one of {', '.join(STYLES)}")
        if self.attempts < 1:
            raise ConfigError("webhook attempts must be at least 1")

    @property
    def key(self) -> str:
        """A short, stable name for the webhook in the dedupe state (the URL may hold a token: hashed)."""
        return hashlib.sha256(self.url.encode()).hexdigest()[:12]


@dataclass(frozen=True, slots=True, kw_only=True)
class Delivery:
    webhook: str
    incident: str
    stage: str
    ok: bool
    attempts: int
    status: int | None
    error: str | None = None


def sign(body: bytes, secret: str) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def payload(inc: Incident, stage: str, *, style: str, base_url: str | None) -> dict[str, Any]:
    link = f"{base_url.rstrip('/')}/incident/{inc.id}" if base_url else None
    text = statement(inc)
    title = {"new": "Suspected", "confirmed": "Confirmed", "ended": "Ended"}[stage] + f": {headline(inc)}"
    # the title and statement carry names from measurements (networks, regions): encoded for the channel's
    # markup; only the observatory's own markup (bold, the link) is written raw
    if style == "slack":
        return {"text": f"*{encoding.slack_text(title)}*\n{encoding.slack_text(text)}"
                        + (f"\n<{encoding.slack_text(link)}|Details>" if link else "")}
    if style == "matrix":
        html = f"<b>{encoding.matrix_html(title)}</b><br>{encoding.matrix_html(text)}"
        if link:
            html += f'<br><a href="{encoding.matrix_html(link)}">Details</a>'
        return {"msgtype": "m.notice", "body": encoding.matrix_body(f"{title}\n{text}" + (f"\n{link}" if link else "")),
                "format": "org.matrix.custom.html", "formatted_body": html}
    return {"event": f"incident.{stage}", "incident": inc.to_json(), "statement": text, "url": link}


def post(hook: Webhook, body: bytes, *, delivery_key: str, client: httpx.Client,
         sleep: Callable[[float], None] = time.sleep) -> tuple[bool, int, int | None, str | None]:
    """POSTs with retries: (ok, attempts made, last status, last error)."""
    headers = {"Content-Type": "application/json", DELIVERY_HEADER: delivery_key,
               "User-Agent": "observatory-alerts"}
    if hook.secret:
        headers[SIGNATURE_HEADER] = sign(body, hook.secret)
    status: int | None = None
    error: str | None = None
    for attempt in range(1, hook.attempts + 1):
        try:
            resp = client.post(hook.url, content=body, headers=headers, timeout=hook.timeout)
            status, error = resp.status_code, None
            if 200 <= status < 300:
                return True, attempt, status, None
            if status < 500 and status != 429:
                return False, attempt, status, f"rejected with HTTP {status}"
            error = f"HTTP {status}"
        except httpx.TimeoutException:
            status, error = None, "timed out"
        except httpx.TransportError as exc:
            status, error = None, f"connection failed: {exc}"
        if attempt < hook.attempts:
            sleep(hook.backoff * 2 ** (attempt - 1))
    return False, hook.attempts, status, error


def state_key(hook: Webhook, inc: Incident, stage: str) -> str:
    return f"alert:{hook.key}:{inc.id}:{stage}"


def deliver(store: Store, incidents: Iterable[Incident], hooks: Sequence[Webhook], *,
            stages_wanted: Sequence[str] = DEFAULT_STAGES, base_url: str | None = None,
            client: httpx.Client | None = None, sleep: Callable[[float], None] = time.sleep) -> list[Delivery]:
    """Sends each incident's reached stages (oldest first) to each webhook, once ever. Failed deliveries are
    not marked and are tried again on the next run."""
    own = client is None
    http = client or httpx.Client(follow_redirects=False)
    out: list[Delivery] = []
    try:
        pending = sorted(((when, stage, inc) for inc in incidents for stage, when in stages(inc)
                          if stage in stages_wanted), key=lambda x: x[0])
        for hook in hooks:
            for _, stage, inc in pending:
                key = state_key(hook, inc, stage)
                if store.get_state(key) is not None:
                    continue
                body = json.dumps(payload(inc, stage, style=hook.style, base_url=base_url),
                                  separators=(",", ":"), ensure_ascii=False).encode()
                ok, attempts, status, error = post(hook, body, delivery_key=key, client=http, sleep=sleep)
                if ok:
                    store.set_state(key, str(status))
                out.append(Delivery(webhook=hook.key, incident=inc.id, stage=stage, ok=ok, attempts=attempts,
                                    status=status, error=error))
    finally:
        if own:
            http.close()
    return out
