"""The store's shared parts (issue 23): one schema for both backends, errors mapped by type, one transaction
helper, settings given by the entry point rather than read from the environment by the store."""

from __future__ import annotations

import errno
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from observatory.errors import ConfigError, StoreError, StoreFullError, StoreReadOnlyError
from observatory.settings import load_settings
from observatory.store import StoreSettings, open_store, schema, store_settings
from observatory.store.clickhouse import core as ch_core
from observatory.store.clickhouse.migrations import MIGRATIONS as CH_MIGRATIONS
from observatory.store.duckdb import DuckDBStore
from observatory.store.duckdb import core as duck_core
from observatory.store.duckdb.migrations import MIGRATIONS as DUCK_MIGRATIONS


def test_the_batch_schema_is_the_stored_columns_a_batch_brings_with_the_document_last() -> None:
    assert schema.BATCH_SCHEMA.names[-1] == "doc"
    assert list(schema.BATCH_NAMES) == [c.name for c in schema.MEASUREMENT_COLUMNS if c.batch is not None]
    assert set(schema.BATCH_NAMES) <= set(schema.STORED_NAMES)
    assert schema.BATCH_SCHEMA.field("t").type == pa.timestamp("us")


def test_a_column_added_by_a_generated_migration_reaches_both_backends(monkeypatch: pytest.MonkeyPatch) -> None:
    extra = schema.Column("probe_note", pa.string(), "VARCHAR", "Nullable(String)", created=False, migration=2)
    monkeypatch.setattr(schema, "MEASUREMENT_COLUMNS", (*schema.MEASUREMENT_COLUMNS, extra))
    monkeypatch.setitem(schema.COLUMN, "probe_note", extra)
    assert schema.generated_migrations()[-1] == ["probe_note"]
    assert schema.duckdb_add_column("probe_note") == \
        "ALTER TABLE measurements ADD COLUMN IF NOT EXISTS probe_note VARCHAR;"
    assert "probe_note" not in schema.duckdb_create()  # added by its migration, not in the first table
    monkeypatch.undo()
    # each backend's list: its hand-written migrations (7 and 5), then one per generated migration
    generated = len(schema.generated_migrations())
    assert (len(DUCK_MIGRATIONS), len(CH_MIGRATIONS)) == (7 + generated, 5 + generated)


def test_verdict_provenance_is_the_first_generated_migration_as_numbered_before_the_split() -> None:
    # stores written by the code before the split recorded these versions: DuckDB 8, ClickHouse 6
    assert schema.generated_migrations()[0] == ["verdict_rule", "rules_version"]
    assert "ADD COLUMN IF NOT EXISTS verdict_rule VARCHAR" in DUCK_MIGRATIONS[7]
    assert "ADD COLUMN IF NOT EXISTS rules_version VARCHAR" in DUCK_MIGRATIONS[7]
    assert CH_MIGRATIONS[5] == [
        "ALTER TABLE measurements ADD COLUMN IF NOT EXISTS verdict_rule LowCardinality(Nullable(String))",
        "ALTER TABLE measurements ADD COLUMN IF NOT EXISTS rules_version LowCardinality(Nullable(String))"]
    assert {"verdict_rule", "rules_version"} <= set(schema.BATCH_NAMES) & set(schema.OPTIONAL_NAMES)


@pytest.mark.parametrize(("exc", "read_only", "want"), [
    (duckdb.IOException("Could not write file \"x\": No space left on device"), False, StoreFullError),
    (duckdb.IOException("Cannot open file \"x\": Read-only file system"), False, StoreReadOnlyError),
    (duckdb.InvalidInputException("Cannot execute statement of type \"INSERT\" on database \"x\" which is "
                                  "attached in read-only mode!"), True, StoreReadOnlyError),
    # a message that only mentions the words is not the condition
    (duckdb.BinderException("Referenced column \"read-only\" not found"), False, StoreError),
    (duckdb.CatalogException("Table with name \"disk full\" does not exist"), False, StoreError),
])
def test_duckdb_errors_are_mapped_by_type(exc: duckdb.Error, read_only: bool, want: type[StoreError]) -> None:
    with pytest.raises(StoreError) as raised, duck_core._mapped_errors("obs.duckdb", read_only):
        raise exc
    assert type(raised.value) is want


