"""What both backends check and filter the same way: a filter becomes a list of conditions here, once, and each
backend renders the list in its own SQL (duckdb/core.py `where`, clickhouse/core.py `where`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from observatory.errors import ConfigError
from observatory.store.base import EXPORT_FORMATS, IncidentFilter, MeasurementFilter

Op = Literal["=", ">=", "<", "in", "has", "open_at"]
Scalar = str | int | datetime
# a condition's value type in ClickHouse's parameter syntax ("time": the store's timestamp type)
Kind = Literal["String", "Int64", "time"]


@dataclass(frozen=True, slots=True)
class Cond:
    """`column op value`. "in": the column is one of the values (a list); "has": the array column holds the
    value; "open_at": an interval ending in the column is still open at the value (NULL end, or end >= it)."""

    column: str
    op: Op
    value: Scalar | list[str] | list[int]
    kind: Kind


def check_bucket(bucket_seconds: int) -> int:
    """A series bucket as a positive whole number of seconds (it is formatted into the SQL)."""
    bucket = int(bucket_seconds)
    if bucket <= 0:
        raise ConfigError(f"bucket_seconds must be positive, got {bucket_seconds}")
    return bucket


def check_export_format(fmt: str) -> None:
    if fmt not in EXPORT_FORMATS:
        raise ConfigError(f"export format {fmt!r}: use parquet or csv (jsonl comes from documents())")


def measurement_conditions(flt: MeasurementFilter) -> list[Cond]:
    conds: list[Cond] = []
    if flt.country:
        conds.append(Cond("cc", "=", flt.country.upper(), "String"))
    if flt.asn is not None:
        conds.append(Cond("asn", "=", flt.asn, "Int64"))
    if flt.platform:
        conds.append(Cond("platform", "=", flt.platform, "String"))
    if flt.since:
        conds.append(Cond("t", ">=", flt.since, "time"))
    if flt.until:
        conds.append(Cond("t", "<", flt.until, "time"))
    if flt.uids is not None:
        conds.append(Cond("uid", "in", list(flt.uids), "String"))
    if flt.platforms:
        conds.append(Cond("platform", "in", list(flt.platforms), "String"))
    if flt.asns:
        conds.append(Cond("asn", "in", list(flt.asns), "Int64"))
    return conds


def window_conditions(since: datetime, until: datetime, countries: Sequence[str] | None = None) -> list[Cond]:
    """Times in [since, until) in any of these countries (None or empty: all): the series queries' window."""
    conds = [Cond("t", ">=", since, "time"), Cond("t", "<", until, "time")]
    if countries:
        conds.append(Cond("cc", "in", [c.upper() for c in countries], "String"))
    return conds


def in_country(country: str | None, column: str = "cc") -> list[Cond]:
    """The rows of one country (None: all)."""
    return [Cond(column, "=", country.upper(), "String")] if country else []


def incident_conditions(flt: IncidentFilter) -> list[Cond]:
    conds: list[Cond] = []
    if flt.country:
        conds.append(Cond("country", "=", flt.country.upper(), "String"))
    if flt.platform:
        conds.append(Cond("platforms", "has", flt.platform, "String"))
    if flt.kind:
        conds.append(Cond("kind", "=", flt.kind, "String"))
    if flt.status:
        conds.append(Cond("status", "=", flt.status, "String"))
    if flt.since:
        conds.append(Cond("end_t", "open_at", flt.since, "time"))
    if flt.until:
        conds.append(Cond("start_t", "<", flt.until, "time"))
    return conds


def event_conditions(country: str | None, since: datetime | None, until: datetime | None) -> list[Cond]:
    conds: list[Cond] = []
    if country:
        conds.append(Cond("country", "=", country.upper(), "String"))
    if since:
        conds.append(Cond("t", ">=", since, "time"))
    if until:
        conds.append(Cond("t", "<", until, "time"))
    return conds
