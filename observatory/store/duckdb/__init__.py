"""The embedded default store: one DuckDB file.

Measurements are one row each with the fields detection reads, plus the whole document (JSON, zstd-compressed
before insert) so nothing is lost and everything can be re-analysed. Inserts are
idempotent on the measurement's identity (`uid`, the primary key). Every batch is one transaction: a crash
leaves whole batches or nothing.

By resource: core.py (the connection, shared between processes; migrations.py, codec.py), measurements.py,
series.py, rollup.py, records.py (incidents, events, probes, signals, state).
"""

from __future__ import annotations

from observatory.store.duckdb.core import CHECKPOINT_WAL, SHARED_IDLE_SECONDS, STORE_WAIT_SECONDS, DuckDBCore
from observatory.store.duckdb.measurements import MeasurementsMixin
from observatory.store.duckdb.migrations import MIGRATIONS, WITNESS_VERSION
from observatory.store.duckdb.rollup import ROLLUP_BUCKET_SECONDS, ROLLUP_SEQ_KEY, ROLLUP_TABLES
from observatory.store.duckdb.series import SeriesMixin

__all__ = [
    "CHECKPOINT_WAL", "MIGRATIONS", "ROLLUP_BUCKET_SECONDS", "ROLLUP_SEQ_KEY", "ROLLUP_TABLES",
    "SHARED_IDLE_SECONDS", "STORE_WAIT_SECONDS", "WITNESS_VERSION", "DuckDBCore", "DuckDBStore",
]


class DuckDBStore(MeasurementsMixin, SeriesMixin, DuckDBCore):
    """Every resource of the Store protocol, on one DuckDB file (or ":memory:")."""