@pytest.mark.parametrize(("exc", "want"), [
    (RuntimeError("Code: 243. DB::Exception: Cannot reserve 1.00 MiB, not enough space. (NOT_ENOUGH_SPACE)"),
     StoreFullError),
    (RuntimeError("Code: 164. DB::Exception: Cannot execute query in readonly mode. (READONLY)"),
     StoreReadOnlyError),
    (OSError(errno.ENOSPC, "No space left on device"), StoreFullError),
    (OSError(errno.EROFS, "Read-only file system"), StoreReadOnlyError),
    (RuntimeError("Code: 47. DB::Exception: Unknown expression identifier `readonly`. (UNKNOWN_IDENTIFIER)"),
     StoreError),
])
def test_clickhouse_errors_are_mapped_by_type_and_code(exc: Exception, want: type[StoreError]) -> None:
    with pytest.raises(StoreError) as raised, ch_core._mapped_errors("chdb:///x"):
        raise exc
    assert type(raised.value) is want


def test_a_failed_transaction_leaves_nothing() -> None:
    con = duckdb.connect(":memory:")
    con.execute("CREATE TABLE t (x INTEGER PRIMARY KEY)")
    with pytest.raises(duckdb.ConstraintException), duck_core.transaction(con):
        con.execute("INSERT INTO t VALUES (1)")
        con.execute("INSERT INTO t VALUES (1)")
    assert con.execute("SELECT count(*) FROM t").fetchall() == [(0,)]
    with duck_core.transaction(con):
        con.execute("INSERT INTO t VALUES (2)")
    assert con.execute("SELECT x FROM t").fetchall() == [(2,)]


def test_store_settings_come_from_the_run_settings_at_the_entry_point(monkeypatch: pytest.MonkeyPatch,
                                                                     tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # no observatory.toml of the machine's
    monkeypatch.setenv("OBSERVATORY_STORE_WAIT", "2.5")
    monkeypatch.setenv("OBSERVATORY_DUCKDB_MEMORY", "1GB")
    assert store_settings(load_settings()) == StoreSettings(wait_seconds=2.5, duckdb_memory="1GB")
    monkeypatch.setenv("OBSERVATORY_STORE_WAIT", "-4")
    assert store_settings(load_settings()).wait_seconds == 0.0
    monkeypatch.delenv("OBSERVATORY_STORE_WAIT")
    monkeypatch.delenv("OBSERVATORY_DUCKDB_MEMORY")
    assert store_settings(load_settings()) == StoreSettings()
    # the file sets them too, and the environment wins over it
    (tmp_path / "observatory.toml").write_text('[store]\nwait = 7\nduckdb_memory = "512MB"\n')
    assert store_settings(load_settings()) == StoreSettings(wait_seconds=7.0, duckdb_memory="512MB")
    monkeypatch.setenv("OBSERVATORY_STORE_WAIT", "1")
    assert store_settings(load_settings()).wait_seconds == 1.0
    monkeypatch.setenv("OBSERVATORY_STORE_WAIT", "soon")  # not a number: one clear error, not a silent default
    with pytest.raises(ConfigError, match="OBSERVATORY_STORE_WAIT='soon': expected a number"):
        load_settings()


def test_the_store_takes_its_settings_and_reads_no_environment(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OBSERVATORY_DUCKDB_MEMORY", "not a size")  # DuckDB would refuse it
    small = open_store(str(tmp_path / "a.duckdb"), settings=StoreSettings(duckdb_memory="256MB"))
    default = DuckDBStore(str(tmp_path / "b.duckdb"))
    try:
        assert isinstance(small, DuckDBStore)
        limits = [s._con.execute("SELECT current_setting('memory_limit')").fetchall()[0][0] for s in (small, default)]
        assert limits[0] != limits[1] and "MiB" in limits[0]
    finally:
        small.close()
        default.close()
