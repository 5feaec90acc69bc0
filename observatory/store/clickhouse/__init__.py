"""The scale-out store: ClickHouse, through clickhouse-connect.

The same client code talks to a ClickHouse server (`clickhouse://user:pass@host:8123/database`, or
`clickhouses://` for TLS) and to the ClickHouse engine running in-process (`chdb:///DIR`, optionally
`chdb:///DIR?database=NAME`): callers see exactly what DuckDBStore gives them.

Why it is shaped the way it is:
* measurements are a MergeTree partitioned by month and ordered (cc, asn, platform, t, uid), the order the
  detector reads them in, so a country's series is a contiguous range of each month's parts;
* inserts check the batch's uids against what is stored in the batch's countries and time span before writing
  (so `insert()` reports accepted and duplicates exactly like DuckDB, and a retried batch that was
  half-written stores only the missing half);
  ReplacingMergeTree on the same key is the backstop that collapses a race between two writers at merge time;
* time series are aggregated inside ClickHouse (intDiv on the unix time, uniqExact for distinct probes, an
  interpolated exact median for kbps), never pulled into Python row by row;
* the small tables (incidents, events, credentials, state) are ReplacingMergeTree with a version column and are
  read with FINAL: a write is an insert of a newer version, an upsert with no mutation.
ClickHouse has no sequences: `seq` (what `changes_since` reads) is max(seq)+1, assigned under this client's
lock. One writer per database is assumed here; docs/scale-out.md describes seq ranges for several collectors.

By resource: core.py (the client; migrations.py), measurements.py, series.py, rollup.py, records.py
(incidents, events, probes, signals, state).
"""

from __future__ import annotations

from observatory.store.clickhouse.core import DEFAULT_DATABASE, ClickHouseCore
from observatory.store.clickhouse.measurements import PAGE_ROWS, MeasurementsMixin
from observatory.store.clickhouse.migrations import MIGRATIONS
from observatory.store.clickhouse.series import SeriesMixin

__all__ = ["DEFAULT_DATABASE", "MIGRATIONS", "PAGE_ROWS", "ClickHouseCore", "ClickHouseStore"]


class ClickHouseStore(MeasurementsMixin, SeriesMixin, ClickHouseCore):
    """Every resource of the Store protocol, on a ClickHouse server or the in-process engine."""
