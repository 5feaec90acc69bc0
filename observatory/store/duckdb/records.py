"""The DuckDB store's small resources: incidents, context events, probe credentials, outside-in signals,
heartbeats, people's reports, and small state."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

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
from observatory.store.duckdb.core import DuckDBCore, _first, _naive, transaction
from observatory.store.duckdb.core import where as where_sql
from observatory.store.shared import event_conditions, in_country, incident_conditions, window_conditions


class RecordsMixin(DuckDBCore):

    # --- incidents --------------------------------------------------------------------------------------

    def save_incidents(self, incidents: Sequence[Incident]) -> None:
        if not incidents:
            return
        with self._lock, self._errors():
            con = self._con
            with transaction(con):
                for inc in incidents:
                    con.execute("DELETE FROM incidents WHERE id = ?", [inc.id])
                    con.execute(
                        "INSERT INTO incidents VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        [inc.id, inc.country, inc.kind, inc.status, _naive(inc.start),
                         _naive(inc.end) if inc.end else None, list(inc.platforms),
                         json.dumps(inc.to_json(), separators=(",", ":"))],
                    )

    def delete_incidents(self, ids: Sequence[str]) -> int:
        """Removes incidents a re-run of detection no longer finds (the detector's own; never reviewed ones)."""
        if not ids:
            return 0
        with self._lock, self._errors():
            rows = self._con.execute("DELETE FROM incidents WHERE list_contains(?, id) RETURNING id",
                                     [list(ids)]).fetchall()
        return len(rows)

    def incidents(self, flt: IncidentFilter) -> list[Incident]:
        where, params = where_sql(incident_conditions(flt))
        with self._lock, self._errors():
            rows = self._con.execute(
                f"SELECT doc FROM incidents{where} ORDER BY start_t DESC, id LIMIT ? OFFSET ?",
                [*params, flt.limit, flt.offset],
            ).fetchall()
        return [Incident.from_json(json.loads(r[0])) for r in rows]

    def incident(self, incident_id: str) -> Incident | None:
        with self._lock, self._errors():
            row = _first(self._con.execute("SELECT doc FROM incidents WHERE id = ?", [incident_id]).fetchall())
        return Incident.from_json(json.loads(row[0])) if row else None

    # --- context events ---------------------------------------------------------------------------------

    def add_event(self, event: ContextEvent) -> None:
        with self._lock, self._errors():
            self._con.execute(
                "INSERT OR REPLACE INTO context_events VALUES (?, ?, ?, ?, ?)",
                [event.id, event.country, _naive(event.time), event.title, event.url],
            )

    def events(self, *, country: str | None = None, since: datetime | None = None,
               until: datetime | None = None) -> list[ContextEvent]:
        where, params = where_sql(event_conditions(country, since, until))
        with self._lock, self._errors():
            rows = self._con.execute(f"SELECT id, country, t, title, url FROM context_events{where} ORDER BY t",
                                     params).fetchall()
        return [ContextEvent(id=r[0], country=r[1], time=r[2].replace(tzinfo=UTC), title=r[3], url=r[4])
                for r in rows]

    # --- probe credentials ------------------------------------------------------------------------------

    def add_probe(self, cred: ProbeCredential) -> None:
        with self._lock, self._errors():
            if self._has_witness_columns():
                self._con.execute(
                    "INSERT INTO probe_credentials (name, token_hash, secret, created, revoked, country, asns, "
                    "relay) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [cred.name, cred.token_hash, cred.secret, _naive(cred.created), cred.revoked, cred.country,
                     list(cred.asns), cred.relay],
                )
            else:
                self._con.execute(
                    "INSERT INTO probe_credentials VALUES (?, ?, ?, ?, ?)",
                    [cred.name, cred.token_hash, cred.secret, _naive(cred.created), cred.revoked],
                )

    def probe_by_token_hash(self, token_hash: str) -> ProbeCredential | None:
        with self._lock, self._errors():
            row = _first(self._con.execute(
                f"SELECT {self._cred_columns()} FROM probe_credentials WHERE token_hash = ?",
                [token_hash],
            ).fetchall())
        return _cred(row) if row else None

    def probes(self) -> list[ProbeCredential]:
        with self._lock, self._errors():
            rows = self._con.execute(
                f"SELECT {self._cred_columns()} FROM probe_credentials ORDER BY name"
            ).fetchall()
        return [_cred(r) for r in rows]

    def revoke_probe(self, name: str) -> bool:
        with self._lock, self._errors():
            row = _first(self._con.execute(
                "UPDATE probe_credentials SET revoked = true WHERE name = ? RETURNING name", [name]
            ).fetchall())
        return row is not None

    # --- outside-in signals and heartbeats --------------------------------------------------------------

    def insert_signals(self, points: Sequence[SignalPoint]) -> InsertResult:
        unique = {p.key + (_naive(p.time),): p for p in points}
        if not unique:
            return InsertResult(accepted=0, duplicates=0)
        ps = list(unique.values())
        table = pa.table({
            "t": pa.array([_naive(p.time) for p in ps], pa.timestamp("us")),
            "cc": [p.country for p in ps],
            "region": [p.region or "" for p in ps],
            "asn": pa.array([p.asn or 0 for p in ps], pa.int64()),
            "signal": [p.signal for p in ps],
            "source": [p.source for p in ps],
            "value": pa.array([p.value for p in ps], pa.float64()),
        })
        with self._lock, self._errors():
            self._con.register("_sig", table)
            try:
                n = len(self._con.execute(
                    "INSERT OR IGNORE INTO signals SELECT t, cc, region, asn, signal, source, value FROM _sig "
                    "RETURNING t").fetchall())
            finally:
                self._con.unregister("_sig")
        return InsertResult(accepted=n, duplicates=len(points) - n)

    def signal_points(self, *, since: datetime, until: datetime,
                      countries: Sequence[str] | None = None) -> list[SignalPoint]:
        where, params = where_sql(window_conditions(since, until, countries))
        with self._lock, self._errors():
            rows = self._con.execute(
                f"SELECT t, cc, region, asn, signal, source, value FROM signals{where} "
                "ORDER BY source, signal, cc, region, asn, t", params).fetchall()
        return [SignalPoint(time=r[0].replace(tzinfo=UTC), country=r[1], region=r[2] or None, asn=r[3] or None,
                            signal=r[4], source=r[5], value=float(r[6])) for r in rows]

    def signal_series(self) -> list[SignalSeries]:
        """Every stored signal series with its span and number of points."""
        with self._lock, self._errors():
            rows = self._con.execute(
                "SELECT source, signal, cc, region, asn, min(t), max(t), count(*) FROM signals "
                "GROUP BY ALL ORDER BY cc, source, signal, region, asn").fetchall()
        return [SignalSeries(source=r[0], signal=r[1], country=r[2], region=r[3] or None, asn=r[4] or None,
                             first=r[5].replace(tzinfo=UTC), last=r[6].replace(tzinfo=UTC), points=int(r[7]))
                for r in rows]

    def signals_version(self) -> str:
        """Changes whenever a signal or a heartbeat arrives: 'count|newest time' (detection's cue)."""
        with self._lock, self._errors():
            row = _first(self._con.execute(
                "SELECT (SELECT count(*) FROM signals) + (SELECT count(*) FROM probe_heartbeats), "
                "greatest((SELECT max(t) FROM signals), (SELECT max(t) FROM probe_heartbeats))").fetchall())
        n, newest = (row or (0, None))
        return f"{n}|{(newest or datetime(1970, 1, 1)).replace(tzinfo=UTC).isoformat()}"

    def record_heartbeat(self, *, probe: str, time: datetime, country: str, asn: int, region: str | None) -> None:
        with self._lock, self._errors():
            self._con.execute("INSERT OR IGNORE INTO probe_heartbeats VALUES (?, ?, ?, ?, ?)",
                              [probe, _naive(time), country, asn, region or ""])

    def heartbeats(self, *, since: datetime, until: datetime) -> list[Heartbeat]:
        with self._lock, self._errors():
            rows = self._con.execute(
                "SELECT probe, t, cc, asn, region FROM probe_heartbeats WHERE t >= ? AND t < ? ORDER BY t",
                [_naive(since), _naive(until)]).fetchall()
        return [Heartbeat(r[0], r[1].replace(tzinfo=UTC), r[2], int(r[3]), r[4] or None) for r in rows]

    def add_user_report(self, report: UserReport) -> None:
        with self._lock, self._errors():
            self._con.execute("INSERT INTO user_reports VALUES (?, ?, ?, ?, ?, ?)",
                              [_naive(report.time), report.country, report.region, report.network,
                               report.platform, report.text])

    def user_report_counts(self, *, country: str | None, since: datetime, until: datetime
                           ) -> list[UserReportCount]:
        """(country, region, platform, count), most reported first."""
        where, params = where_sql(window_conditions(since, until) + in_country(country))
        with self._lock, self._errors():
            rows = self._con.execute(
                f"SELECT cc, region, platform, count(*) AS n FROM user_reports{where} "
                "GROUP BY ALL ORDER BY n DESC, cc, region, platform", params).fetchall()
        return [UserReportCount(r[0], r[1], r[2], int(r[3])) for r in rows]

    # --- small state ------------------------------------------------------------------------------------

    def get_state(self, key: str) -> str | None:
        with self._lock, self._errors():
            row = _first(self._con.execute("SELECT value FROM state WHERE key = ?", [key]).fetchall())
        return row[0] if row else None

    def set_state(self, key: str, value: str) -> None:
        with self._lock, self._errors():
            self._con.execute("INSERT OR REPLACE INTO state VALUES (?, ?)", [key, value])


def _cred(row: Sequence[Any]) -> ProbeCredential:
    return ProbeCredential(name=row[0], token_hash=row[1], secret=row[2], created=row[3].replace(tzinfo=UTC),
                           revoked=bool(row[4]), country=row[5] or None,
                           asns=tuple(int(a) for a in row[6] or ()), relay=bool(row[7]))
