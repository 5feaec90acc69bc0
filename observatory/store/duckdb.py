"""The embedded default store: one DuckDB file.

Measurements are one row each with the fields detection reads, plus the whole document (JSON, zstd-compressed
before insert) so nothing is lost and everything can be re-analysed. Inserts are
idempotent on the measurement's identity (`uid`, the primary key). Every batch is one transaction: a crash
leaves whole batches or nothing.
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import zstandard

from observatory.errors import StoreError, StoreFullError, StoreReadOnlyError
from observatory.incident import Incident
from observatory.measurement import sane_time
from observatory.series import SeriesCell
from observatory.signals import SignalPoint, SignalSeries
from observatory.store.base import (
    Changes,
    ContextEvent,
    DocumentEncoder,
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
    values_of,
)
from observatory.vocab import TECHNIQUES

_TECHNIQUE_LIST = sorted(TECHNIQUES)

# Each migration takes the schema from version i to i+1. Never edit one that has shipped: append.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE measurements (
        uid VARCHAR PRIMARY KEY,
        seq BIGINT NOT NULL,
        t TIMESTAMP NOT NULL,
        received TIMESTAMP NOT NULL,
        cc VARCHAR NOT NULL,
        asn BIGINT NOT NULL,
        network VARCHAR,
        region VARCHAR,
        probe_key VARCHAR,
        resolver_asn BIGINT,
        test_name VARCHAR NOT NULL,
        test_version VARCHAR,
        software VARCHAR,
        source VARCHAR,
        input VARCHAR,
        platform VARCHAR,
        verdict VARCHAR NOT NULL,
        kbps DOUBLE,
        raw BLOB NOT NULL
    );
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
    """
    ALTER TABLE measurements ADD COLUMN credential VARCHAR;
    ALTER TABLE probe_credentials ADD COLUMN country VARCHAR;
    ALTER TABLE probe_credentials ADD COLUMN asns BIGINT[];
    ALTER TABLE probe_credentials ADD COLUMN relay BOOLEAN DEFAULT false;
    """,
    # 8 (issue #23): verdict provenance, the rule that decided each verdict and the rules version (a digest of
    # the rules, verdict.RULES_VERSION); NULL for rows stored before
    """
    ALTER TABLE measurements ADD COLUMN IF NOT EXISTS verdict_rule VARCHAR;
    ALTER TABLE measurements ADD COLUMN IF NOT EXISTS rules_version VARCHAR;
    """,
]
WITNESS_VERSION = 7  # the schema version from which the columns of migration 7 exist
PROVENANCE_VERSION = 8  # the schema version from which the columns of migration 8 exist

ROLLUP_BUCKET_SECONDS = 300
HOUR_SECONDS = 3600
ROLLUP_TABLES = (("series_rollup", ROLLUP_BUCKET_SECONDS), ("series_rollup_1h", HOUR_SECONDS))
ROLLUP_SEQ_KEY = "rollup.seq"

_COLUMNS = (
    "uid", "seq", "t", "received", "cc", "asn", "network", "region", "probe_key", "resolver_asn",
    "test_name", "test_version", "software", "source", "input", "platform", "verdict", "kbps", "raw",
    "credential", "verdict_rule", "rules_version",
)


def _first(rows: list[tuple[Any, ...]]) -> tuple[Any, ...] | None:
    """The first row of a result fetched whole (DuckDB 2 wants every result read to the end)."""
    return rows[0] if rows else None


def _where_clause(conditions: Sequence[tuple[str, Any]]) -> tuple[str, list[Any]]:
    """The conditions whose value is given (not None), ANDed; each condition has one `?` for its value."""
    used = [(cond, value) for cond, value in conditions if value is not None]
    if not used:
        return "", []
    return " WHERE " + " AND ".join(c for c, _ in used), [v for _, v in used]


def _naive(t: datetime) -> datetime:
    return t.astimezone(UTC).replace(tzinfo=None) if t.tzinfo else t


def _literal(t: datetime) -> str:
    return t.strftime("%Y-%m-%d %H:%M:%S.%f")


def _rollup_reads(lo: datetime, hi: datetime, bucket_seconds: int
                  ) -> list[tuple[str, int, list[tuple[datetime, datetime]]]]:
    """Which rollup (table, its bucket) to read for the 5-minute buckets starting in [lo, hi), with buckets
    of `bucket_seconds` (a multiple of 300): whole hours inside the range from the hourly one, the partial
    hours at either end from the 5-minute one (same sums, ~12x fewer rows)."""
    (five_minutes, _), (hourly, _) = ROLLUP_TABLES
    five = [(five_minutes, ROLLUP_BUCKET_SECONDS, [(lo, hi)])]
    if bucket_seconds % HOUR_SECONDS:
        return five
    first = _ceil_hour(lo)  # the first hour whose 5-minute buckets all start at or after lo
    end = _ceil_hour(hi - timedelta(minutes=55))  # hours before this one have all their buckets before hi
    if first >= end:
        return five
    edges = [(a, z) for a, z in ((lo, first), (end, hi)) if a < z]
    reads = [(hourly, HOUR_SECONDS, [(first, end)])]
    return reads + [(five_minutes, ROLLUP_BUCKET_SECONDS, edges)] if edges else reads


def _ceil_hour(t: datetime) -> datetime:
    floor = t.replace(minute=0, second=0, microsecond=0)
    return floor if floor == t else floor + timedelta(hours=1)


def _aware(t: datetime | None) -> datetime | None:
    return None if t is None else t.replace(tzinfo=UTC)


@contextlib.contextmanager
def _mapped_errors(path: str) -> Iterator[None]:
    """DuckDB's errors become the observatory's, with the file named; the disk's state named plainly."""
    try:
        yield
    except duckdb.Error as exc:
        text = str(exc)
        low = text.lower()
        if "no space left" in low or "disk full" in low or "could not write" in low and "space" in low:
            raise StoreFullError(f"store {path}: the disk is full ({text.splitlines()[0]})") from exc
        if "read-only" in low or "read only" in low or "permission denied" in low:
            raise StoreReadOnlyError(f"store {path}: cannot write ({text.splitlines()[0]})") from exc
        raise StoreError(f"store {path}: {text.splitlines()[0]}") from exc


CHECKPOINT_WAL = "64MB"  # write-ahead log that triggers a checkpoint


# Sharing the file between processes. DuckDB lets one process at a time open a file for writing (and none read
# it meanwhile), so a long-running service that kept its connection would lock every CLI command out. Instead:
# * whoever finds the file locked waits for it (up to $OBSERVATORY_STORE_WAIT seconds) and, while waiting, keeps
#   a marker file "<store>.wait" fresh to say so;
# * a `shared` store (what `serve` and `demo` open) lets go of the file between operations when that marker is
#   there, or after SHARED_IDLE_SECONDS without use, and takes it back on its next operation.
# A service with nobody waiting keeps its connection: reopening costs ~70 ms (100+ with the checkpoint DuckDB
# does on close), so letting go after every request would slow the collector several-fold.
STORE_WAIT_SECONDS = 30.0  # default of $OBSERVATORY_STORE_WAIT
SHARED_IDLE_SECONDS = 5.0
_WAIT_MARK_FRESH = 5.0  # a marker older than this is a waiter that died: ignored
_RETRY_SECONDS = 0.02
_HANDOFF_SECONDS = 1.0  # after letting go for a waiter, the service gives it this long to take the file


def _wait_seconds() -> float:
    value = os.environ.get("OBSERVATORY_STORE_WAIT")
    try:
        return max(0.0, float(value)) if value else STORE_WAIT_SECONDS
    except ValueError:
        return STORE_WAIT_SECONDS


def _is_lock_conflict(exc: duckdb.Error) -> bool:
    return isinstance(exc, duckdb.IOException) and "lock" in str(exc).lower()


