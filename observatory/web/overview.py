"""The overview's data: each country's status now (normal / suspected / confirmed) and its last 24 hours."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

from observatory.catalog import CONTROL
from observatory.incident import Incident, iso
from observatory.store import IncidentFilter, Store
from observatory.web import review
from observatory.web.present import headline
from observatory.web.queries import country_name

SPARK_HOURS = 24
_RANK = {"normal": 0, "suspected": 1, "confirmed": 2}


def open_incidents(store: Store) -> list[Incident]:
    """Incidents not ended and not dismissed by an analyst."""
    found: list[Incident] = []
    for status in ("confirmed", "suspected"):
        found += store.incidents(IncidentFilter(status=status, limit=10_000))
    return [i for i in review.attach_all(store, found) if review.state_of(i) != "dismissed"]


def sparklines(store: Store, now: datetime) -> dict[str, list[float | None]]:
    """Hourly reachability of the social platforms (not the control sites) per country, oldest first."""
    start = datetime.fromtimestamp(int((now - timedelta(hours=SPARK_HOURS)).timestamp()) // 3600 * 3600 + 3600,
                                   now.tzinfo)
    ok: dict[str, list[int]] = defaultdict(lambda: [0] * SPARK_HOURS)
    judged: dict[str, list[int]] = defaultdict(lambda: [0] * SPARK_HOURS)
    for c in store.rollup(since=start, until=start + timedelta(hours=SPARK_HOURS), bucket_seconds=3600):
        if c.platform == CONTROL:
            continue
        i = int((c.bucket - start).total_seconds() // 3600)
        if 0 <= i < SPARK_HOURS:
            ok[c.country][i] += c.ok
            judged[c.country][i] += c.ok + c.down + c.anomalous
    return {cc: [ok[cc][i] / n if n else None for i, n in enumerate(judged[cc])] for cc in judged}


def overview(store: Store, now: datetime) -> dict[str, Any]:
    incidents = open_incidents(store)
    by_country: dict[str | None, list[Incident]] = defaultdict(list)
    for inc in incidents:
        by_country[inc.country].append(inc)
    sparks = sparklines(store, now)
    codes = sorted(set(store.countries()) | {cc for cc in by_country if cc})
    rows = []
    for cc in codes:
        mine = by_country.get(cc, [])
        status = max((i.status for i in mine), key=lambda s: _RANK.get(s, 0), default="normal")
        rows.append({
            "country": cc, "name": country_name(cc), "status": status,
            "open": [{"id": i.id, "headline": headline(i), "status": i.status, "start": iso(i.start)}
                     for i in mine],
            "sparkline": sparks.get(cc, [None] * SPARK_HOURS),
        })
    # Disrupted countries first, then by name: the eye lands on what matters.
    rows.sort(key=lambda r: (-_RANK.get(str(r["status"]), 0), str(r["name"])))
    worldwide = [{"id": i.id, "headline": headline(i), "status": i.status, "start": iso(i.start)}
                 for i in by_country.get(None, [])]
    return {"as_of": iso(now), "countries": rows, "worldwide": worldwide}
