"""Analysts' review of incidents: annotate, mark reviewed, dismiss with a reason.

The review is kept apart from the incident row (in the store's small state, keyed by incident id) because
detection re-saves an incident every time it updates it; the analyst's word must survive that. A dismissed
incident stays on record: it is marked, never deleted.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from observatory.errors import AuthError
from observatory.incident import Incident, iso
from observatory.store import Store
from observatory.web.errors import BadRequest, Forbidden
from observatory.web.limits import FailedAttempts

_KEY = "review:"
MAX_NOTE = 2000


class ReviewAction(BaseModel):
    """What an analyst does to an incident (the body of POST /api/v1/incidents/{id}/review)."""

    action: Literal["annotate", "reviewed", "dismissed", "reopen"] = Field(
        description="annotate adds a note; reviewed / dismissed set the state (dismissed needs a reason); "
                    "reopen clears the state")
    note: str = Field(default="", max_length=MAX_NOTE, description="the annotation, or the reason for dismissal")
    author: str = Field(default="analyst", max_length=80)


def check_admin(authorization: str | None, admin_token: str | None, *, attempts: FailedAttempts | None = None,
                address: str = "") -> None:
    """A bearer token compared in constant time; no token configured means no one is an admin. With `attempts`,
    an address that failed too often is refused (429) before its token is even compared: guessing is slow."""
    if admin_token is None:
        raise Forbidden("analyst actions are disabled: the service has no admin token (OBSERVATORY_ADMIN_TOKEN)")
    if attempts is not None:
        attempts.check(address)
    try:
        if not authorization or not authorization.startswith("Bearer "):
            raise AuthError("analyst actions need 'Authorization: Bearer <admin token>'")
        given = authorization.removeprefix("Bearer ").strip().encode()
        if not hmac.compare_digest(given, admin_token.encode()):
            raise AuthError("the admin token is not valid")
    except AuthError:
        if attempts is not None:
            attempts.failed(address)
        raise


def load(store: Store, incident_id: str) -> dict[str, Any] | None:
    raw = store.get_state(_KEY + incident_id)
    return json.loads(raw) if raw else None


def attach(store: Store, incident: Incident) -> Incident:
    review = load(store, incident.id)
    return incident.with_(review=review) if review is not None else incident


_INDEX = "reviews:index"


def _reviewed_ids(store: Store) -> set[str]:
    """Ids of incidents with a review: one state read, so an incident list does not read one per row."""
    raw = store.get_state(_INDEX)
    return set(json.loads(raw)) if raw else set()


def attach_all(store: Store, incidents: Sequence[Incident]) -> list[Incident]:
    reviewed = _reviewed_ids(store)
    return [attach(store, i) if i.id in reviewed else i for i in incidents]


def apply(store: Store, incident: Incident, act: ReviewAction, *, now: datetime | None = None) -> dict[str, Any]:
    """Records the action and returns the incident's review as it now stands."""
    now = now or datetime.now(UTC)
    note = act.note.strip()
    review = load(store, incident.id) or {"state": None, "reason": None, "notes": []}
    if act.action == "annotate":
        if not note:
            raise BadRequest("an annotation needs a note", parameter="note")
    elif act.action == "dismissed":
        if not note:
            raise BadRequest("dismissing an incident needs a reason in 'note'", parameter="note")
        review["state"], review["reason"] = "dismissed", note
    elif act.action == "reviewed":
        review["state"], review["reason"] = "reviewed", note or None
    else:
        review["state"], review["reason"] = None, None
    review["notes"].append({"time": iso(now), "author": act.author, "action": act.action, "note": note})
    review["updated"] = iso(now)
    store.set_state(_KEY + incident.id, json.dumps(review, separators=(",", ":")))
    ids = _reviewed_ids(store)
    if incident.id not in ids:
        store.set_state(_INDEX, json.dumps(sorted(ids | {incident.id})))
    return review


def state_of(incident: Incident) -> str | None:
    return (incident.review or {}).get("state")