class _Hold:
    """The store's mutex (one operation at a time per process), which also opens the connection on first use
    and, for a shared store, lets another process have the file between operations (see above)."""

    def __init__(self, store: DuckDBStore, shared: bool) -> None:
        self._mutex = threading.RLock()
        self._store = store
        self.shared = shared
        self.busy = 0  # operations (and open cursors) in progress
        self.last_used = time.monotonic()
        self.handed_off = 0.0  # when the file was last let go for a waiter
        self.closed = False

    def __enter__(self) -> _Hold:
        self._mutex.acquire()
        try:
            if self._store._con is None:
                if self.closed:
                    raise StoreError(f"store {self._store.url}: already closed")
                self._store._reopen()
        except BaseException:
            self._mutex.release()
            raise
        self.busy += 1
        return self

    def __exit__(self, *exc: object) -> None:
        self.busy -= 1
        self.last_used = time.monotonic()
        self._mutex.release()

    @contextlib.contextmanager
    def pinned(self) -> Iterator[None]:
        """Keeps the connection open outside the mutex (a cursor streamed to a caller)."""
        with self._mutex:
            self.busy += 1
        try:
            yield
        finally:
            with self._mutex:
                self.busy -= 1
                self.last_used = time.monotonic()

    def release_if_wanted(self) -> None:
        """Lets go of the file when nothing is in progress and another process waits, or it sat idle."""
        if not self._mutex.acquire(blocking=False):
            return
        try:
            if self._store._con is None or self.busy:
                return
            waited = self._store._waiter_present()
            if waited or time.monotonic() - self.last_used > SHARED_IDLE_SECONDS:
                self._store._disconnect()
                if waited:
                    self.handed_off = time.monotonic()
        finally:
            self._mutex.release()


