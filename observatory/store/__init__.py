"""Stores: `open_store(url)` picks the backend from the `--db` value.

* a path (the default): DuckDB, one file;
* `chdb:///DIR`: the ClickHouse engine in-process;
* `clickhouse://user:pass@host:port/db`: a ClickHouse server.
"""

from __future__ import annotations

from observatory.errors import ConfigError
from observatory.settings import Settings
from observatory.store.base import (
    Changes,
    ContextEvent,
    IncidentFilter,
    InsertResult,
    MeasurementFilter,
    ProbeCredential,
    Row,
    Store,
    StoreSettings,
    UserReport,
)

__all__ = [
    "Changes",
    "ContextEvent",
    "IncidentFilter",
    "InsertResult",
    "MeasurementFilter",
    "ProbeCredential",
    "Row",
    "Store",
    "StoreSettings",
    "UserReport",
    "open_store",
    "store_settings",
]


def open_store(url: str, *, read_only: bool = False, shared: bool = False,
               settings: StoreSettings | None = None) -> Store:
    """`read_only`: the store must exist, and is neither created nor written. `shared`: for a long-running
    service, let other processes (the CLI) use a DuckDB file between this store's operations; a ClickHouse server
    is shared by nature. `settings`: from the entry point (`store_settings`)."""
    if url.startswith(("chdb://", "clickhouse://", "clickhouses://")):
        # imported here: chdb's engine is large, and a DuckDB run should not pay for loading it
        from observatory.store.clickhouse import ClickHouseStore

        return ClickHouseStore(url, read_only=read_only)
    if "://" in url:
        raise ConfigError(f"--db {url!r}: unknown store URL (use a file path, chdb:///DIR or clickhouse://...)")
    from observatory.store.duckdb import DuckDBStore

    return DuckDBStore(url, read_only=read_only, shared=shared, settings=settings)


def store_settings(settings: Settings) -> StoreSettings:
    """The store's settings from the run's ([store] wait and duckdb_memory, or $OBSERVATORY_STORE_WAIT and
    $OBSERVATORY_DUCKDB_MEMORY): unset, the defaults; a negative wait, none."""
    defaults = StoreSettings()
    wait = defaults.wait_seconds if settings.store_wait is None else max(0.0, settings.store_wait)
    return StoreSettings(wait_seconds=wait, duckdb_memory=settings.duckdb_memory or defaults.duckdb_memory)
