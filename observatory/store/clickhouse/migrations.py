"""The ClickHouse schema's history: each migration takes it from version i to i+1 (a list of statements:
ClickHouse runs one per call). Never edit one that has shipped: append."""

from __future__ import annotations

from observatory.store import schema

_TS = schema.CH_TIME

# Each migration takes the schema from version i to i+1 (a list of statements: ClickHouse runs one per call).
# Never edit one that has shipped: append.
MIGRATIONS: list[list[str]] = [
    [
        f"""CREATE TABLE IF NOT EXISTS measurements (
            {schema.clickhouse_columns()},
            INDEX uid_bloom uid TYPE bloom_filter(0.001) GRANULARITY 1,
            INDEX seq_minmax seq TYPE minmax GRANULARITY 1
        ) ENGINE = ReplacingMergeTree
        PARTITION BY toYYYYMM(t)
        ORDER BY (cc, asn, platform, t, uid)""",
        f"""CREATE TABLE IF NOT EXISTS incidents (
            id String, country Nullable(String), kind String, status String, start_t {_TS},
            end_t Nullable({_TS}), platforms Array(String), doc String, version UInt64
        ) ENGINE = ReplacingMergeTree(version) ORDER BY id""",
        f"""CREATE TABLE IF NOT EXISTS context_events (
            id String, country String, t {_TS}, title String, url Nullable(String), version UInt64
        ) ENGINE = ReplacingMergeTree(version) ORDER BY id""",
        f"""CREATE TABLE IF NOT EXISTS probe_credentials (
            name String, token_hash String, secret String, created {_TS}, revoked Bool, version UInt64
        ) ENGINE = ReplacingMergeTree(version) ORDER BY name""",
        """CREATE TABLE IF NOT EXISTS state (key String, value String, version UInt64)
           ENGINE = ReplacingMergeTree(version) ORDER BY key""",
    ],
    # 2: the dashboard's rollup: additive counts per 5-minute bucket, summed by the engine at merge time.
    # The deduplication window makes a retried refresh (same seq range, same token) a no-op.
    [
        """CREATE TABLE IF NOT EXISTS series_rollup (
            b DateTime('UTC'), cc LowCardinality(String), asn Int64, platform LowCardinality(String),
            network Nullable(String), total UInt64, ok UInt64, down UInt64, anomalous UInt64
        ) ENGINE = SummingMergeTree((total, ok, down, anomalous))
        PARTITION BY toYYYYMM(b) ORDER BY (cc, asn, platform, b)
        SETTINGS non_replicated_deduplication_window = 1000""",
    ],
    # 3: outside-in signals (imported series, the outside-in prober) and probe heartbeats seen by the collector.
    # Both keep the first write of a key, like DuckDB's INSERT OR IGNORE (checked before inserting).
    [
        f"""CREATE TABLE IF NOT EXISTS signals (
            t {_TS}, cc LowCardinality(String), region LowCardinality(String), asn Int64,
            signal LowCardinality(String), source LowCardinality(String), value Float64
        ) ENGINE = ReplacingMergeTree PARTITION BY toYYYYMM(t) ORDER BY (source, signal, cc, region, asn, t)""",
        f"""CREATE TABLE IF NOT EXISTS probe_heartbeats (
            probe String, t {_TS}, cc LowCardinality(String), asn Int64, region String
        ) ENGINE = ReplacingMergeTree PARTITION BY toYYYYMM(t) ORDER BY (probe, t)""",
    ],
    # 4: people's reports that a platform does not work for them (every report counts: no key, no dedup)
    [
        f"""CREATE TABLE IF NOT EXISTS user_reports (
            t {_TS}, cc LowCardinality(String), region String, network String, platform LowCardinality(String),
            text String
        ) ENGINE = MergeTree PARTITION BY toYYYYMM(t) ORDER BY (cc, t)""",
    ],
    # 5 (issue #22): which credential (a probe's, or an import source: `file:<name>`, `ooni-s3`) brought each
    # measurement, NULL for rows stored before; where each probe may measure from, and whether it is a relay
    [
        schema.clickhouse_add_column("credential"),
        "ALTER TABLE probe_credentials ADD COLUMN IF NOT EXISTS country Nullable(String)",
        "ALTER TABLE probe_credentials ADD COLUMN IF NOT EXISTS asns Array(Int64)",
        "ALTER TABLE probe_credentials ADD COLUMN IF NOT EXISTS relay Bool DEFAULT false",
    ],
]
# then one migration per generated migration of schema.py (a column added there)
MIGRATIONS += [[schema.clickhouse_add_column(name) for name in names] for names in schema.generated_migrations()]
