"""The ClickHouse store's small resources: incidents, context events, probe credentials, outside-in
signals, heartbeats, people's reports, and small state (ReplacingMergeTree tables read with FINAL)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from observatory.errors import StoreError
from observatory.incident import Incident
from observatory.signals import SignalPoint, SignalSeries
from observatory.store.base import (
    ContextEvent,
    Heartbeat,
    IncidentFilter,
    InsertResult,
    ProbeCredential,
    UserReport,
    UserReportCount,
)
from observatory.store.clickhouse.core import ClickHouseCore, _utc
from observatory.store.clickhouse.core import where as where_sql
from observatory.store.clickhouse.migrations import _TS
from observatory.store.shared import event_conditions, in_country, incident_conditions, window_conditions


class RecordsMixin(ClickHouseCore):

    # --- incidents --------------------------------------------------------------------------------------

    def save_incidents(self, incidents: Sequence[Incident]) -> None:
        if not incidents:
            return
        latest: dict[str, Incident] = {inc.id: inc for inc in incidents}  # the last of a repeated id wins
        version = self._version()
        rows = [
            [inc.id, inc.country, inc.kind, inc.status, _utc(inc.start), _utc(inc.end) if inc.end else None,
             list(inc.platforms), json.dumps(inc.to_json(), separators=(",", ":")), version]
            for inc in latest.values()
        ]
        # One insert block: the batch of upserts lands whole or not at all.
        self._insert("incidents", rows,
                     ("id", "country", "kind", "status", "start_t", "end_t", "platforms", "doc", "version"))

    def delete_incidents(self, ids: Sequence[str]) -> int:
        """Removes incidents a re-run of detection no longer finds; returns how many existed."""
        if not ids:
            return 0
        with self._lock:
            found = int(self._scalar("SELECT count() FROM {db}.incidents FINAL WHERE id IN {ids:Array(String)}",
                                     {"ids": list(ids)}) or 0)
            if found:
                # a mutation, waited for: every version of these ids goes, so FINAL cannot resurrect an older one
                self._command("ALTER TABLE {db}.incidents DELETE WHERE id IN {ids:Array(String)}",
                              {"ids": list(ids)}, settings={"mutations_sync": 2})
            return found

    def incidents(self, flt: IncidentFilter) -> list[Incident]:
        where, params = where_sql(incident_conditions(flt))
        params.update(limit=max(0, flt.limit), offset=max(0, flt.offset))
        # Filtering outside FINAL: a condition must see only the newest version of each incident.
        rows = self._rows(
            f"SELECT doc FROM (SELECT * FROM {{db}}.incidents FINAL) WHERE {where} "
            "ORDER BY start_t DESC, id LIMIT {limit:UInt64} OFFSET {offset:UInt64}", params)
        return [Incident.from_json(json.loads(r[0])) for r in rows]

    def incident(self, incident_id: str) -> Incident | None:
        doc = self._scalar("SELECT doc FROM {db}.incidents FINAL WHERE id = {id:String}", {"id": incident_id})
        return Incident.from_json(json.loads(doc)) if doc is not None else None

    # --- context events ---------------------------------------------------------------------------------

    def add_event(self, event: ContextEvent) -> None:
        self._insert("context_events",
                     [[event.id, event.country, _utc(event.time), event.title, event.url, self._version()]],
                     ("id", "country", "t", "title", "url", "version"))

    def events(self, *, country: str | None = None, since: datetime | None = None,
               until: datetime | None = None) -> list[ContextEvent]:
        where, params = where_sql(event_conditions(country, since, until))
        rows = self._rows(
            f"SELECT id, country, t, title, url FROM (SELECT * FROM {{db}}.context_events FINAL) "
            f"WHERE {where} ORDER BY t, id", params)
        return [ContextEvent(id=r[0], country=r[1], time=_utc(r[2]), title=r[3], url=r[4]) for r in rows]

    # --- probe credentials ------------------------------------------------------------------------------

    _CRED_COLS = "name, token_hash, secret, created, revoked, country, asns, relay"

    def add_probe(self, cred: ProbeCredential) -> None:
        with self._lock:
            # DuckDB enforces these with constraints; ClickHouse has none, so they are checked under the lock.
            clash = self._rows(
                "SELECT name, token_hash FROM {db}.probe_credentials FINAL "
                "WHERE name = {name:String} OR token_hash = {th:String}",
                {"name": cred.name, "th": cred.token_hash})
            if clash:
                what = "name" if any(r[0] == cred.name for r in clash) else "token"
                raise StoreError(f"store {self._display_url()}: a probe with this {what} already exists "
                                 f"({cred.name!r})")
            self._insert_cred(cred)

    def _insert_cred(self, cred: ProbeCredential) -> None:
        self._insert("probe_credentials",
                     [[cred.name, cred.token_hash, cred.secret, _utc(cred.created), cred.revoked,
                       cred.country, list(cred.asns), cred.relay, self._version()]],
                     ("name", "token_hash", "secret", "created", "revoked", "country", "asns", "relay", "version"))

    def probe_by_token_hash(self, token_hash: str) -> ProbeCredential | None:
        rows = self._rows(f"SELECT {self._CRED_COLS} FROM {{db}}.probe_credentials FINAL "
                          "WHERE token_hash = {th:String}", {"th": token_hash})
        return _cred(rows[0]) if rows else None

    def probes(self) -> list[ProbeCredential]:
        rows = self._rows(f"SELECT {self._CRED_COLS} FROM {{db}}.probe_credentials FINAL ORDER BY name")
        return [_cred(r) for r in rows]

    def revoke_probe(self, name: str) -> bool:
        with self._lock:
            rows = self._rows(f"SELECT {self._CRED_COLS} FROM {{db}}.probe_credentials FINAL "
                              "WHERE name = {name:String}", {"name": name})
            if not rows:
                return False
            cred = _cred(rows[0])
            self._insert_cred(dataclasses.replace(cred, revoked=True))
            return True

    # --- outside-in signals and probe heartbeats ----------------------------------------------------------

    def insert_signals(self, points: Sequence[SignalPoint]) -> InsertResult:
        unique = {p.key + (_utc(p.time),): p for p in points}
        if not unique:
            return InsertResult(accepted=0, duplicates=0)
        with self._lock:
            times = [k[5] for k in unique]
            stored = {
                (r[0], r[1], r[2], r[3], int(r[4]), _utc(r[5])) for r in self._rows(
                    f"SELECT source, signal, cc, region, asn, t FROM {{db}}.signals FINAL "
                    f"WHERE t >= {{lo:{_TS}}} AND t <= {{hi:{_TS}}} AND source IN {{sources:Array(String)}} "
                    "AND signal IN {names:Array(String)}",
                    {"lo": min(times), "hi": max(times), "sources": sorted({k[0] for k in unique}),
                     "names": sorted({k[1] for k in unique})})
            }
            fresh = [p for k, p in unique.items() if k not in stored]
            if fresh:
                self._insert("signals", [[_utc(p.time), p.country, p.region or "", p.asn or 0, p.signal, p.source,
                                          float(p.value)] for p in fresh],
                             ("t", "cc", "region", "asn", "signal", "source", "value"))
        return InsertResult(accepted=len(fresh), duplicates=len(points) - len(fresh))

    def signal_points(self, *, since: datetime, until: datetime,
                      countries: Sequence[str] | None = None) -> list[SignalPoint]:
        where, params = where_sql(window_conditions(since, until, countries))
        rows = self._rows(
            f"SELECT t, cc, region, asn, signal, source, value FROM {{db}}.signals FINAL WHERE {where} "
            "ORDER BY source, signal, cc, region, asn, t", params)
        return [SignalPoint(time=_utc(r[0]), country=r[1], region=r[2] or None, asn=int(r[3]) or None,
                            signal=r[4], source=r[5], value=float(r[6])) for r in rows]

    def signal_series(self) -> list[SignalSeries]:
        """Every stored signal series with its span and number of points."""
        rows = self._rows("SELECT source, signal, cc, region, asn, min(t), max(t), count() FROM {db}.signals FINAL "
                          "GROUP BY source, signal, cc, region, asn ORDER BY cc, source, signal, region, asn")
        return [SignalSeries(source=r[0], signal=r[1], country=r[2], region=r[3] or None, asn=int(r[4]) or None,
                             first=_utc(r[5]), last=_utc(r[6]), points=int(r[7])) for r in rows]

    def signals_version(self) -> str:
        """Changes whenever a signal or a heartbeat arrives: 'count|newest time' (detection's cue)."""
        rows = self._rows("SELECT (SELECT count() FROM {db}.signals FINAL) + "
                          "(SELECT count() FROM {db}.probe_heartbeats FINAL), "
                          "greatest((SELECT max(t) FROM {db}.signals), (SELECT max(t) FROM {db}.probe_heartbeats))")
        n, newest = rows[0] if rows else (0, None)
        t = _utc(newest) if newest is not None and newest.year > 1970 else datetime(1970, 1, 1, tzinfo=UTC)
        return f"{int(n)}|{t.isoformat()}"

    def record_heartbeat(self, *, probe: str, time: datetime, country: str, asn: int, region: str | None) -> None:
        with self._lock:
            seen = self._scalar(f"SELECT count() FROM {{db}}.probe_heartbeats WHERE probe = {{p:String}} "
                                f"AND t = {{t:{_TS}}}", {"p": probe, "t": _utc(time)})
            if not seen:
                self._insert("probe_heartbeats", [[probe, _utc(time), country, asn, region or ""]],
                             ("probe", "t", "cc", "asn", "region"))

    def heartbeats(self, *, since: datetime, until: datetime) -> list[Heartbeat]:
        rows = self._rows(
            f"SELECT probe, t, cc, asn, region FROM {{db}}.probe_heartbeats FINAL "
            f"WHERE t >= {{since:{_TS}}} AND t < {{until:{_TS}}} ORDER BY t, probe",
            {"since": _utc(since), "until": _utc(until)})
        return [Heartbeat(r[0], _utc(r[1]), r[2], int(r[3]), r[4] or None) for r in rows]

    def add_user_report(self, report: UserReport) -> None:
        self._insert("user_reports", [[_utc(report.time), report.country, report.region, report.network,
                                       report.platform, report.text]],
                     ("t", "cc", "region", "network", "platform", "text"))

    def user_report_counts(self, *, country: str | None, since: datetime, until: datetime
                           ) -> list[UserReportCount]:
        """(country, region, platform, count), most reported first."""
        where, params = where_sql(window_conditions(since, until) + in_country(country))
        rows = self._rows(
            f"SELECT cc, region, platform, count() AS n FROM {{db}}.user_reports WHERE {where} "
            "GROUP BY cc, region, platform ORDER BY n DESC, cc, region, platform", params)
        return [UserReportCount(r[0], r[1], r[2], int(r[3])) for r in rows]

    # --- small state ------------------------------------------------------------------------------------

    def get_state(self, key: str) -> str | None:
        value = self._scalar("SELECT value FROM {db}.state FINAL WHERE key = {key:String}", {"key": key})
        return None if value is None else str(value)

    def set_state(self, key: str, value: str) -> None:
        self._insert("state", [[key, value, self._version()]], ("key", "value", "version"))


def _cred(row: Sequence[Any]) -> ProbeCredential:
    return ProbeCredential(name=row[0], token_hash=row[1], secret=row[2], created=_utc(row[3]),
                           revoked=bool(row[4]), country=row[5] or None, asns=tuple(int(a) for a in row[6] or ()),
                           relay=bool(row[7]))