class DuckDBStore:
    def __init__(self, path: str, *, read_only: bool = False, shared: bool = False) -> None:
        """`shared`: let other processes use the file between this store's operations (a long-running service)."""
        self.url = path
        self._read_only = read_only
        self._con: Any = None
        self._lock = _Hold(self, shared and path != ":memory:")
        self._latest: tuple[int, datetime | None] = (0, None)  # (seq, newest time) seen by latest_time()
        self._witness_columns: bool | None = None  # whether migration 7 ran; known on first use
        if path != ":memory:":
            parent = Path(path).expanduser().resolve().parent
            try:
                parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"store {path}: cannot create its directory: {exc}") from exc
            if read_only and not Path(path).exists():
                raise StoreError(f"store {path}: no such store")
        self._con = self._connect()
        if not read_only:
            self._migrate()
        self._codec = _Codec(self._stored_dictionaries())
        if self._lock.shared:
            threading.Thread(target=self._share_loop, name="observatory-store-share", daemon=True).start()

    def _connect(self) -> Any:
        """A connection to the file, waiting (up to $OBSERVATORY_STORE_WAIT s) while another process has it."""
        deadline = time.monotonic() + _wait_seconds()
        marked = 0.0
        try:
            while True:
                try:
                    return self._open_connection()
                except duckdb.Error as exc:
                    if not _is_lock_conflict(exc):
                        with _mapped_errors(self.url):
                            raise
                    if time.monotonic() >= deadline:
                        raise StoreError(
                            f"store {self.url} is in use by another process (waited {_wait_seconds():g} s; "
                            "DuckDB allows one writer at a time, and `observatory serve` lets go of the file "
                            "for others): stop it, or wait longer with OBSERVATORY_STORE_WAIT=SECONDS") from exc
                if time.monotonic() - marked > 1.0:  # refreshed: an old marker is taken for a dead waiter
                    self._mark_waiting()
                    marked = time.monotonic()
                time.sleep(_RETRY_SECONDS)
        finally:
            if marked:
                with contextlib.suppress(OSError):
                    os.unlink(self._wait_path())

    def _open_connection(self) -> Any:
        # a bounded buffer pool (DuckDB's default is 80% of the machine, which a long ingest would take);
        # $OBSERVATORY_DUCKDB_MEMORY overrides
        memory = os.environ.get("OBSERVATORY_DUCKDB_MEMORY", "4GB")
        return duckdb.connect(self.url, read_only=self._read_only, config={
            "memory_limit": memory,
            # a checkpoint rewrites the table's last row group and its index: at DuckDB's default (a 16 MB
            # write-ahead log) an ingest checkpointed every ~100k measurements. Fewer: a third less CPU for the
            # writer at 1M measurements, a smaller file, no more peak memory.
            "checkpoint_threshold": CHECKPOINT_WAL,
        })

    # --- sharing the file with other processes (see STORE_WAIT_SECONDS) ------------------------------------

    def _wait_path(self) -> str:
        return self.url + ".wait"

    def _mark_waiting(self) -> None:
        with contextlib.suppress(OSError), open(self._wait_path(), "a"):
            os.utime(self._wait_path())

    def _waiter_present(self) -> bool:
        try:
            return time.time() - os.stat(self._wait_path()).st_mtime < _WAIT_MARK_FRESH
        except OSError:
            return False

    def _reopen(self) -> None:
        """Takes the file back after letting go: first giving a waiter its turn, then re-reading what another
        process may have changed that this store caches (the zstd dictionaries)."""
        while (time.monotonic() - self._lock.handed_off < _HANDOFF_SECONDS and self._waiter_present()):
            time.sleep(_RETRY_SECONDS)
        self._con = self._connect()
        self._codec = _Codec(self._stored_dictionaries())

    def _disconnect(self) -> None:
        if self._con is not None:
            with contextlib.suppress(duckdb.Error):
                self._con.close()
            self._con = None

    def _share_loop(self) -> None:
        while not self._lock.closed:
            time.sleep(0.05)
            self._lock.release_if_wanted()

    # --- schema -----------------------------------------------------------------------------------------

    def _migrate(self) -> None:
        with self._lock, _mapped_errors(self.url):
            self._con.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = _first(self._con.execute("SELECT max(version) FROM schema_version").fetchall())
            current = row[0] if row and row[0] is not None else 0
            for version in range(current, len(MIGRATIONS)):
                self._con.execute("BEGIN TRANSACTION")
                try:
                    self._con.execute(MIGRATIONS[version])
                    self._con.execute("INSERT INTO schema_version VALUES (?)", [version + 1])
                    self._con.execute("COMMIT")
                except Exception:
                    self._con.execute("ROLLBACK")
                    raise

    def _stored_dictionaries(self) -> list[bytes]:
        with self._lock:
            try:
                return [r[0] for r in self._con.execute(
                    "SELECT dict FROM zstd_dictionaries ORDER BY created, id").fetchall()]
            except duckdb.CatalogException:  # a read-only store from before migration 5
                return []

    def _compress_docs(self, docs: list[bytes]) -> list[bytes]:
        """zstd with the store's dictionary, trained from the first big enough batch and stored before use."""
        self._ensure_dictionary(docs)
        return self._codec.compress(docs)

    def _ensure_dictionary(self, docs: Sequence[bytes]) -> None:
        if not self._codec.has_dictionary and len(docs) >= _DICT_MIN_SAMPLES:
            with self._lock, _mapped_errors(self.url):
                if not self._codec.has_dictionary:
                    trained = _train_dictionary(docs)
                    if trained is not None:
                        self._con.execute("INSERT OR IGNORE INTO zstd_dictionaries VALUES (?, ?, ?)",
                                          [trained.dict_id(), datetime.now(UTC).replace(tzinfo=None),
                                           trained.as_bytes()])
                        self._codec.add(trained.as_bytes())

    def schema_version(self) -> int:
        with self._lock:
            row = _first(self._con.execute("SELECT max(version) FROM schema_version").fetchall())
            return int(row[0]) if row and row[0] is not None else 0

    def close(self) -> None:
        with self._lock._mutex:
            self._lock.closed = True
            self._disconnect()

    # --- measurements -----------------------------------------------------------------------------------

    def insert(self, rows: Sequence[Row]) -> InsertResult:
        return self.insert_table(rows_table(rows))

    def document_encoder(self, samples: Callable[[], Sequence[bytes]] | None = None) -> DocumentEncoder | None:
        """zstd with the store's current dictionary, for documents compressed in another process (ingest's pool
        workers). A store without one trains it from `samples()` (documents as they will be stored) when they
        are enough, else from its first big batch (sent as JSON): until then, None."""
        if samples is not None and not self._codec.has_dictionary:
            self._ensure_dictionary(samples())
        return self._codec.encoder()

    def insert_table(self, table: pa.Table) -> InsertResult:
        """Stores a BATCH_SCHEMA table (or ENCODED_BATCH_SCHEMA: `raw` from document_encoder()) in one
        transaction; rows whose uid is stored already are duplicates."""
        table, in_batch_dups = first_of_each_uid(table)
        if table.num_rows == 0:
            return InsertResult(accepted=0, duplicates=in_batch_dups)
        now = datetime.now(UTC).replace(tzinfo=None)
        if "raw" not in table.column_names:
            raw = pa.array(self._compress_docs(values_of(table.column("doc"))), pa.binary())
            table = table.drop_columns(["doc"]).append_column("raw", raw)
        table = table.append_column("received", pa.array([now] * table.num_rows, pa.timestamp("us")))
        for optional in ("credential", "verdict_rule", "rules_version"):  # tables from before they existed
            if optional not in table.column_names:
                table = table.append_column(optional, pa.nulls(table.num_rows, pa.string()))
        with self._lock, _mapped_errors(self.url):
            con = self._con
            con.register("_batch", table)
            try:
                # A plain INSERT first: the primary key still refuses a stored uid (the whole transaction then
                # rolls back), and it is ~20x cheaper on a big table than INSERT OR IGNORE, whose conflict
                # handling costs ~100 us a row at 10 M rows (DuckDB 2.0); when it succeeds every row was
                # written, so it returns nothing. A batch holding stored uids (a retry, a re-ingest) is then
                # written again with OR IGNORE: retries and re-ingests stay idempotent.
                try:
                    self._insert_batch("INSERT")
                    accepted = values_of(table.column("uid"))
                except duckdb.ConstraintException:
                    accepted = self._insert_batch("INSERT OR IGNORE", returning=True)
            finally:
                con.unregister("_batch")
        return InsertResult(
            accepted=len(accepted),
            duplicates=in_batch_dups + table.num_rows - len(accepted),
            accepted_uids=tuple(accepted),
        )

    def _insert_batch(self, verb: str, *, returning: bool = False) -> list[str]:
        """The registered `_batch` in one transaction (rolled back on any error); the uids written, if asked."""
        con = self._con
        con.execute("BEGIN TRANSACTION")
        try:
            cur = con.execute(
                f"""{verb} INTO measurements ({", ".join(_COLUMNS)})
                    SELECT uid, nextval('measurement_seq'), t, received, cc, asn, network, region,
                           probe_key, resolver_asn, test_name, test_version, software, source, input,
                           platform, verdict, kbps, raw, credential, verdict_rule, rules_version FROM _batch
                    {"RETURNING uid" if returning else ""}"""
            )
            accepted = [r[0] for r in cur.fetchall()] if returning else []
            con.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(duckdb.Error):
                con.execute("ROLLBACK")
            raise
        return accepted

    def count(self) -> int:
        with self._lock, _mapped_errors(self.url):
            row = _first(self._con.execute("SELECT count(*) FROM measurements").fetchall())
            return int(row[0]) if row else 0

    def stats(self) -> dict[str, Any]:
        def grouped(expr: str, limit: int = 200) -> dict[str, int]:
            q = f"SELECT {expr} AS k, count(*) FROM measurements GROUP BY k ORDER BY count(*) DESC, k LIMIT {limit}"
            return {str(k): int(n) for k, n in self._con.execute(q).fetchall()}

        with self._lock, _mapped_errors(self.url):
            return {
                "measurements": self.count(),
                "by_country": grouped("cc"),
                "by_network": grouped("'AS' || asn::VARCHAR"),
                "by_test": grouped("test_name"),
                "by_platform": grouped("coalesce(platform, '(none)')"),
                "by_verdict": grouped("verdict"),
                "by_day": dict(sorted(grouped("strftime(t, '%Y-%m-%d')", 10_000).items())),
                # who brought them (issue #22): a probe's credential or an import source, to find a forger
                "by_credential": grouped("coalesce(credential, '(unrecorded)')") if self._has_witness_columns()
                else {},
            }

    @staticmethod
    def _where(flt: MeasurementFilter) -> tuple[str, list[Any]]:
        return _where_clause([
            ("cc = ?", flt.country.upper() if flt.country else None),
            ("asn = ?", flt.asn),
            ("platform = ?", flt.platform or None),
            ("t >= ?", _naive(flt.since) if flt.since else None),
            ("t < ?", _naive(flt.until) if flt.until else None),
            ("list_contains(?, uid)", list(flt.uids) if flt.uids is not None else None),
            ("list_contains(?, platform)", list(flt.platforms) if flt.platforms else None),
            ("list_contains(?, asn)", list(flt.asns) if flt.asns else None),
        ])

    def documents(self, flt: MeasurementFilter) -> Iterator[bytes]:
        where, params = self._where(flt)
        with self._lock.pinned():  # a shared store keeps the file while the cursor streams
            with self._lock, _mapped_errors(self.url):
                cur = self._con.cursor()
            cur.execute(f"SELECT raw FROM measurements{where} ORDER BY t, uid", params)
            while True:
                chunk = cur.fetchmany(5000)
                if not chunk:
                    break
                for (raw,) in chunk:
                    yield self._codec.decompress(raw)
            cur.close()

    def export(self, flt: MeasurementFilter, fmt: str, path: str) -> int:
        """Parquet (with each whole document as JSON text, streamed) or CSV (the summary columns)."""
        where, params = self._where(flt)
        cols = "uid, t, cc, 'AS' || asn::VARCHAR AS asn, network, region, test_name, test_version, " \
               "software, source, input, platform, verdict, kbps"
        query = f"SELECT {cols}{', raw' if fmt == 'parquet' else ''} FROM measurements{where} ORDER BY t, uid"
        if fmt == "csv":
            query = f"SELECT {_csv_safe_columns(cols)} FROM measurements{where} ORDER BY t, uid"
            with self._lock, _mapped_errors(self.url):
                row = _first(self._con.execute(f"SELECT count(*) FROM measurements{where}", params).fetchall())
                self._con.execute(f"COPY ({query}) TO '{_sql_literal(path)}' (FORMAT CSV, HEADER)", params)
            return int(row[0]) if row else 0
        with self._lock.pinned():  # a shared store keeps the file while the cursor streams
            return self._export_parquet(query, params, path)

    def _export_parquet(self, query: str, params: list[Any], path: str) -> int:
        import pyarrow.parquet as pq

        with self._lock, _mapped_errors(self.url):
            cur = self._con.cursor()
        n = 0
        writer: Any = None
        try:
            for batch in cur.sql(query, params=params).to_arrow_reader(10_000):
                raw = batch.column("raw").to_pylist()
                docs = pa.array([self._codec.decompress(r).decode() for r in raw], pa.string())
                batch = batch.drop_columns(["raw"]).append_column("document", docs)
                if writer is None:
                    writer = pq.ParquetWriter(path, batch.schema, compression="zstd")
                writer.write_batch(batch)
                n += batch.num_rows
        finally:
            cur.close()
            if writer is not None:
                writer.close()
        if writer is None:
            Path(path).write_bytes(b"")
        return n

    def measurements(self, flt: MeasurementFilter, *, limit: int, offset: int) -> list[dict[str, Any]]:
        where, params = self._where(flt)
        q = f"""SELECT uid, t, cc, asn, network, region, test_name, input, platform, verdict, kbps, source
                FROM measurements{where} ORDER BY t, uid LIMIT ? OFFSET ?"""
        with self._lock, _mapped_errors(self.url):
            cur = self._con.execute(q, [*params, limit, offset])
            names = [d[0] for d in cur.description]
            out = []
            for row in cur.fetchall():
                rec = dict(zip(names, row, strict=True))
                rec["t"] = rec["t"].replace(tzinfo=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
                rec["asn"] = f"AS{rec['asn']}"
                out.append(rec)
            return out

    def reclassify(self, classify: Callable[[bytes], tuple[Any, ...]], *, batch_size: int = 10_000,
                   observe: ReclassifyObserver | None = None) -> int:
        """Recomputes every stored verdict (and its rule and rules version) from the raw documents, after the
        rules change; the number of verdicts or kbps that changed."""
        judged = ReclassifyPass(classify, observe)
        with self._lock, _mapped_errors(self.url):
            row = _first(self._con.execute("SELECT max(seq) FROM measurements").fetchall())
        before = int(row[0]) if row and row[0] is not None else 0  # rows stored before the pass began
        last = ""
        while True:
            with self._lock, _mapped_errors(self.url):
                chunk = self._con.execute(
                    "SELECT uid, raw, verdict, kbps, verdict_rule, rules_version FROM measurements "
                    "WHERE uid > ? ORDER BY uid LIMIT ?",
                    [last, batch_size],
                ).fetchall()
            if not chunk:
                break
            last = chunk[-1][0]
            updates = []
            for uid, raw, *stored in chunk:
                new = judged.judge(uid, stored, self._codec.decompress(raw))
                if new is not None:
                    updates.append((uid, new))
            if updates:
                tbl = pa.table({
                    "uid": [u for u, _ in updates],
                    "verdict": [n.verdict for _, n in updates],
                    "kbps": pa.array([n.kbps for _, n in updates], pa.float64()),
                    "verdict_rule": pa.array([n.rule for _, n in updates], pa.string()),
                    "rules_version": pa.array([n.rules_version for _, n in updates], pa.string()),
                })
                with self._lock, _mapped_errors(self.url):
                    self._con.register("_upd", tbl)
                    try:
                        self._con.execute(
                            "UPDATE measurements SET verdict = u.verdict, kbps = u.kbps, "
                            "verdict_rule = u.verdict_rule, rules_version = u.rules_version FROM _upd u "
                            "WHERE measurements.uid = u.uid"
                        )
                    finally:
                        self._con.unregister("_upd")
        if judged.restamps:
            version = judged.stamp_version
            with self._lock, _mapped_errors(self.url):
                self._con.execute("UPDATE measurements SET rules_version = ? "
                                  "WHERE seq <= ? AND rules_version IS DISTINCT FROM ?", [version, before, version])
        if judged.changed:
            self._rebuild_rollup()
        return judged.changed

    def verdicts(self, uids: Sequence[str]) -> dict[str, StoredVerdict]:
        """The stored judgment of each of these uids that is stored (rule and version None in a store that
        predates them)."""
        if not uids:
            return {}
        extra = "verdict_rule, rules_version" if self._has_provenance_columns() else "NULL, NULL"
        with self._lock, _mapped_errors(self.url):
            rows = self._con.execute(f"SELECT uid, verdict, kbps, {extra} FROM measurements "
                                     "WHERE uid IN (SELECT unnest(?))", [list(uids)]).fetchall()
        return {r[0]: StoredVerdict(*r[1:]) for r in rows}

    def _has_provenance_columns(self) -> bool:
        """Whether migration 8 ran (a store opened read-only may predate it)."""
        with self._lock:
            try:
                return self.schema_version() >= PROVENANCE_VERSION
            except duckdb.Error:
                return False

    def _rebuild_rollup(self) -> None:
        """The rollups again from every stored row, after verdicts were rewritten in place: folding only ever
        adds what is new, so the counts folded from the old verdicts would stay. Nothing to do for a store
        whose rollup was never built."""
        with self._lock, _mapped_errors(self.url):
            if not int(self.get_state(ROLLUP_SEQ_KEY) or 0):
                return
            con = self._con
            con.execute("BEGIN TRANSACTION")
            try:
                for table, _ in ROLLUP_TABLES:
                    con.execute(f"DELETE FROM {table}")
                con.execute("INSERT OR REPLACE INTO state VALUES (?, ?)", [ROLLUP_SEQ_KEY, "0"])
                con.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(duckdb.Error):
                    con.execute("ROLLBACK")
                raise
            self.refresh_rollup()

    # --- series -----------------------------------------------------------------------------------------

    def series(
        self, *, since: datetime, until: datetime, bucket_seconds: int, countries: Sequence[str] | None = None
    ) -> list[SeriesCell]:
        tech_cols = ", ".join(f"count(*) FILTER (WHERE verdict = '{t}') AS \"{t}\"" for t in _TECHNIQUE_LIST)
        tech_sums = ", ".join(f"sum(\"{t}\")::BIGINT" for t in _TECHNIQUE_LIST)
        tech_in = ", ".join(f"'{t}'" for t in _TECHNIQUE_LIST)
        params: list[Any] = [_naive(since), _naive(until)]
        cc_clause = ""
        if countries:
            cc_clause = " AND list_contains(?, cc)"
            params.append([c.upper() for c in countries])
        # two levels, as in network_series: per probe first (its verdicts, throughputs and techniques), then per
        # cell; the same cells as count(DISTINCT probe_key) over the measurements, several times faster
        q = f"""
            WITH per_probe AS (
                SELECT (epoch(t)::BIGINT // {bucket_seconds}) * {bucket_seconds} AS b, cc, asn,
                       coalesce(region, '') AS region, platform, probe_key,
                       count(*) AS n,
                       count(*) FILTER (WHERE verdict = 'ok') AS ok,
                       count(*) FILTER (WHERE verdict = 'down') AS dn,
                       count(*) FILTER (WHERE verdict IN ({tech_in})) AS bad,
                       list(kbps) FILTER (WHERE kbps IS NOT NULL) AS ks,
                       string_agg(translate(test_name, ',:=' || chr(31), '____') || ':' || kbps::VARCHAR, ',')
                           FILTER (WHERE kbps IS NOT NULL) AS tks,
                       any_value(network) AS network,
                       list(DISTINCT verdict) FILTER (WHERE verdict IN ({tech_in})) AS vs,
                       {tech_cols}
                FROM measurements
                WHERE t >= ? AND t < ? AND platform IS NOT NULL{cc_clause}
                GROUP BY ALL
            )
            SELECT b, cc, asn, region, platform, sum(n)::BIGINT, sum(ok)::BIGINT, sum(dn)::BIGINT,
                   sum(bad)::BIGINT, count(probe_key), count(probe_key) FILTER (WHERE bad > 0),
                   list_median(flatten(list(ks))), any_value(network), count(probe_key) FILTER (WHERE dn > 0),
                   flatten(list(list_transform(vs, lambda v: v || ' ' || probe_key)) FILTER (WHERE bad > 0)),
                   {tech_sums},
                   string_agg(replace(probe_key, chr(31), ' ') || '=' || tks, chr(31))
                       FILTER (WHERE len(ks) > 0 AND platform != 'control')
            FROM per_probe
            GROUP BY ALL
            ORDER BY b, cc, asn, region, platform
        """
        with self._lock, _mapped_errors(self.url):
            rows = self._con.execute(q, params).fetchall()
        buckets: dict[int, datetime] = {}
        return [_cell(r, buckets) for r in rows]

    def network_series(
        self, *, since: datetime, until: datetime, bucket_seconds: int, countries: Sequence[str] | None = None
    ) -> list[SeriesCell]:
        """Coarse cells per (bucket, country, network, platform), no regions or probe keys: the detector's
        cheap first pass over everything, to pick the networks worth a fine look."""
        tech_in = ", ".join(f"'{t}'" for t in _TECHNIQUE_LIST)
        params: list[Any] = [_naive(since), _naive(until)]
        cc_clause = ""
        if countries:
            cc_clause = " AND list_contains(?, cc)"
            params.append([c.upper() for c in countries])
        # two levels: per probe first, then per cell. Counting probes per cell from the per-probe rows is several
        # times faster than count(DISTINCT ...) FILTER over the measurements, with the same result.
        q = f"""
            WITH per_probe AS (
                SELECT (epoch(t)::BIGINT // {bucket_seconds}) * {bucket_seconds} AS b, cc, asn, platform, probe_key,
                       count(*) AS n, count(*) FILTER (WHERE verdict = 'ok') AS ok,
                       count(*) FILTER (WHERE verdict = 'down') AS dn,
                       count(*) FILTER (WHERE verdict IN ({tech_in})) AS bad,
                       list(kbps) FILTER (WHERE kbps IS NOT NULL) AS ks
                FROM measurements
                WHERE t >= ? AND t < ? AND platform IS NOT NULL{cc_clause}
                GROUP BY ALL
            )
            SELECT b, cc, asn, platform, sum(n)::BIGINT, sum(ok)::BIGINT, sum(dn)::BIGINT, sum(bad)::BIGINT,
                   count(probe_key), count(probe_key) FILTER (WHERE bad > 0), count(probe_key) FILTER (WHERE dn > 0),
                   list_median(flatten(list(ks)))
            FROM per_probe
            GROUP BY ALL
        """
        with self._lock, _mapped_errors(self.url):
            rows = self._con.execute(q, params).fetchall()
        buckets: dict[int, datetime] = {}
        out = []
        for b, cc, asn, platform, total, ok, down, bad, probes, bad_probes, down_probes, kbps in rows:
            bucket = buckets.get(b)
            if bucket is None:
                bucket = buckets[b] = datetime.fromtimestamp(b, UTC)
            out.append(SeriesCell(bucket=bucket, country=cc, asn=asn, region=None, platform=platform, total=total,
                                  ok=ok, down=down, anomalous=bad, probes=probes, anomalous_probes=bad_probes,
                                  down_probes=down_probes, median_kbps=kbps))
        return out

    def failing_probes(
        self, *, since: datetime, until: datetime, bucket_seconds: int, countries: Sequence[str] | None = None
    ) -> list[FailingProbe]:
        """Per probe and bucket in which its control failed: each target's measurements and failures."""
        tech_in = ", ".join(f"'{t}'" for t in _TECHNIQUE_LIST)
        params: list[Any] = [_naive(since), _naive(until)]
        cc_clause = ""
        if countries:
            cc_clause = " AND list_contains(?, cc)"
            params.append([c.upper() for c in countries])
        params = params + params
        q = f"""
            WITH lost AS (
                SELECT DISTINCT (epoch(t)::BIGINT // {bucket_seconds}) * {bucket_seconds} AS b, cc, asn, probe_key
                FROM measurements
                WHERE t >= ? AND t < ? AND platform = 'control' AND verdict IN ({tech_in})
                      AND probe_key IS NOT NULL{cc_clause}
            )
            SELECT m.b, m.cc, m.asn, coalesce(m.region, '') AS region, m.probe_key, m.platform, count(*),
                   count(*) FILTER (WHERE m.verdict IN ({tech_in}))
            FROM (SELECT (epoch(t)::BIGINT // {bucket_seconds}) * {bucket_seconds} AS b, cc, asn, region, probe_key,
                         platform, verdict
                  FROM measurements WHERE t >= ? AND t < ? AND platform IS NOT NULL{cc_clause}) m
            SEMI JOIN lost USING (b, cc, asn, probe_key)
            GROUP BY ALL
            ORDER BY ALL
        """
        with self._lock, _mapped_errors(self.url):
            rows = self._con.execute(q, params).fetchall()
        stamps = {b: datetime.fromtimestamp(b, UTC) for b in {r[0] for r in rows}}
        return [FailingProbe(bucket=stamps[b], country=cc, asn=asn, region=region, probe=probe,
                             platform=platform, total=total, anomalous=bad)
                for b, cc, asn, region, probe, platform, total, bad in rows]

    def technique_probes(
        self, *, since: datetime, until: datetime, bucket_seconds: int, countries: Sequence[str] | None = None
    ) -> list[TechniqueProbes]:
        """Distinct probes per anomaly technique, per bucket, network and target (anomalous measurements only)."""
        tech_in = ", ".join(f"'{t}'" for t in _TECHNIQUE_LIST)
        params: list[Any] = [_naive(since), _naive(until)]
        cc_clause = ""
        if countries:
            cc_clause = " AND list_contains(?, cc)"
            params.append([c.upper() for c in countries])
        q = f"""
            SELECT (epoch(t)::BIGINT // {bucket_seconds}) * {bucket_seconds} AS b, cc, asn, platform, verdict,
                   count(DISTINCT probe_key)
            FROM measurements
            WHERE t >= ? AND t < ? AND platform IS NOT NULL AND verdict IN ({tech_in}){cc_clause}
            GROUP BY ALL
            ORDER BY ALL
        """
        with self._lock, _mapped_errors(self.url):
            rows = self._con.execute(q, params).fetchall()
        stamps = {b: datetime.fromtimestamp(b, UTC) for b in {r[0] for r in rows}}
        return [TechniqueProbes(bucket=stamps[b], country=cc, asn=asn, platform=platform,
                                technique=technique, probes=n) for b, cc, asn, platform, technique, n in rows]

    def down_counts(
        self, *, since: datetime, until: datetime, bucket_seconds: int, series: Sequence[tuple[str, int, str]]
    ) -> list[tuple[datetime, str, int, str, int, int]]:
        """(bucket, country, network, platform, probes, probes that saw it down) for a few series and a time."""
        if not series:
            return []
        keys = sorted({f"{cc.upper()}:{asn}:{platform}" for cc, asn, platform in series})
        q = f"""
            SELECT (epoch(t)::BIGINT // {bucket_seconds}) * {bucket_seconds} AS b, cc, asn, platform,
                   count(DISTINCT probe_key), count(DISTINCT probe_key) FILTER (WHERE verdict = 'down')
            FROM measurements
            WHERE t >= ? AND t < ? AND platform IS NOT NULL AND list_contains(?, cc || ':' || asn || ':' || platform)
            GROUP BY ALL
            ORDER BY ALL
        """
        with self._lock, _mapped_errors(self.url):
            rows = self._con.execute(q, [_naive(since), _naive(until), keys]).fetchall()
        return [(datetime.fromtimestamp(b, UTC), cc, asn, platform, n, d) for b, cc, asn, platform, n, d in rows]

    def changes_since(self, seq: int) -> Changes:
        with self._lock, _mapped_errors(self.url):
            rows = self._con.execute(
                "SELECT cc, min(t), max(t), max(seq) FROM measurements WHERE seq > ? GROUP BY cc", [seq]
            ).fetchall()
            top = _first(self._con.execute("SELECT coalesce(max(seq), 0) FROM measurements").fetchall())
        now = datetime.now(UTC)
        # a time a client made up (year 1, 9999) stored before the checks must not reach detection's arithmetic
        return Changes(
            max_seq=int(top[0]) if top else 0,
            spans={cc: (sane_time(lo.replace(tzinfo=UTC), now), sane_time(hi.replace(tzinfo=UTC), now))
                   for cc, lo, hi, _ in rows},
        )

    def countries(self) -> list[str]:
        with self._lock, _mapped_errors(self.url):
            return [r[0] for r in self._con.execute("SELECT DISTINCT cc FROM measurements ORDER BY cc").fetchall()]

    def example_uids(
        self, *, country: str | None, since: datetime, until: datetime, asns: Sequence[int] = (),
        platforms: Sequence[str] = (), verdicts: Sequence[str] = (), limit: int = 5,
    ) -> list[str]:
        """A few measurement ids that show an incident (its evidence), earliest first."""
        clauses = ["t >= ?", "t < ?"]
        params: list[Any] = [_naive(since), _naive(until)]
        for column, values in (("asn", list(asns)), ("platform", list(platforms)), ("verdict", list(verdicts))):
            if values:
                clauses.append(f"list_contains(?, {column})")
                params.append(values)
        if country:
            clauses.append("cc = ?")
            params.append(country.upper())
        q = f"SELECT uid FROM measurements WHERE {' AND '.join(clauses)} ORDER BY t, uid LIMIT ?"
        with self._lock, _mapped_errors(self.url):
            return [r[0] for r in self._con.execute(q, [*params, limit]).fetchall()]

    # --- the dashboard's rollup (additive counts, so late measurements simply add to their bucket) ----------

    def refresh_rollup(self) -> int:
        """Folds measurements stored since the last call into the rollups; returns how many were folded."""
        tech_in = ", ".join(f"'{t}'" for t in _TECHNIQUE_LIST)
        with self._lock, _mapped_errors(self.url):
            con = self._con
            done = int(self.get_state(ROLLUP_SEQ_KEY) or 0)
            # seq grows with each insert and rows are stored in its order: the condition skips the row groups
            # folded already, where max(seq) over the whole table would read them all
            top_row = con.execute("SELECT max(seq) FROM measurements WHERE seq > ?", [done]).fetchall()
            top = int(top_row[0][0]) if top_row and top_row[0][0] is not None else done
            if top <= done:
                return 0
            con.execute("BEGIN TRANSACTION")
            try:
                # the new rows' 5-minute counts once; the hourly rollup is summed from them
                con.execute(
                    f"""CREATE OR REPLACE TEMP TABLE _fold AS
                        SELECT time_bucket(INTERVAL {ROLLUP_BUCKET_SECONDS} SECONDS, t) AS b, cc, asn, platform,
                               any_value(network) AS network, count(*) AS total,
                               count(*) FILTER (WHERE verdict = 'ok') AS ok,
                               count(*) FILTER (WHERE verdict = 'down') AS down,
                               count(*) FILTER (WHERE verdict IN ({tech_in})) AS anomalous
                        FROM measurements
                        WHERE seq > ? AND seq <= ? AND platform IS NOT NULL
                        GROUP BY ALL""",
                    [done, top],
                )
                for table, seconds in ROLLUP_TABLES:
                    con.execute(
                        f"""INSERT INTO {table}
                            SELECT time_bucket(INTERVAL {seconds} SECONDS, b) AS bb, cc, asn, platform,
                                   any_value(network), sum(total), sum(ok), sum(down), sum(anomalous)
                            FROM _fold GROUP BY ALL
                            -- stored in time order, so a window's read skips the row groups of other weeks
                            ORDER BY bb, cc
                            ON CONFLICT (b, cc, asn, platform) DO UPDATE SET
                                network = coalesce(excluded.network, {table}.network),
                                total = {table}.total + excluded.total,
                                ok = {table}.ok + excluded.ok,
                                down = {table}.down + excluded.down,
                                anomalous = {table}.anomalous + excluded.anomalous"""
                    )
                con.execute("DROP TABLE _fold")
                con.execute("INSERT OR REPLACE INTO state VALUES (?, ?)", [ROLLUP_SEQ_KEY, str(top)])
                con.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(duckdb.Error):
                    con.execute("ROLLBACK")
                raise
            return top - done

    def rollup(
        self, *, since: datetime, until: datetime, bucket_seconds: int, country: str | None = None,
        asn: int | None = None, platform: str | None = None,
    ) -> list[SeriesCell]:
        """Counts per (bucket, country, network, platform) from the rollup; bucket_seconds a multiple of 300."""
        bucket_seconds = max(ROLLUP_BUCKET_SECONDS, bucket_seconds - bucket_seconds % ROLLUP_BUCKET_SECONDS)
        clauses: list[str] = []
        params: list[Any] = []
        if country:
            cc = country.upper()
            if len(cc) == 2 and cc.isascii() and cc.isalpha():  # a literal (checked: two letters)
                clauses.append(f"cc = '{cc}'")
            else:
                clauses.append("cc = ?")
                params.append(cc)
        if asn is not None:
            clauses.append(f"asn = {int(asn)}")
        if platform:
            clauses.append("platform = ?")
            params.append(platform)
        where = "".join(f" AND {c}" for c in clauses)
        grouped = (f"(epoch(b)::BIGINT // {bucket_seconds}) * {bucket_seconds} AS bb, cc, asn, platform, "
                   "any_value(network), sum(total), sum(ok), sum(down), sum(anomalous)")
        parts = []
        for table, seconds, ranges in _rollup_reads(_naive(since), _naive(until), bucket_seconds):
            # One SELECT a range: DuckDB prunes row groups by a plain range of literals (formatted from
            # datetimes, so nothing to inject), not by parameters nor an OR of ranges. Rows already of the
            # bucket asked for are read as they are: the GROUP BY costs more than the read.
            for a, z in ranges:
                span = f"b >= TIMESTAMP '{_literal(a)}' AND b < TIMESTAMP '{_literal(z)}'{where}"
                parts.append(f"SELECT epoch(b)::BIGINT, cc, asn, platform, network, total, ok, down, anomalous "
                             f"FROM {table} WHERE {span}" if seconds == bucket_seconds else
                             f"SELECT {grouped} FROM {table} WHERE {span} GROUP BY bb, cc, asn, platform")
        q = " UNION ALL ".join(parts)
        if len(parts) > 1 and bucket_seconds != HOUR_SECONDS:  # an output bucket may then draw on several parts
            q = f"""SELECT bb, cc, asn, platform, any_value(network), sum(total), sum(ok), sum(down), sum(anomalous)
                    FROM ({q}) AS p(bb, cc, asn, platform, network, total, ok, down, anomalous)
                    GROUP BY ALL"""
        q += " ORDER BY 1, 2, 3, 4"
        params = params * len(parts)
        with self._lock, _mapped_errors(self.url):
            rows = self._con.execute(q, params).fetchall()
        return [
            SeriesCell(bucket=datetime.fromtimestamp(int(r[0]), UTC), country=r[1], asn=int(r[2]), region=None,
                       platform=r[3], network_name=r[4] or "", total=int(r[5]), ok=int(r[6]), down=int(r[7]),
                       anomalous=int(r[8]))
            for r in rows
        ]

    def latest_time(self) -> datetime | None:
        """The time of the newest measurement stored (the data's "now" when replaying the past)."""
        # Measurements are only ever added, in seq order: the newest time is the one known so far or that of a
        # row stored since, and the seq condition skips the row groups read before (10 M rows: ~10 ms -> <1 ms)
        with self._lock, _mapped_errors(self.url):
            seen, newest = self._latest
            row = _first(self._con.execute("SELECT max(seq), max(t) FROM measurements WHERE seq > ?",
                                           [seen]).fetchall())
            if row and row[0] is not None:
                newest = row[1] if newest is None else max(newest, row[1])
                self._latest = (int(row[0]), newest)
        # a stored 2099 must not become the dashboard's "now"
        return sane_time(newest.replace(tzinfo=UTC), datetime.now(UTC)) if newest is not None else None

    # --- incidents --------------------------------------------------------------------------------------

    def save_incidents(self, incidents: Sequence[Incident]) -> None:
        if not incidents:
            return
        with self._lock, _mapped_errors(self.url):
            con = self._con
            con.execute("BEGIN TRANSACTION")
            try:
                for inc in incidents:
                    con.execute("DELETE FROM incidents WHERE id = ?", [inc.id])
                    con.execute(
                        "INSERT INTO incidents VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        [inc.id, inc.country, inc.kind, inc.status, _naive(inc.start),
                         _naive(inc.end) if inc.end else None, list(inc.platforms),
                         json.dumps(inc.to_json(), separators=(",", ":"))],
                    )
                con.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(duckdb.Error):
                    con.execute("ROLLBACK")
                raise

    def delete_incidents(self, ids: Sequence[str]) -> int:
        """Removes incidents a re-run of detection no longer finds (the detector's own; never reviewed ones)."""
        if not ids:
            return 0
        with self._lock, _mapped_errors(self.url):
            rows = self._con.execute("DELETE FROM incidents WHERE list_contains(?, id) RETURNING id",
                                     [list(ids)]).fetchall()
        return len(rows)

    def incidents(self, flt: IncidentFilter) -> list[Incident]:
        where, params = _where_clause([
            ("country = ?", flt.country.upper() if flt.country else None),
            ("list_contains(platforms, ?)", flt.platform or None),
            ("kind = ?", flt.kind or None),
            ("status = ?", flt.status or None),
            ("(end_t IS NULL OR end_t >= ?)", _naive(flt.since) if flt.since else None),
            ("start_t < ?", _naive(flt.until) if flt.until else None),
        ])
        with self._lock, _mapped_errors(self.url):
            rows = self._con.execute(
                f"SELECT doc FROM incidents{where} ORDER BY start_t DESC, id LIMIT ? OFFSET ?",
                [*params, flt.limit, flt.offset],
            ).fetchall()
        return [Incident.from_json(json.loads(r[0])) for r in rows]

    def incident(self, incident_id: str) -> Incident | None:
        with self._lock, _mapped_errors(self.url):
            row = _first(self._con.execute("SELECT doc FROM incidents WHERE id = ?", [incident_id]).fetchall())
        return Incident.from_json(json.loads(row[0])) if row else None

    # --- context events ---------------------------------------------------------------------------------

    def add_event(self, event: ContextEvent) -> None:
        with self._lock, _mapped_errors(self.url):
            self._con.execute(
                "INSERT OR REPLACE INTO context_events VALUES (?, ?, ?, ?, ?)",
                [event.id, event.country, _naive(event.time), event.title, event.url],
            )

    def events(self, *, country: str | None = None, since: datetime | None = None,
               until: datetime | None = None) -> list[ContextEvent]:
        clauses: list[str] = []
        params: list[object] = []
        if country:
            clauses.append("country = ?")
            params.append(country.upper())
        if since:
            clauses.append("t >= ?")
            params.append(_naive(since))
        if until:
            clauses.append("t < ?")
            params.append(_naive(until))
        where = (" WHERE " + " AND ".join(clauses)) if clauses else ""
        with self._lock, _mapped_errors(self.url):
            rows = self._con.execute(f"SELECT id, country, t, title, url FROM context_events{where} ORDER BY t",
                                     params).fetchall()
        return [ContextEvent(id=r[0], country=r[1], time=r[2].replace(tzinfo=UTC), title=r[3], url=r[4])
                for r in rows]

    # --- probe credentials ------------------------------------------------------------------------------

    def add_probe(self, cred: ProbeCredential) -> None:
        with self._lock, _mapped_errors(self.url):
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
        with self._lock, _mapped_errors(self.url):
            row = _first(self._con.execute(
                f"SELECT {self._cred_columns()} FROM probe_credentials WHERE token_hash = ?",
                [token_hash],
            ).fetchall())
        return _cred(row) if row else None

    def probes(self) -> list[ProbeCredential]:
        with self._lock, _mapped_errors(self.url):
            rows = self._con.execute(
                f"SELECT {self._cred_columns()} FROM probe_credentials ORDER BY name"
            ).fetchall()
        return [_cred(r) for r in rows]

    def revoke_probe(self, name: str) -> bool:
        with self._lock, _mapped_errors(self.url):
            row = _first(self._con.execute(
                "UPDATE probe_credentials SET revoked = true WHERE name = ? RETURNING name", [name]
            ).fetchall())
        return row is not None

    def _has_witness_columns(self) -> bool:
        """Whether migration 7 ran (a store opened read-only may predate it)."""
        known = self._witness_columns
        if known is None:
            with self._lock:
                try:
                    known = self.schema_version() >= WITNESS_VERSION
                except duckdb.Error:
                    known = False
            self._witness_columns = known
        return known

    def _cred_columns(self) -> str:
        extra = "country, asns, relay" if self._has_witness_columns() else "NULL, NULL, false"
        return f"name, token_hash, secret, created, revoked, {extra}"

    def uid_credentials(self, uids: Sequence[str]) -> dict[str, str | None]:
        """The credential that brought each of these uids, for those stored (None: stored before issue #22)."""
        if not uids or not self._has_witness_columns():
            return {}
        with self._lock, _mapped_errors(self.url):
            rows = self._con.execute("SELECT uid, credential FROM measurements WHERE uid IN (SELECT unnest(?))",
                                     [list(uids)]).fetchall()
        return {r[0]: r[1] for r in rows}

    def purge_credential(self, credential: str) -> dict[str, tuple[datetime, datetime]]:
        """Deletes every measurement `credential` brought, in one transaction; the countries and time spans it
        covered. The rollups are rebuilt (they only ever add)."""
        if not self._has_witness_columns():
            return {}
        with self._lock, _mapped_errors(self.url):
            con = self._con
            con.execute("BEGIN TRANSACTION")
            try:
                rows = con.execute("SELECT cc, min(t), max(t) FROM measurements WHERE credential = ? GROUP BY cc",
                                   [credential]).fetchall()
                con.execute("DELETE FROM measurements WHERE credential = ?", [credential])
                if credential.startswith("probe:"):  # its heartbeats feed detection too
                    con.execute("DELETE FROM probe_heartbeats WHERE probe = ?", [credential[len("probe:"):]])
                con.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(duckdb.Error):
                    con.execute("ROLLBACK")
                raise
            self._latest = (0, None)
            if rows:
                self._rebuild_rollup()
        now = datetime.now(UTC)
        return {cc: (sane_time(lo.replace(tzinfo=UTC), now), sane_time(hi.replace(tzinfo=UTC), now))
                for cc, lo, hi in rows}

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
        with self._lock, _mapped_errors(self.url):
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
        params: list[Any] = [_naive(since), _naive(until)]
        cc_clause = ""
        if countries:
            cc_clause = " AND list_contains(?, cc)"
            params.append([c.upper() for c in countries])
        with self._lock, _mapped_errors(self.url):
            rows = self._con.execute(
                "SELECT t, cc, region, asn, signal, source, value FROM signals WHERE t >= ? AND t < ?"
                f"{cc_clause} ORDER BY source, signal, cc, region, asn, t", params).fetchall()
        return [SignalPoint(time=r[0].replace(tzinfo=UTC), country=r[1], region=r[2] or None, asn=r[3] or None,
                            signal=r[4], source=r[5], value=float(r[6])) for r in rows]

    def signal_series(self) -> list[SignalSeries]:
        """Every stored signal series with its span and number of points."""
        with self._lock, _mapped_errors(self.url):
            rows = self._con.execute(
                "SELECT source, signal, cc, region, asn, min(t), max(t), count(*) FROM signals "
                "GROUP BY ALL ORDER BY cc, source, signal, region, asn").fetchall()
        return [SignalSeries(source=r[0], signal=r[1], country=r[2], region=r[3] or None, asn=r[4] or None,
                             first=r[5].replace(tzinfo=UTC), last=r[6].replace(tzinfo=UTC), points=int(r[7]))
                for r in rows]

    def signals_version(self) -> str:
        """Changes whenever a signal or a heartbeat arrives: 'count|newest time' (detection's cue)."""
        with self._lock, _mapped_errors(self.url):
            row = _first(self._con.execute(
                "SELECT (SELECT count(*) FROM signals) + (SELECT count(*) FROM probe_heartbeats), "
                "greatest((SELECT max(t) FROM signals), (SELECT max(t) FROM probe_heartbeats))").fetchall())
        n, newest = (row or (0, None))
        return f"{n}|{(newest or datetime(1970, 1, 1)).replace(tzinfo=UTC).isoformat()}"

    def record_heartbeat(self, *, probe: str, time: datetime, country: str, asn: int, region: str | None) -> None:
        with self._lock, _mapped_errors(self.url):
            self._con.execute("INSERT OR IGNORE INTO probe_heartbeats VALUES (?, ?, ?, ?, ?)",
                              [probe, _naive(time), country, asn, region or ""])

    def heartbeats(self, *, since: datetime, until: datetime) -> list[tuple[str, datetime, str, int, str | None]]:
        with self._lock, _mapped_errors(self.url):
            rows = self._con.execute(
                "SELECT probe, t, cc, asn, region FROM probe_heartbeats WHERE t >= ? AND t < ? ORDER BY t",
                [_naive(since), _naive(until)]).fetchall()
        return [(r[0], r[1].replace(tzinfo=UTC), r[2], int(r[3]), r[4] or None) for r in rows]

    def add_user_report(self, report: UserReport) -> None:
        with self._lock, _mapped_errors(self.url):
            self._con.execute("INSERT INTO user_reports VALUES (?, ?, ?, ?, ?, ?)",
                              [_naive(report.time), report.country, report.region, report.network,
                               report.platform, report.text])

    def user_report_counts(self, *, country: str | None, since: datetime, until: datetime
                           ) -> list[tuple[str, str, str, int]]:
        """(country, region, platform, count), most reported first."""
        params: list[Any] = [_naive(since), _naive(until)]
        clause = ""
        if country:
            clause = " AND cc = ?"
            params.append(country.upper())
        with self._lock, _mapped_errors(self.url):
            rows = self._con.execute(
                "SELECT cc, region, platform, count(*) AS n FROM user_reports WHERE t >= ? AND t < ?"
                f"{clause} GROUP BY ALL ORDER BY n DESC, cc, region, platform", params).fetchall()
        return [(r[0], r[1], r[2], int(r[3])) for r in rows]

    # --- small state ------------------------------------------------------------------------------------

    def get_state(self, key: str) -> str | None:
        with self._lock, _mapped_errors(self.url):
            row = _first(self._con.execute("SELECT value FROM state WHERE key = ?", [key]).fetchall())
        return row[0] if row else None

    def set_state(self, key: str, value: str) -> None:
        with self._lock, _mapped_errors(self.url):
            self._con.execute("INSERT OR REPLACE INTO state VALUES (?, ?)", [key, value])


