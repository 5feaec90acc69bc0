"""Delivery: incidents pushed to webhooks, signed, retried, and never sent twice.

Pure: the webhook's settings, the payload per style, the signature and the dedupe key. The sending (network
and the store's state) is `observatory.service.deliver`. Each (webhook, incident, stage) is sent once:
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
from dataclasses import dataclass
from typing import Any

from observatory import encoding
from observatory.errors import ConfigError
from observatory.incident import Incident
from observatory.report.feed import headline
from observatory.report.statement import statement

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


def state_key(hook: Webhook, inc: Incident, stage: str) -> str:
    return f"alert:{hook.key}:{inc.id}:{stage}"
