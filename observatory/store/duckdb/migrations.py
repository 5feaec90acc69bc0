"""The DuckDB schema's history: each migration takes it from version i to i+1."""

from __future__ import annotations

from observatory.store import schema

# Each migration takes the schema from version i to i+1. Never edit one that has shipped: append.
MIGRATIONS: list[str] = [
    # the measurements' columns come from schema.py (those it marks `created`); the rest of migration 1 is here
    schema.duckdb_create() + """
    CREATE SEQUENCE measurement_seq START 1;
    CREATE TABLE incidents (
        id VARCHAR PRIMARY KEY,
        country VARCHAR,
        kind VARCHAR NOT NULL,
        status VARCHAR NOT NULL,
        start_t TIMESTAMP NOT NULL,
        end_t TIMESTAMP,
        platforms VARCHAR[],
        doc VARCHAR NOT NULL
    );
    CREATE TABLE context_events (
        id VARCHAR PRIMARY KEY,
        country VARCHAR NOT NULL,
        t TIMESTAMP NOT NULL,
        title VARCHAR NOT NULL,
        url VARCHAR
    );
    CREATE TABLE probe_credentials (
        name VARCHAR PRIMARY KEY,
        token_hash VARCHAR NOT NULL UNIQUE,
        secret VARCHAR NOT NULL,
        created TIMESTAMP NOT NULL,
        revoked BOOLEAN NOT NULL DEFAULT false
    );
    CREATE TABLE state (key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL);
    """,
    # 2: the dashboard's pre-aggregated series (5-minute buckets, additive counts), kept current from `seq`
    # by refresh_rollup() so a week of a country reads a few thousand rows instead of millions.
    """
    CREATE TABLE series_rollup (
        b TIMESTAMP NOT NULL,
        cc VARCHAR NOT NULL,
        asn BIGINT NOT NULL,
        platform VARCHAR NOT NULL,
        network VARCHAR,
        total BIGINT NOT NULL,
        ok BIGINT NOT NULL,
        down BIGINT NOT NULL,
        anomalous BIGINT NOT NULL,
        PRIMARY KEY (b, cc, asn, platform)
    );
    """,
    # 3: outside-in signals (imported series, the outside-in prober) and probe heartbeats seen by the collector
    """
    CREATE TABLE signals (
        t TIMESTAMP NOT NULL,
        cc VARCHAR NOT NULL,
        region VARCHAR NOT NULL,
        asn BIGINT NOT NULL,
        signal VARCHAR NOT NULL,
        source VARCHAR NOT NULL,
        value DOUBLE NOT NULL,
        PRIMARY KEY (source, signal, cc, region, asn, t)
    );
    CREATE TABLE probe_heartbeats (
        probe VARCHAR NOT NULL,
        t TIMESTAMP NOT NULL,
        cc VARCHAR NOT NULL,
        asn BIGINT NOT NULL,
        region VARCHAR NOT NULL,
        PRIMARY KEY (probe, t)
    );
    """,
    # 4: people's own reports ("I cannot reach X from Lahore on Jazz"): a weak signal; never their address
    """
    CREATE TABLE user_reports (
        t TIMESTAMP NOT NULL,
        cc VARCHAR NOT NULL,
        region VARCHAR NOT NULL,
        network VARCHAR NOT NULL,
        platform VARCHAR NOT NULL,
        text VARCHAR NOT NULL
    );
    """,
    # 5: zstd dictionaries for the raw documents. A document's frame names the dictionary it was compressed
    # with (0: none, as every document stored before this migration); a dictionary, once stored, never changes.
    """
    CREATE TABLE zstd_dictionaries (
        id UBIGINT PRIMARY KEY,
        created TIMESTAMP NOT NULL,
        dict BLOB NOT NULL
    );
    """,
    # 6: the rollup again by hour, kept with the 5-minute one: a week's chart reads ~12x fewer rows
    """
    CREATE TABLE series_rollup_1h (
        b TIMESTAMP NOT NULL,
        cc VARCHAR NOT NULL,
        asn BIGINT NOT NULL,
        platform VARCHAR NOT NULL,
        network VARCHAR,
        total BIGINT NOT NULL,
        ok BIGINT NOT NULL,
        down BIGINT NOT NULL,
        anomalous BIGINT NOT NULL,
        PRIMARY KEY (b, cc, asn, platform)
    );
    INSERT INTO series_rollup_1h
        SELECT time_bucket(INTERVAL 3600 SECONDS, b) AS hb, cc, asn, platform, any_value(network),
               sum(total), sum(ok), sum(down), sum(anomalous)
        FROM series_rollup GROUP BY ALL ORDER BY hb, cc;
    """,
    # 7 (issue #22): which credential (a probe's, or an import source: `file:<name>`, `ooni-s3`) brought each
    # measurement, NULL for rows stored before; where each probe may measure from, and whether it is a relay
    schema.duckdb_add_column("credential") + """
    ALTER TABLE probe_credentials ADD COLUMN country VARCHAR;
    ALTER TABLE probe_credentials ADD COLUMN asns BIGINT[];
    ALTER TABLE probe_credentials ADD COLUMN relay BOOLEAN DEFAULT false;
    """,
]
# then one migration per generated migration of schema.py (a column added there)
MIGRATIONS += ["\n".join(schema.duckdb_add_column(name) for name in names) for names in schema.generated_migrations()]
WITNESS_VERSION = 7  # the schema version from which the columns of migration 7 exist
PROVENANCE_VERSION = 8  # the schema version from which verdict_rule and rules_version exist (generated, 1st)