def _sql_literal(text: str) -> str:
    return str(text).replace("'", "''")


_ZSTD_LEVEL = 3
_DICT_MIN_SAMPLES = 1000  # documents a batch needs to train the store's dictionary from
_DICT_SAMPLES = 1000  # ~100x the dictionary's size in documents of a few KB: enough, and trained in ~0.3 s
_DICT_BYTES = 64 << 10


def _train_dictionary(docs: Sequence[bytes]) -> zstandard.ZstdCompressionDict | None:
    step = max(1, len(docs) // _DICT_SAMPLES)
    try:
        samples: list[bytes | bytearray | memoryview] = list(docs[::step][:_DICT_SAMPLES])
        return zstandard.train_dictionary(_DICT_BYTES, samples, level=_ZSTD_LEVEL)
    except zstandard.ZstdError:  # too few or too alike samples: documents are compressed without one
        return None


class _Codec:
    """zstd for the raw documents: the newest dictionary for writing, any stored one (or none) for reading.

    zstd contexts are not for concurrent use, so each thread keeps its own."""

    def __init__(self, dictionaries: list[bytes]) -> None:
        self._dicts: dict[int, zstandard.ZstdCompressionDict] = {}
        self._current = 0
        self._encoder: _ZstdEncoder | None = None
        self._local = threading.local()
        for d in dictionaries:
            self.add(d)

    @property
    def has_dictionary(self) -> bool:
        return self._current != 0

    def add(self, data: bytes) -> None:
        d = zstandard.ZstdCompressionDict(data)
        self._dicts[d.dict_id()] = d
        self._current = d.dict_id()
        self._encoder = _ZstdEncoder(data)

    def encoder(self) -> _ZstdEncoder | None:
        return self._encoder

    def _contexts(self) -> Any:
        local = self._local
        if getattr(local, "current", None) != self._current:
            d = self._dicts.get(self._current)
            local.current = self._current
            local.compressor = zstandard.ZstdCompressor(level=_ZSTD_LEVEL, dict_data=d) if d else \
                zstandard.ZstdCompressor(level=_ZSTD_LEVEL)
            local.decompressors = getattr(local, "decompressors", {})
        return local

    def compress(self, docs: list[bytes]) -> list[bytes]:
        compress = self._contexts().compressor.compress
        return [compress(d) for d in docs]

    def decompress(self, raw: bytes) -> bytes:
        dict_id = zstandard.get_frame_parameters(raw).dict_id
        local = self._contexts()
        dctx = local.decompressors.get(dict_id)
        if dctx is None:
            if dict_id and dict_id not in self._dicts:
                raise StoreError(f"a stored document needs zstd dictionary {dict_id}, which the store lacks")
            dctx = local.decompressors[dict_id] = zstandard.ZstdDecompressor(
                dict_data=self._dicts[dict_id]) if dict_id else zstandard.ZstdDecompressor()
        return dctx.decompress(raw)


class _ZstdEncoder:
    """Compresses documents as the store does with its current dictionary, in whatever process calls it: it
    pickles as the dictionary's bytes, and each thread of each process builds its own compressor once."""

    _local = threading.local()

    def __init__(self, dictionary: bytes) -> None:
        self.dictionary = dictionary
        self.dict_id = zstandard.ZstdCompressionDict(dictionary).dict_id()

    def __reduce__(self) -> tuple[type[_ZstdEncoder], tuple[bytes]]:
        return _ZstdEncoder, (self.dictionary,)

    def __call__(self, docs: list[bytes]) -> list[bytes]:
        local = _ZstdEncoder._local
        cctx = getattr(local, "compressors", {}).get(self.dict_id)
        if cctx is None:
            local.compressors = getattr(local, "compressors", {})
            cctx = local.compressors[self.dict_id] = zstandard.ZstdCompressor(
                level=_ZSTD_LEVEL, dict_data=zstandard.ZstdCompressionDict(self.dictionary))
        compress = cctx.compress
        return [compress(d) for d in docs]


def _cred(row: Sequence[Any]) -> ProbeCredential:
    return ProbeCredential(name=row[0], token_hash=row[1], secret=row[2], created=row[3].replace(tzinfo=UTC),
                           revoked=bool(row[4]), country=row[5] or None,
                           asns=tuple(int(a) for a in row[6] or ()), relay=bool(row[7]))


def _probe_kbps(text: str) -> tuple[tuple[str, str, float], ...]:
    """"probe=test:kbps,test:kbps" items joined by the unit separator -> (probe, test, median kbps), sorted."""
    by: dict[tuple[str, str], list[float]] = {}
    for item in text.split("\x1f"):
        key, _, values = item.rpartition("=")
        for pair in values.split(","):
            test, _, value = pair.rpartition(":")
            by.setdefault((key, test), []).append(float(value))
    return tuple(sorted((k, t, vs[0] if len(vs) == 1 else float(statistics.median(vs))) for (k, t), vs in by.items()))


def _cell(r: Sequence[Any], buckets: dict[int, datetime] | None = None) -> SeriesCell:
    end = 15 + len(_TECHNIQUE_LIST)
    techniques = {t: int(n) for t, n in zip(_TECHNIQUE_LIST, r[15:end], strict=True) if n}
    keys = sorted(k for k in (r[14] or ()) if k is not None)
    # each probe's median kbps per test, after the technique counts: the column added for throttling, as text
    # (a third of the cost of a list of structs; a double's text round-trips exactly; the control's speed is
    # not tested, so its cells leave it empty)
    probe_kbps = _probe_kbps(r[end]) if len(r) > end and r[end] else ()
    b = int(r[0])
    bucket = buckets.get(b) if buckets is not None else None
    if bucket is None:
        bucket = datetime.fromtimestamp(b, UTC)
        if buckets is not None:
            buckets[b] = bucket
    return SeriesCell(
        bucket=bucket,
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
        median_kbps=float(r[11]) if r[11] is not None else None,
        network_name=r[12] or "",
        down_probes=int(r[13]),
        technique_keys=tuple(keys),
        anomalous_keys=tuple(sorted({k.split(" ", 1)[1] for k in keys})),
        by_technique=techniques,
        probe_kbps=probe_kbps,
    )


_CSV_TEXT_COLUMNS = ("uid", "network", "region", "test_name", "test_version", "software", "source", "input",
                     "platform", "verdict")


def _csv_safe_columns(cols: str) -> str:
    """The export's columns with each text column's formula-like cells neutralised (observatory.encoding.csv_cell,
    in SQL): a network name or input of '=HYPERLINK(...)' is shown as text by a spreadsheet."""
    from observatory.encoding import CSV_FORMULA_STARTS

    starts = ", ".join(f"chr({ord(c)})" for c in CSV_FORMULA_STARTS)
    out = []
    for col in (c.strip() for c in cols.split(",")):
        if col in _CSV_TEXT_COLUMNS:
            col = f"CASE WHEN left({col}, 1) IN ({starts}) THEN '''' || {col} ELSE {col} END AS {col}"
        out.append(col)
    return ", ".join(out)
