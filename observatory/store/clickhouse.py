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
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import statistics
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from observatory.encoding import csv_cell
from observatory.errors import ConfigError, StoreError, StoreFullError, StoreReadOnlyError
from observatory.incident import Incident
from observatory.measurement import sane_time
from observatory.series import SeriesCell
from observatory.signals import SignalPoint, SignalSeries
from observatory.store.base import (
    Changes,
    ContextEvent,
    FailingProbe,
    IncidentFilter,
    InsertResult,
    MeasurementFilter,
    ProbeCredential,
    ReclassifyObserver,
    ReclassifyPass,
    Row,
    StoredVerdict,
    TechniqueProbes,
    UserReport,
    first_of_each_uid,
    rows_table,
)
from observatory.vocab import TECHNIQUES

_TECHNIQUE_LIST = sorted(TECHNIQUES)
_TECH_IN = ", ".join(f"'{t}'" for t in _TECHNIQUE_LIST)
DEFAULT_DATABASE = "observatory"
ROLLUP_BUCKET_SECONDS = 300
ROLLUP_SEQ_KEY = "rollup.seq"
ROLLUP_GEN_KEY = "rollup.generation"  # bumped by each rebuild of the rollup
_REBUILD = -1  # ROLLUP_SEQ_KEY's value while the rollup is to be emptied and refolded
PAGE_ROWS = 20_000  # documents() reads this many rows per query

_TS = "DateTime64(6, 'UTC')"
_chdb_path: str | None = None  # the one chdb data directory this process has opened

