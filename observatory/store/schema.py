"""The measurement table's columns, defined once: both backends' DDL, their insert and select lists, and the
Arrow schema of a batch (what ingest and the collector hand to a store) are derived from `MEASUREMENT_COLUMNS`.

Adding a column is one line in `MEASUREMENT_COLUMNS` with `migration=N` (the next free number): each backend
then gets a migration adding it (appended after its hand-written ones), inserts it from a batch that carries it
(`BATCH_SCHEMA` gains it; a batch without it stores NULL) and `measurement_summary` may select it.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

CH_TIME = "DateTime64(6, 'UTC')"


@dataclass(frozen=True, slots=True)
class Column:
    """One stored column of `measurements`.

    `batch`: its Arrow type in a batch (BATCH_SCHEMA), None for what the store fills itself (seq, received) or
    takes in another shape (the document); `duckdb`/`clickhouse`: its SQL type in each backend; `fill_empty`:
    ClickHouse keeps it as a non-Nullable string, so a batch's NULL is stored as ''; `created`: in the table as
    first created (else added by a migration); `migration`: the n-th generated migration adds it (0: none, it is
    in the original table or a hand-written migration)."""

    name: str
    batch: pa.DataType | None
    duckdb: str
    clickhouse: str
    fill_empty: bool = False
    created: bool = True
    migration: int = 0


MEASUREMENT_COLUMNS: tuple[Column, ...] = (
    Column("uid", pa.string(), "VARCHAR PRIMARY KEY", "String"),
    Column("seq", None, "BIGINT NOT NULL", "UInt64"),
    Column("t", pa.timestamp("us"), "TIMESTAMP NOT NULL", CH_TIME),
    Column("received", None, "TIMESTAMP NOT NULL", CH_TIME),
    Column("cc", pa.string(), "VARCHAR NOT NULL", "LowCardinality(String)"),
    Column("asn", pa.int64(), "BIGINT NOT NULL", "Int64"),
    Column("network", pa.string(), "VARCHAR", "LowCardinality(String)", fill_empty=True),
    Column("region", pa.string(), "VARCHAR", "LowCardinality(Nullable(String))"),
    Column("probe_key", pa.string(), "VARCHAR", "String"),
    Column("resolver_asn", pa.int64(), "BIGINT", "Nullable(Int64)"),
    Column("test_name", pa.string(), "VARCHAR NOT NULL", "LowCardinality(String)"),
    Column("test_version", pa.string(), "VARCHAR", "LowCardinality(String)", fill_empty=True),
    Column("software", pa.string(), "VARCHAR", "LowCardinality(String)", fill_empty=True),
    Column("source", pa.string(), "VARCHAR", "LowCardinality(String)"),
    Column("input", pa.string(), "VARCHAR", "Nullable(String)"),
    Column("platform", pa.string(), "VARCHAR", "LowCardinality(String)", fill_empty=True),
    Column("verdict", pa.string(), "VARCHAR NOT NULL", "LowCardinality(String)"),
    Column("kbps", pa.float64(), "DOUBLE", "Nullable(Float64)"),
    # the whole document: a batch brings it as JSON (`doc`) or already encoded by the store (`raw`)
    Column("raw", None, "BLOB NOT NULL", "String CODEC(ZSTD(3))"),
    # issue #22: who brought the row (optional in a batch: with_credential() adds it), NULL for older rows
    Column("credential", None, "VARCHAR", "Nullable(String)", created=False),
    # issue #23, verdict provenance: the rule that decided each verdict and the rules version (a digest of the
    # rules, verdict.RULES_VERSION); NULL for rows stored before, or written without them
    Column("verdict_rule", pa.string(), "VARCHAR", "LowCardinality(Nullable(String))", created=False, migration=1),
    Column("rules_version", pa.string(), "VARCHAR", "LowCardinality(Nullable(String))", created=False,
           migration=1),
)
COLUMN = {c.name: c for c in MEASUREMENT_COLUMNS}
STORED_NAMES: tuple[str, ...] = tuple(c.name for c in MEASUREMENT_COLUMNS)

# What a store's insert_table() takes: one row per measurement, the fields the store keeps and, last, the
# document as the JSON bytes received (each store compresses it its own way). Times are UTC without a zone.
DOCUMENT_FIELD = pa.field("doc", pa.binary())
BATCH_SCHEMA = pa.schema([pa.field(c.name, c.batch) for c in MEASUREMENT_COLUMNS if c.batch is not None]
                         + [DOCUMENT_FIELD])
BATCH_NAMES: tuple[str, ...] = tuple(BATCH_SCHEMA.names[:-1])  # every field but the document
# a batch may instead carry `raw`: the documents already encoded by the store's own document_encoder()
ENCODED_BATCH_SCHEMA = BATCH_SCHEMA.set(BATCH_SCHEMA.get_field_index("doc"), pa.field("raw", pa.binary()))

# columns a batch may carry or not (NULL when it does not): credential, and any added by a generated migration
OPTIONAL_NAMES: tuple[str, ...] = tuple(c.name for c in MEASUREMENT_COLUMNS if not c.created)

# one measurement as listed by `measurements()` (the API's rows), in this order
SUMMARY_NAMES: tuple[str, ...] = ("uid", "t", "cc", "asn", "network", "region", "test_name", "input", "platform",
                                  "verdict", "kbps", "source")
# the columns of an export (parquet adds the document), in this order; `asn` is written as "AS<n>"
EXPORT_NAMES: tuple[str, ...] = ("uid", "t", "cc", "asn", "network", "region", "test_name", "test_version",
                                 "software", "source", "input", "platform", "verdict", "kbps")
# text cells a spreadsheet could take for a formula (a country code is two letters, checked on the way in)
CSV_TEXT_NAMES: tuple[str, ...] = tuple(n for n in EXPORT_NAMES
                                        if COLUMN[n].batch == pa.string() and n != "cc")


def duckdb_create() -> str:
    """DuckDB's CREATE TABLE of the measurements as first created."""
    cols = ",\n    ".join(f"{c.name} {c.duckdb}" for c in MEASUREMENT_COLUMNS if c.created)
    return f"CREATE TABLE measurements (\n    {cols}\n);"


def clickhouse_columns() -> str:
    """ClickHouse's column lines of the measurements as first created (the caller adds indexes and engine)."""
    return ",\n    ".join(f"{c.name} {c.clickhouse}" for c in MEASUREMENT_COLUMNS if c.created)


def duckdb_add_column(name: str) -> str:
    # IF NOT EXISTS, as ClickHouse's: a migration run again over a store that has the column (its version
    # row lost, a test rebuilding an older store) stays a no-op
    return f"ALTER TABLE measurements ADD COLUMN IF NOT EXISTS {name} {COLUMN[name].duckdb};"


def clickhouse_add_column(name: str) -> str:
    return f"ALTER TABLE measurements ADD COLUMN IF NOT EXISTS {name} {COLUMN[name].clickhouse}"


def generated_migrations() -> list[list[str]]:
    """The column names each generated migration adds, in order (migration=1 first)."""
    numbers = sorted({c.migration for c in MEASUREMENT_COLUMNS if c.migration})
    return [[c.name for c in MEASUREMENT_COLUMNS if c.migration == n] for n in numbers]