# Each migration takes the schema from version i to i+1 (a list of statements: ClickHouse runs one per call).
# Never edit one that has shipped: append.
MIGRATIONS: list[list[str]] = [
    [
        f"""CREATE TABLE IF NOT EXISTS measurements (
            uid String,
            seq UInt64,
            t {_TS},
            received {_TS},
            cc LowCardinality(String),
            asn Int64,
            network LowCardinality(String),
            region LowCardinality(Nullable(String)),
            probe_key String,
            resolver_asn Nullable(Int64),
            test_name LowCardinality(String),
            test_version LowCardinality(String),
            software LowCardinality(String),
            source LowCardinality(String),
            input Nullable(String),
            platform LowCardinality(String),
            verdict LowCardinality(String),
            kbps Nullable(Float64),
            raw String CODEC(ZSTD(3)),
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
        "ALTER TABLE measurements ADD COLUMN IF NOT EXISTS credential Nullable(String)",
        "ALTER TABLE probe_credentials ADD COLUMN IF NOT EXISTS country Nullable(String)",
        "ALTER TABLE probe_credentials ADD COLUMN IF NOT EXISTS asns Array(Int64)",
        "ALTER TABLE probe_credentials ADD COLUMN IF NOT EXISTS relay Bool DEFAULT false",
    ],
    # 6 (issue #23): verdict provenance, the rule that decided each verdict and the rules version (a digest of
    # the rules, verdict.RULES_VERSION); NULL for rows stored before
    [
        "ALTER TABLE measurements ADD COLUMN IF NOT EXISTS verdict_rule LowCardinality(Nullable(String))",
        "ALTER TABLE measurements ADD COLUMN IF NOT EXISTS rules_version LowCardinality(Nullable(String))",
    ],
]


def _utc(t: datetime) -> datetime:
    """An aware UTC datetime (naive ones are UTC by the observatory's convention)."""
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def _read_time(t: datetime | None) -> datetime | None:
    return None if t is None else _utc(t)


def _quote_ident(name: str) -> str:
    if not name.replace("_", "").isalnum():
        raise ConfigError(f"ClickHouse database name {name!r}: use letters, digits and _ only")
    return f"`{name}`"


@contextlib.contextmanager
def _mapped_errors(url: str) -> Iterator[None]:
    """ClickHouse's errors become the observatory's, with the store named; the disk's state named plainly."""
    from clickhouse_connect.driver.exceptions import ClickHouseError

    try:
        yield
    except StoreError:
        raise
    except (ClickHouseError, OSError, RuntimeError) as exc:
        text = str(exc).strip()
        first = next((line for line in text.splitlines() if line.strip()), type(exc).__name__)[:400]
        low = text.lower()
        if "no space left" in low or "not_enough_space" in low or "disk full" in low:
            raise StoreFullError(f"store {url}: the disk is full ({first})") from exc
        if ("read-only" in low or "readonly" in low or "read only" in low or "permission denied" in low
                or "access denied" in low or "cannot_open_file" in low or "cannot open file" in low):
            raise StoreReadOnlyError(f"store {url}: cannot write ({first})") from exc
        raise StoreError(f"store {url}: {first}") from exc


def _connect(url: str) -> tuple[Any, str]:
    """A clickhouse-connect client for the URL, and the database the observatory's tables live in."""
    import clickhouse_connect

    parsed = urlparse(url)
    query = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
    if parsed.scheme == "chdb":
        path = unquote(parsed.path)
        if not path or path == "/":
            raise ConfigError(f"--db {url!r}: give a directory, e.g. chdb:///var/lib/observatory/ch")
        try:
            Path(path).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"store {url}: cannot create its directory: {exc}") from exc
        database = query.get("database", DEFAULT_DATABASE)
        # One data directory per process (chdb's rule); clients for the same directory share one engine.
        # Said plainly here rather than as the engine's "EmbeddedServer already initialized".
        global _chdb_path
        resolved = str(Path(path).resolve())
        if _chdb_path is not None and _chdb_path != resolved:
            raise StoreError(f"store {url}: this process already uses the chdb directory {_chdb_path} and chdb "
                             "allows one per process (use another database in it: ?database=NAME)")
        client = clickhouse_connect.get_client(dsn=f"chdb://{path}")
        _chdb_path = resolved
        return client, database
    if parsed.scheme in ("clickhouse", "clickhouses"):
        database = (parsed.path or "").strip("/") or query.get("database") or DEFAULT_DATABASE
        client = clickhouse_connect.get_client(
            host=parsed.hostname or "localhost",
            port=parsed.port or (8443 if parsed.scheme == "clickhouses" else 8123),
            username=unquote(parsed.username or "default"),
            password=unquote(parsed.password or ""),
            secure=parsed.scheme == "clickhouses",
        )
        return client, database
    raise ConfigError(f"--db {url!r}: not a ClickHouse URL (chdb:///DIR or clickhouse://user:pass@host:port/db)")


class ClickHouseStore:
    def __init__(self, url: str) -> None:
        self.url = url
        self._lock = threading.RLock()
        self._last_version = 0
        with _mapped_errors(self._display_url()):
            self._client, self._database = _connect(url)
            self._db = _quote_ident(self._database)
            self._client.command(f"CREATE DATABASE IF NOT EXISTS {self._db}")
            self._migrate()
            self._next_seq = int(self._scalar("SELECT max(seq) FROM {db}.measurements") or 0) + 1

    def _display_url(self) -> str:
        """The URL without its password, for messages."""
        p = urlparse(self.url)
        if p.password:
            return self.url.replace(f":{p.password}@", ":***@")
        return self.url

    # --- plumbing ---------------------------------------------------------------------------------------

    def _sql(self, q: str) -> str:
        return q.replace("{db}", self._db)

    def _command(self, q: str, params: dict[str, Any] | None = None, settings: dict[str, Any] | None = None) -> Any:
        with self._lock, _mapped_errors(self._display_url()):
            return self._client.command(self._sql(q), parameters=params, settings=settings)

    def _rows(self, q: str, params: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        with self._lock, _mapped_errors(self._display_url()):
            return list(self._client.query(self._sql(q), parameters=params).result_rows)

    def _scalar(self, q: str, params: dict[str, Any] | None = None) -> Any:
        rows = self._rows(q, params)
        return rows[0][0] if rows else None

    def _insert(self, table: str, rows: list[list[Any]], columns: Sequence[str],
                settings: dict[str, Any] | None = None) -> None:
        with self._lock, _mapped_errors(self._display_url()):
            self._client.insert(table, rows, column_names=list(columns), database=self._database,
                                settings=settings)

    def _version(self) -> int:
        """A strictly increasing version for ReplacingMergeTree rows (nanoseconds, so other clients agree)."""
        with self._lock:
            self._last_version = max(time.time_ns(), self._last_version + 1)
            return self._last_version

    def _migrate(self) -> None:
        self._client.command(
            f"CREATE TABLE IF NOT EXISTS {self._db}.schema_version (version UInt32) ENGINE = MergeTree ORDER BY ()"
        )
        current = int(self._client.command(f"SELECT max(version) FROM {self._db}.schema_version") or 0)
        for version in range(current, len(MIGRATIONS)):
            # ClickHouse DDL is not transactional: every statement is IF NOT EXISTS, so a migration cut short
            # is simply run again.
            for statement in MIGRATIONS[version]:
                self._client.command(statement.replace("CREATE TABLE IF NOT EXISTS ",
                                                       f"CREATE TABLE IF NOT EXISTS {self._db}.")
                                     .replace("ALTER TABLE ", f"ALTER TABLE {self._db}."))
            self._client.command(f"INSERT INTO {self._db}.schema_version VALUES ({version + 1})")

    def schema_version(self) -> int:
        return int(self._scalar("SELECT max(version) FROM {db}.schema_version") or 0)

    def close(self) -> None:
        with self._lock, contextlib.suppress(Exception):
            self._client.close()

    # --- measurements -----------------------------------------------------------------------------------

    def _stored_uids(self, table: pa.Table) -> set[str]:
        """Which of these rows' uids are already stored.

        A uid names one measurement, taken at one time in one country (OONI's uids and ours embed the time; the
        fallback is a hash of the content), so the lookup is bounded by the rows' countries and time span: the
        monthly partitions and the (cc, ..., t) order skip everything else, instead of reading every stored uid
        (a bloom filter cannot help an IN of thousands of values). Rows are looked up in time order, in chunks,
        so each chunk's span stays narrow.
        """
        found: set[str] = set()
        ordered = table.select(["uid", "t", "cc"]).sort_by("t")
        for i in range(0, ordered.num_rows, 10_000):
            chunk = ordered.slice(i, 10_000)
            ts = chunk.column("t").to_pylist()
            found.update(r[0] for r in self._rows(
                f"SELECT uid FROM {{db}}.measurements WHERE t >= {{lo:{_TS}}} AND t <= {{hi:{_TS}}} "
                "AND cc IN {ccs:Array(String)} AND uid IN {uids:Array(String)}",
                {"lo": ts[0].replace(tzinfo=UTC), "hi": ts[-1].replace(tzinfo=UTC),
                 "ccs": sorted(set(chunk.column("cc").to_pylist())), "uids": chunk.column("uid").to_pylist()}))
        return found

    def insert(self, rows: Sequence[Row]) -> InsertResult:
        return self.insert_table(rows_table(rows))

    def document_encoder(self, samples: Callable[[], Sequence[bytes]] | None = None) -> None:
        """None: documents arrive as JSON (BATCH_SCHEMA's `doc`) and the server compresses them (ZSTD codec)."""
        return None

    def insert_table(self, table: pa.Table) -> InsertResult:
        table, in_batch_dups = first_of_each_uid(table)
        if table.num_rows == 0:
            return InsertResult(accepted=0, duplicates=in_batch_dups)
        with self._lock:
            # Checked per batch, under the lock: a retry after a failure mid-batch stores only what is missing.
            stored = self._stored_uids(table)
            if stored:
                uids = table.column("uid").to_pylist()
                table = table.take(pa.array([i for i, u in enumerate(uids) if u not in stored], pa.int64()))
            if table.num_rows:
                self._write(table)
        return InsertResult(
            accepted=table.num_rows,
            duplicates=in_batch_dups + len(stored),
            accepted_uids=tuple(table.column("uid").to_pylist()),
        )

    def _write(self, table: pa.Table) -> None:
        n = table.num_rows
        first = self._next_seq
        ts = pa.timestamp("us", tz="UTC")
        empty = pa.scalar("", pa.string())
        out = pa.table({
            "uid": table.column("uid"),
            "seq": pa.array(range(first, first + n), pa.uint64()),
            "t": table.column("t").cast(ts),
            "received": pa.array([datetime.now(UTC)] * n, ts),
            "cc": table.column("cc"),
            "asn": table.column("asn"),
            "network": pc.fill_null(table.column("network"), empty),
            "region": table.column("region"),
            "probe_key": table.column("probe_key"),
            "resolver_asn": table.column("resolver_asn"),
            "test_name": table.column("test_name"),
            "test_version": pc.fill_null(table.column("test_version"), empty),
            "software": pc.fill_null(table.column("software"), empty),
            "source": table.column("source"),
            "input": table.column("input"),
            "platform": pc.fill_null(table.column("platform"), empty),
            "verdict": table.column("verdict"),
            "kbps": table.column("kbps"),
            "raw": table.column("doc").cast(pa.string()),
            **{name: (table.column(name) if name in table.column_names else pa.nulls(n, pa.string()))
               for name in ("credential", "verdict_rule", "rules_version")},  # tables from before they existed
        })
        # Claimed before the insert: if the server completes it but the reply is lost, the retry must not reuse
        # these numbers (a gap in seq is harmless; a repeat would hide rows from changes_since).
        self._next_seq = first + n
        with _mapped_errors(self._display_url()):
            self._client.insert_arrow("measurements", out, database=self._database)

    def count(self) -> int:
        return int(self._scalar("SELECT count() FROM {db}.measurements") or 0)

    def stats(self) -> dict[str, Any]:
        def grouped(expr: str, limit: int = 200) -> dict[str, int]:
            q = (f"SELECT {expr} AS k, count() AS n FROM {{db}}.measurements GROUP BY k "
                 f"ORDER BY n DESC, k LIMIT {limit}")
            return {str(k): int(n) for k, n in self._rows(q)}

        return {
            "measurements": self.count(),
            "by_country": grouped("cc"),
            "by_network": grouped("concat('AS', toString(asn))"),
            "by_test": grouped("test_name"),
            "by_platform": grouped("if(platform = '', '(none)', platform)"),
            "by_verdict": grouped("verdict"),
            "by_day": dict(sorted(grouped("formatDateTime(t, '%Y-%m-%d')", 10_000).items())),
            # who brought them (issue #22): a probe's credential or an import source, to find a forger
            "by_credential": grouped("ifNull(credential, '(unrecorded)')"),
        }

    @staticmethod
    def _where(flt: MeasurementFilter) -> tuple[str, dict[str, Any]]:
        clauses: list[str] = []
        params: dict[str, Any] = {}
        if flt.country:
            clauses.append("cc = {cc:String}")
            params["cc"] = flt.country.upper()
        if flt.asn is not None:
            clauses.append("asn = {asn:Int64}")
            params["asn"] = flt.asn
        if flt.platform:
            clauses.append("platform = {platform:String}")
            params["platform"] = flt.platform
        if flt.since:
            clauses.append(f"t >= {{since:{_TS}}}")
            params["since"] = _utc(flt.since)
        if flt.until:
            clauses.append(f"t < {{until:{_TS}}}")
            params["until"] = _utc(flt.until)
        if flt.uids is not None:
            clauses.append("uid IN {uids:Array(String)}")
            params["uids"] = list(flt.uids)
        if flt.platforms:
            clauses.append("platform IN {platforms:Array(String)}")
            params["platforms"] = list(flt.platforms)
        if flt.asns:
            clauses.append("asn IN {asns:Array(Int64)}")
            params["asns"] = list(flt.asns)
        return " AND ".join(clauses) or "1", params

    def documents(self, flt: MeasurementFilter) -> Iterator[bytes]:
        """The stored documents in (t, uid) order, a page at a time (no stream held open between pages, so the
        caller may use the store while iterating)."""
        where, params = self._where(flt)
        last: tuple[datetime, str] | None = None
        while True:
            page_clause = ""
            page_params = dict(params)
            if last is not None:
                page_clause = f" AND (t, uid) > ({{last_t:{_TS}}}, {{last_uid:String}})"
                page_params.update(last_t=last[0], last_uid=last[1])
            rows = self._rows(
                f"SELECT raw, t, uid FROM {{db}}.measurements WHERE {where}{page_clause} "
                f"ORDER BY t, uid LIMIT {PAGE_ROWS}", page_params)
            for raw, _, _ in rows:
                yield raw.encode() if isinstance(raw, str) else bytes(raw)
            if len(rows) < PAGE_ROWS:
                return
            last = (_utc(rows[-1][1]), rows[-1][2])

    def export(self, flt: MeasurementFilter, fmt: str, path: str) -> int:
        """Parquet (with each whole document as JSON text, `document`) or CSV (the summary columns): the same
        columns and types as DuckDBStore's (its CSV byte for byte), streamed a block at a time."""
        if fmt not in ("parquet", "csv"):
            raise ConfigError(f"export format {fmt!r}: use parquet or csv (jsonl comes from documents())")
        where, params = self._where(flt)
        cols = ("uid, t, cc, concat('AS', toString(asn)) AS asn, network, region, test_name, test_version, "
                "software, source, input, if(platform = '', NULL, platform) AS platform, verdict, kbps")
        if fmt == "parquet":
            cols += ", raw AS document"
        q = f"SELECT {cols} FROM {{db}}.measurements WHERE {where} ORDER BY t, uid"
        n = 0
        writer: Any = None
        try:
            with self._lock, _mapped_errors(self._display_url()), self._client.query_arrow_stream(
                    self._sql(q), parameters=params, use_strings=True) as stream:
                for batch in stream:
                    table = _plain_arrow(pa.Table.from_batches([batch]) if isinstance(batch, pa.RecordBatch)
                                         else batch)
                    if writer is None:
                        writer = (pq.ParquetWriter(path, table.schema, compression="zstd") if fmt == "parquet"
                                  else _CsvWriter(path, table.column_names))
                    writer.write_table(table)
                    n += table.num_rows
        except OSError as exc:
            raise StoreError(f"export to {path}: {exc.strerror or exc}") from exc
        finally:
            if writer is not None:
                writer.close()
        if writer is None:
            Path(path).write_bytes(b"")
        return n

    def measurements(self, flt: MeasurementFilter, *, limit: int, offset: int) -> list[dict[str, Any]]:
        where, params = self._where(flt)
        q = f"""SELECT uid, t, cc, asn, network, region, test_name, input, platform, verdict, kbps, source
                FROM {{db}}.measurements WHERE {where} ORDER BY t, uid
                LIMIT {{limit:UInt64}} OFFSET {{offset:UInt64}}"""
        names = ("uid", "t", "cc", "asn", "network", "region", "test_name", "input", "platform", "verdict",
                 "kbps", "source")
        out = []
        for row in self._rows(q, {**params, "limit": max(0, limit), "offset": max(0, offset)}):
            rec = dict(zip(names, row, strict=True))
            rec["t"] = _utc(rec["t"]).strftime("%Y-%m-%dT%H:%M:%SZ")
            rec["asn"] = f"AS{rec['asn']}"
            rec["platform"] = rec["platform"] or None
            out.append(rec)
        return out

    def reclassify(self, classify: Callable[[bytes], tuple[Any, ...]], *, batch_size: int = 10_000,
                   observe: ReclassifyObserver | None = None) -> int:
        """Recomputes every stored verdict (and its rule and rules version) from the raw documents; the changes
        land in one mutation, and the new rules version alone in another. The number of verdicts or kbps
        that changed."""
        judged = ReclassifyPass(classify, observe)
        before = int(self._scalar("SELECT max(seq) FROM {db}.measurements") or 0)  # rows stored before the pass
        updates: list[tuple[str, StoredVerdict]] = []
        last = ""
        while True:
            chunk = self._rows(
                "SELECT uid, raw, verdict, kbps, verdict_rule, rules_version FROM {db}.measurements "
                "WHERE uid > {last:String} ORDER BY uid LIMIT {n:UInt64}", {"last": last, "n": batch_size})
            if not chunk:
                break
            last = chunk[-1][0]
            for uid, raw, *stored in chunk:
                new = judged.judge(uid, stored, raw.encode() if isinstance(raw, str) else bytes(raw))
                if new is not None:
                    updates.append((uid, new))
        if updates:
            self._apply_updates(updates)
        if judged.restamps:
            version = judged.stamp_version
            differs = ("rules_version IS NOT NULL" if version is None
                       else "(rules_version IS NULL OR rules_version != {v:String})")
            self._command(f"ALTER TABLE {{db}}.measurements UPDATE rules_version = {{v:Nullable(String)}} "
                          f"WHERE seq <= {{before:UInt64}} AND {differs}", {"v": version, "before": before},
                          settings={"mutations_sync": 2})
        if judged.changed:
            self._rebuild_rollup()
        return judged.changed

    def verdicts(self, uids: Sequence[str]) -> dict[str, StoredVerdict]:
        """The stored judgment of each of these uids that is stored."""
        if not uids:
            return {}
        rows = self._rows("SELECT uid, verdict, kbps, verdict_rule, rules_version FROM {db}.measurements "
                          "WHERE uid IN {uids:Array(String)}", {"uids": list(uids)})
        return {r[0]: StoredVerdict(*r[1:]) for r in rows}

    def _rebuild_rollup(self) -> None:
        """The rollup again from every stored row, after verdicts were rewritten in place: folding only ever
        adds what is new, so the counts folded from the old verdicts would stay. The state says "rebuild"
        (-1) before the rollup is emptied, so a failure anywhere leaves a state the next refresh completes; a
        new generation gives the refolds deduplication tokens no earlier insert used."""
        with self._lock:
            if not int(self.get_state(ROLLUP_SEQ_KEY) or 0):
                return  # never built
            self.set_state(ROLLUP_GEN_KEY, str(int(self.get_state(ROLLUP_GEN_KEY) or 0) + 1))
            self.set_state(ROLLUP_SEQ_KEY, str(_REBUILD))
            self.refresh_rollup()

    def _apply_updates(self, updates: list[tuple[str, StoredVerdict]]) -> None:
        # A Join table keyed by uid feeds one ALTER ... UPDATE (a mutation, waited for), the documented way to
        # set per-row values in ClickHouse.
        name = f"_reclassify_{time.time_ns()}"
        self._command(f"CREATE TABLE {{db}}.{name} (uid String, verdict String, kbps Nullable(Float64), "
                      "verdict_rule Nullable(String), rules_version Nullable(String)) ENGINE = Join(ANY, LEFT, uid)")
        try:
            self._insert(name, [[uid, *new] for uid, new in updates],
                         ("uid", "verdict", "kbps", "verdict_rule", "rules_version"))
            ref = f"'{self._database}.{name}'"
            self._command(
                f"ALTER TABLE {{db}}.measurements UPDATE verdict = joinGet({ref}, 'verdict', uid), "
                f"kbps = joinGet({ref}, 'kbps', uid), verdict_rule = joinGet({ref}, 'verdict_rule', uid), "
                f"rules_version = joinGet({ref}, 'rules_version', uid) "
                f"WHERE joinGetOrNull({ref}, 'verdict', uid) IS NOT NULL",
                settings={"mutations_sync": 2})
        finally:
            self._command(f"DROP TABLE IF EXISTS {{db}}.{name}")

    # --- series -----------------------------------------------------------------------------------------

    def series(
        self, *, since: datetime, until: datetime, bucket_seconds: int, countries: Sequence[str] | None = None
    ) -> list[SeriesCell]:
        bucket = int(bucket_seconds)
        if bucket <= 0:
            raise ConfigError(f"bucket_seconds must be positive, got {bucket_seconds}")
        tech_cols = ", ".join(f"countIf(verdict = '{t}')" for t in _TECHNIQUE_LIST)
        params: dict[str, Any] = {"since": _utc(since), "until": _utc(until)}
        cc_clause = ""
        if countries:
            cc_clause = " AND cc IN {ccs:Array(String)}"
            params["ccs"] = [c.upper() for c in countries]
        # quantileExactInclusive(0.5) interpolates between the two middle values, like DuckDB's median.
        q = f"""
            SELECT intDiv(toUnixTimestamp(t), {bucket}) * {bucket} AS b, cc, asn, ifNull(region, '') AS reg,
                   platform,
                   count() AS total,
                   countIf(verdict = 'ok') AS ok,
                   countIf(verdict = 'down') AS down,
                   countIf(verdict IN ({_TECH_IN})) AS anomalous,
                   uniqExact(probe_key) AS probes,
                   uniqExactIf(probe_key, verdict IN ({_TECH_IN})) AS anomalous_probes,
                   quantileExactInclusive(0.5)(kbps) AS median_kbps,
                   any(network) AS network_name,
                   uniqExactIf(probe_key, verdict = 'down') AS down_probes,
                   groupUniqArrayIf(concat(verdict, ' ', probe_key), verdict IN ({_TECH_IN})) AS technique_keys,
                   {tech_cols},
                   groupArrayIf((probe_key, test_name, assumeNotNull(kbps)),
                                kbps IS NOT NULL AND platform != 'control') AS probe_kbps
            FROM {{db}}.measurements
            WHERE t >= {{since:{_TS}}} AND t < {{until:{_TS}}} AND platform != ''{cc_clause}
            GROUP BY b, cc, asn, reg, platform
            ORDER BY b, cc, asn, reg, platform
        """
        return [_cell(r) for r in self._rows(q, params)]

    def network_series(
        self, *, since: datetime, until: datetime, bucket_seconds: int, countries: Sequence[str] | None = None
    ) -> list[SeriesCell]:
        """Coarse cells per (bucket, country, network, platform), no regions or probe keys: the detector's
        cheap first pass over everything, to pick the networks worth a fine look."""
        bucket = int(bucket_seconds)
        if bucket <= 0:
            raise ConfigError(f"bucket_seconds must be positive, got {bucket_seconds}")
        params: dict[str, Any] = {"since": _utc(since), "until": _utc(until)}
        cc_clause = ""
        if countries:
            cc_clause = " AND cc IN {ccs:Array(String)}"
            params["ccs"] = [c.upper() for c in countries]
        q = f"""
            SELECT intDiv(toUnixTimestamp(t), {bucket}) * {bucket} AS b, cc, asn, platform,
                   count(), countIf(verdict = 'ok'), countIf(verdict = 'down'), countIf(verdict IN ({_TECH_IN})),
                   uniqExact(probe_key), uniqExactIf(probe_key, verdict IN ({_TECH_IN})),
                   uniqExactIf(probe_key, verdict = 'down'), quantileExactInclusive(0.5)(kbps)
            FROM {{db}}.measurements
            WHERE t >= {{since:{_TS}}} AND t < {{until:{_TS}}} AND platform != ''{cc_clause}
            GROUP BY b, cc, asn, platform
            ORDER BY b, cc, asn, platform
        """
        return [SeriesCell(bucket=datetime.fromtimestamp(int(r[0]), UTC), country=r[1], asn=int(r[2]), region=None,
                           platform=r[3], total=int(r[4]), ok=int(r[5]), down=int(r[6]), anomalous=int(r[7]),
                           probes=int(r[8]), anomalous_probes=int(r[9]), down_probes=int(r[10]),
                           median_kbps=_median(r[11]))
                for r in self._rows(q, params)]

    def failing_probes(
        self, *, since: datetime, until: datetime, bucket_seconds: int, countries: Sequence[str] | None = None
    ) -> list[FailingProbe]:
        """Per probe and bucket in which its control failed: each target's measurements and failures."""
        bucket = int(bucket_seconds)
        if bucket <= 0:
            raise ConfigError(f"bucket_seconds must be positive, got {bucket_seconds}")
        params: dict[str, Any] = {"since": _utc(since), "until": _utc(until)}
        cc_clause = ""
        if countries:
            cc_clause = " AND cc IN {ccs:Array(String)}"
            params["ccs"] = [c.upper() for c in countries]
        q = f"""
            SELECT intDiv(toUnixTimestamp(t), {bucket}) * {bucket} AS b, cc, asn, ifNull(region, '') AS reg,
                   probe_key, platform, count(), countIf(verdict IN ({_TECH_IN}))
            FROM {{db}}.measurements
            WHERE t >= {{since:{_TS}}} AND t < {{until:{_TS}}} AND platform != ''{cc_clause}
              AND (intDiv(toUnixTimestamp(t), {bucket}) * {bucket}, cc, asn, probe_key) IN (
                  SELECT intDiv(toUnixTimestamp(t), {bucket}) * {bucket}, cc, asn, probe_key
                  FROM {{db}}.measurements
                  WHERE t >= {{since:{_TS}}} AND t < {{until:{_TS}}} AND platform = 'control'
                        AND verdict IN ({_TECH_IN}) AND probe_key != ''{cc_clause})
            GROUP BY b, cc, asn, reg, probe_key, platform
            ORDER BY b, cc, asn, reg, probe_key, platform
        """
        return [FailingProbe(bucket=datetime.fromtimestamp(int(r[0]), UTC), country=r[1], asn=int(r[2]), region=r[3],
                             probe=r[4], platform=r[5], total=int(r[6]), anomalous=int(r[7]))
                for r in self._rows(q, params)]

    def technique_probes(
        self, *, since: datetime, until: datetime, bucket_seconds: int, countries: Sequence[str] | None = None
    ) -> list[TechniqueProbes]:
        """Distinct probes per anomaly technique, per bucket, network and target (anomalous measurements only)."""
        bucket = int(bucket_seconds)
        if bucket <= 0:
            raise ConfigError(f"bucket_seconds must be positive, got {bucket_seconds}")
        params: dict[str, Any] = {"since": _utc(since), "until": _utc(until)}
        cc_clause = ""
        if countries:
            cc_clause = " AND cc IN {ccs:Array(String)}"
            params["ccs"] = [c.upper() for c in countries]
        q = f"""
            SELECT intDiv(toUnixTimestamp(t), {bucket}) * {bucket} AS b, cc, asn, platform, verdict,
                   uniqExact(probe_key)
            FROM {{db}}.measurements
            WHERE t >= {{since:{_TS}}} AND t < {{until:{_TS}}} AND platform != '' AND verdict IN ({_TECH_IN}){cc_clause}
            GROUP BY b, cc, asn, platform, verdict
            ORDER BY b, cc, asn, platform, verdict
        """
        return [TechniqueProbes(bucket=datetime.fromtimestamp(int(r[0]), UTC), country=r[1], asn=int(r[2]),
                                platform=r[3], technique=r[4], probes=int(r[5])) for r in self._rows(q, params)]

    def down_counts(
        self, *, since: datetime, until: datetime, bucket_seconds: int, series: Sequence[tuple[str, int, str]]
    ) -> list[tuple[datetime, str, int, str, int, int]]:
        """(bucket, country, network, platform, probes, probes that saw it down) for a few series and a time."""
        bucket = int(bucket_seconds)
        if bucket <= 0:
            raise ConfigError(f"bucket_seconds must be positive, got {bucket_seconds}")
        if not series:
            return []
        params: dict[str, Any] = {"since": _utc(since), "until": _utc(until),
                                  "keys": sorted({f"{cc.upper()}:{asn}:{platform}" for cc, asn, platform in series})}
        q = f"""
            SELECT intDiv(toUnixTimestamp(t), {bucket}) * {bucket} AS b, cc, asn, platform,
                   uniqExact(probe_key), uniqExactIf(probe_key, verdict = 'down')
            FROM {{db}}.measurements
            WHERE t >= {{since:{_TS}}} AND t < {{until:{_TS}}} AND platform != ''
              AND concat(cc, ':', toString(asn), ':', platform) IN {{keys:Array(String)}}
            GROUP BY b, cc, asn, platform
            ORDER BY b, cc, asn, platform
        """
        return [(datetime.fromtimestamp(int(r[0]), UTC), r[1], int(r[2]), r[3], int(r[4]), int(r[5]))
                for r in self._rows(q, params)]

    def changes_since(self, seq: int) -> Changes:
        rows = self._rows("SELECT cc, min(t), max(t) FROM {db}.measurements WHERE seq > {seq:UInt64} GROUP BY cc",
                          {"seq": max(0, seq)})
        top = int(self._scalar("SELECT max(seq) FROM {db}.measurements") or 0)
        now = datetime.now(UTC)
        # a time a client made up (year 1, 2299) stored before the checks must not reach detection's arithmetic
        return Changes(max_seq=top, spans={cc: (sane_time(_utc(lo), now), sane_time(_utc(hi), now))
                                           for cc, lo, hi in rows})

    def countries(self) -> list[str]:
        return [r[0] for r in self._rows("SELECT DISTINCT cc FROM {db}.measurements ORDER BY cc")]

    def example_uids(
        self, *, country: str | None, since: datetime, until: datetime, asns: Sequence[int] = (),
        platforms: Sequence[str] = (), verdicts: Sequence[str] = (), limit: int = 5,
    ) -> list[str]:
        """A few measurement ids that show an incident (its evidence), earliest first."""
        clauses = [f"t >= {{since:{_TS}}}", f"t < {{until:{_TS}}}"]
        params: dict[str, Any] = {"since": _utc(since), "until": _utc(until), "limit": max(0, limit)}
        for column, kind, values in (("asn", "Int64", list(asns)), ("platform", "String", list(platforms)),
                                     ("verdict", "String", list(verdicts))):
            if values:
                clauses.append(f"{column} IN {{{column}s:Array({kind})}}")
                params[f"{column}s"] = values
        if country:
            clauses.append("cc = {cc:String}")
            params["cc"] = country.upper()
        return [r[0] for r in self._rows(
            f"SELECT uid FROM {{db}}.measurements WHERE {' AND '.join(clauses)} ORDER BY t, uid "
            "LIMIT {limit:UInt64}", params)]

    # --- the dashboard's rollup -------------------------------------------------------------------------

    def refresh_rollup(self) -> int:
        """Folds measurements stored since the last call into series_rollup; returns how many were folded."""
        with self._lock:
            done = int(self.get_state(ROLLUP_SEQ_KEY) or 0)
            if done == _REBUILD:
                self._command("TRUNCATE TABLE {db}.series_rollup")
                self.set_state(ROLLUP_SEQ_KEY, "0")
                done = 0
            top = int(self._scalar("SELECT max(seq) FROM {db}.measurements") or 0)
            if top <= done:
                return 0
            generation = self.get_state(ROLLUP_GEN_KEY) or "0"
            # The token names the seq range (and the rollup's generation): if the state write below fails, the
            # retry's insert is dropped by the table's deduplication window instead of counting the range twice.
            self._command(
                f"""INSERT INTO {{db}}.series_rollup
                    SELECT toStartOfInterval(t, INTERVAL {ROLLUP_BUCKET_SECONDS} SECOND) AS b, cc, asn, platform,
                           any(network), count(), countIf(verdict = 'ok'), countIf(verdict = 'down'),
                           countIf(verdict IN ({_TECH_IN}))
                    FROM {{db}}.measurements
                    WHERE seq > {{done:UInt64}} AND seq <= {{top:UInt64}} AND platform != ''
                    GROUP BY b, cc, asn, platform""",
                {"done": done, "top": top},
                settings={"insert_deduplication_token": f"rollup-{generation}-{done}-{top}", "insert_deduplicate": 1},
            )
            self.set_state(ROLLUP_SEQ_KEY, str(top))
            return top - done

    def rollup(
        self, *, since: datetime, until: datetime, bucket_seconds: int, country: str | None = None,
        asn: int | None = None, platform: str | None = None,
    ) -> list[SeriesCell]:
        """Counts per (bucket, country, network, platform) from the rollup; bucket_seconds a multiple of 300."""
        bucket = max(ROLLUP_BUCKET_SECONDS, bucket_seconds - bucket_seconds % ROLLUP_BUCKET_SECONDS)
        clauses = ["b >= {since:DateTime('UTC')}", "b < {until:DateTime('UTC')}"]
        params: dict[str, Any] = {"since": _utc(since), "until": _utc(until)}
        if country:
            clauses.append("cc = {cc:String}")
            params["cc"] = country.upper()
        if asn is not None:
            clauses.append("asn = {asn:Int64}")
            params["asn"] = asn
        if platform:
            clauses.append("platform = {platform:String}")
            params["platform"] = platform
        q = f"""SELECT intDiv(toUnixTimestamp(b), {bucket}) * {bucket} AS bb, cc, asn, platform,
                       any(network), sum(total), sum(ok), sum(down), sum(anomalous)
                FROM {{db}}.series_rollup WHERE {" AND ".join(clauses)}
                GROUP BY bb, cc, asn, platform ORDER BY bb, cc, asn, platform"""
        return [
            SeriesCell(bucket=datetime.fromtimestamp(int(r[0]), UTC), country=r[1], asn=int(r[2]), region=None,
                       platform=r[3], network_name=r[4] or "", total=int(r[5]), ok=int(r[6]), down=int(r[7]),
                       anomalous=int(r[8]))
            for r in self._rows(q, params)
        ]

    def latest_time(self) -> datetime | None:
        """The time of the newest measurement stored (the data's "now" when replaying the past)."""
        newest = _read_time(self._scalar("SELECT maxOrNull(t) FROM {db}.measurements"))
        return None if newest is None else sane_time(newest, datetime.now(UTC))  # never a stored 2099

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
        clauses: list[str] = []
        params: dict[str, Any] = {"limit": max(0, flt.limit), "offset": max(0, flt.offset)}
        if flt.country:
            clauses.append("country = {country:String}")
            params["country"] = flt.country.upper()
        if flt.platform:
            clauses.append("has(platforms, {platform:String})")
            params["platform"] = flt.platform
        if flt.kind:
            clauses.append("kind = {kind:String}")
            params["kind"] = flt.kind
        if flt.status:
            clauses.append("status = {status:String}")
            params["status"] = flt.status
        if flt.since:
            clauses.append(f"(end_t IS NULL OR end_t >= {{since:{_TS}}})")
            params["since"] = _utc(flt.since)
        if flt.until:
            clauses.append(f"start_t < {{until:{_TS}}}")
            params["until"] = _utc(flt.until)
        where = " AND ".join(clauses) or "1"
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
        clauses: list[str] = []
        params: dict[str, Any] = {}
        if country:
            clauses.append("country = {country:String}")
            params["country"] = country.upper()
        if since:
            clauses.append(f"t >= {{since:{_TS}}}")
            params["since"] = _utc(since)
        if until:
            clauses.append(f"t < {{until:{_TS}}}")
            params["until"] = _utc(until)
        where = " AND ".join(clauses) or "1"
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

    def uid_credentials(self, uids: Sequence[str]) -> dict[str, str | None]:
        """The credential that brought each of these uids, for those stored (None: stored before issue #22)."""
        if not uids:
            return {}
        rows = self._rows("SELECT uid, any(credential) FROM {db}.measurements WHERE uid IN {uids:Array(String)} "
                          "GROUP BY uid", {"uids": list(uids)})
        return {r[0]: r[1] for r in rows}

    def purge_credential(self, credential: str) -> dict[str, tuple[datetime, datetime]]:
        """Deletes every measurement `credential` brought (a mutation, waited for); the countries and time
        spans it covered. The rollup is rebuilt (it only ever adds)."""
        with self._lock:
            rows = self._rows("SELECT cc, min(t), max(t) FROM {db}.measurements WHERE credential = {c:String} "
                              "GROUP BY cc", {"c": credential})
            if rows:
                self._command("ALTER TABLE {db}.measurements DELETE WHERE credential = {c:String}",
                              {"c": credential}, settings={"mutations_sync": 2})
                self._rebuild_rollup()
            if credential.startswith("probe:"):  # its heartbeats feed detection too
                self._command("ALTER TABLE {db}.probe_heartbeats DELETE WHERE probe = {p:String}",
                              {"p": credential[len("probe:"):]}, settings={"mutations_sync": 2})
        now = datetime.now(UTC)
        return {cc: (sane_time(_utc(lo), now), sane_time(_utc(hi), now)) for cc, lo, hi in rows}

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
        params: dict[str, Any] = {"since": _utc(since), "until": _utc(until)}
        cc_clause = ""
        if countries:
            cc_clause = " AND cc IN {ccs:Array(String)}"
            params["ccs"] = [c.upper() for c in countries]
        rows = self._rows(
            f"SELECT t, cc, region, asn, signal, source, value FROM {{db}}.signals FINAL "
            f"WHERE t >= {{since:{_TS}}} AND t < {{until:{_TS}}}{cc_clause} "
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

    def heartbeats(self, *, since: datetime, until: datetime) -> list[tuple[str, datetime, str, int, str | None]]:
        rows = self._rows(
            f"SELECT probe, t, cc, asn, region FROM {{db}}.probe_heartbeats FINAL "
            f"WHERE t >= {{since:{_TS}}} AND t < {{until:{_TS}}} ORDER BY t, probe",
            {"since": _utc(since), "until": _utc(until)})
        return [(r[0], _utc(r[1]), r[2], int(r[3]), r[4] or None) for r in rows]

    def add_user_report(self, report: UserReport) -> None:
        self._insert("user_reports", [[_utc(report.time), report.country, report.region, report.network,
                                       report.platform, report.text]],
                     ("t", "cc", "region", "network", "platform", "text"))

    def user_report_counts(self, *, country: str | None, since: datetime, until: datetime
                           ) -> list[tuple[str, str, str, int]]:
        """(country, region, platform, count), most reported first."""
        params: dict[str, Any] = {"since": _utc(since), "until": _utc(until)}
        clause = ""
        if country:
            clause = " AND cc = {cc:String}"
            params["cc"] = country.upper()
        rows = self._rows(
            f"SELECT cc, region, platform, count() AS n FROM {{db}}.user_reports "
            f"WHERE t >= {{since:{_TS}}} AND t < {{until:{_TS}}}{clause} "
            "GROUP BY cc, region, platform ORDER BY n DESC, cc, region, platform", params)
        return [(r[0], r[1], r[2], int(r[3])) for r in rows]

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


def _per_probe_median(triples: Sequence[Any]) -> tuple[tuple[str, str, float], ...]:
    """(probe_key, test_name, kbps) of a cell -> each probe's median per test, as DuckDB's series computes it
    (none for the control, whose speed is not tested)."""
    by: dict[tuple[str, str], list[float]] = {}
    for key, test, v in triples or ():
        by.setdefault((key, test), []).append(float(v))
    return tuple(sorted((k, t, float(statistics.median(vs))) for (k, t), vs in by.items()))


def _cell(r: Sequence[Any]) -> SeriesCell:
    end = 15 + len(_TECHNIQUE_LIST)
    techniques = {t: int(n) for t, n in zip(_TECHNIQUE_LIST, r[15:end], strict=True) if n}
    return SeriesCell(
        bucket=datetime.fromtimestamp(int(r[0]), UTC),
        country=r[1],
        asn=int(r[2]),
        region=r[3] or None,
        platform=r[4],
        total=int(r[5]),
        ok=int(r[6]),
        down=int(r[7]),
        anomalous=int(r[8]),
        probes=int(r[9]),
        anomalous_probes=int(r[10]),
        median_kbps=_median(r[11]),
        network_name=r[12] or "",
        down_probes=int(r[13]),
        technique_keys=tuple(sorted(r[14] or ())),
        anomalous_keys=tuple(sorted({k.split(" ", 1)[1] for k in (r[14] or ())})),
        by_technique=techniques,
        probe_kbps=_per_probe_median(r[end]) if len(r) > end else (),
    )


def _median(value: Any) -> float | None:
    """ClickHouse's median of no values is NULL (or NaN for a non-Nullable column): None either way."""
    return float(value) if value is not None and value == value else None


def _plain_arrow(table: pa.Table) -> pa.Table:
    """ClickHouse's Arrow output with dictionary (LowCardinality) columns decoded to plain ones, so parquet and
    CSV readers see the same types as DuckDB's export."""
    cols = []
    for col in table.columns:
        if pa.types.is_dictionary(col.type):
            col = col.cast(col.type.value_type)
        if pa.types.is_timestamp(col.type) and col.type.tz is not None:
            col = col.cast(pa.timestamp(col.type.unit))  # naive UTC, as DuckDB writes TIMESTAMP
        cols.append(col)
    return pa.table(cols, names=table.column_names)


class _CsvWriter:
    """CSV in the shape of DuckDB's COPY (FORMAT CSV, HEADER): times as `YYYY-MM-DD HH:MM:SS`, an empty cell for
    NULL and `""` for an empty string, quotes only where needed."""

    def __init__(self, path: str, names: Sequence[str]) -> None:
        self._fh = open(path, "w", newline="", encoding="utf-8")  # noqa: SIM115
        self._fh.write(",".join(names) + "\n")

    def write_table(self, table: pa.Table) -> None:
        cols = [c.to_pylist() for c in table.columns]
        self._fh.writelines(",".join(_csv_cell(v) for v in row) + "\n" for row in zip(*cols, strict=True))

    def close(self) -> None:
        self._fh.close()


def _csv_cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, datetime):
        return v.strftime("%Y-%m-%d %H:%M:%S") + (f".{v.microsecond:06d}" if v.microsecond else "")
    text = csv_cell(v) if isinstance(v, str) else str(v)  # formula-like text neutralised, as DuckDB's export
    if text == "" or any(c in text for c in ',"\n\r'):
        return '"' + text.replace('"', '""') + '"'
    return text
