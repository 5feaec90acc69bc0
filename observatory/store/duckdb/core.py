"""The DuckDB store's connection: opening the file (waiting while another process has it), sharing it
with other processes between operations, migrations, errors, and the helpers every resource module uses."""

from __future__ import annotations

import contextlib
import errno
import os
import threading
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from observatory.errors import StoreError, StoreFullError, StoreReadOnlyError
from observatory.store.base import StoreSettings
from observatory.store.duckdb.codec import _DICT_MIN_SAMPLES, _Codec, _train_dictionary
from observatory.store.duckdb.migrations import MIGRATIONS, WITNESS_VERSION
from observatory.store.shared import Cond
from observatory.vocab import TECHNIQUES

_TECHNIQUE_LIST = sorted(TECHNIQUES)


def _first(rows: list[tuple[Any, ...]]) -> tuple[Any, ...] | None:
    """The first row of a result fetched whole (DuckDB 2 wants every result read to the end)."""
    return rows[0] if rows else None


def where(conds: Sequence[Cond]) -> tuple[str, list[Any]]:
    """The conditions (shared.py) as " WHERE a AND b" ("" for none) and their parameters, one `?` each."""
    parts: list[str] = []
    params: list[Any] = []
    for c in conds:
        if c.op == "in":
            parts.append(f"list_contains(?, {c.column})")
        elif c.op == "has":
            parts.append(f"list_contains({c.column}, ?)")
        elif c.op == "open_at":
            parts.append(f"({c.column} IS NULL OR {c.column} >= ?)")
        else:
            parts.append(f"{c.column} {c.op} ?")
        params.append(_naive(c.value) if isinstance(c.value, datetime) else c.value)
    return (" WHERE " + " AND ".join(parts) if parts else ""), params


@contextlib.contextmanager
def transaction(con: Any) -> Iterator[None]:
    """BEGIN ... COMMIT around the block; ROLLBACK (its own failure ignored: the first error is the one to
    report) on any exception, which is raised again."""
    con.execute("BEGIN TRANSACTION")
    try:
        yield
        con.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(duckdb.Error):
            con.execute("ROLLBACK")
        raise


def _naive(t: datetime) -> datetime:
    return t.astimezone(UTC).replace(tzinfo=None) if t.tzinfo else t


def _aware(t: datetime | None) -> datetime | None:
    return None if t is None else t.replace(tzinfo=UTC)


# DuckDB reports the OS's failures as IOException with the OS's text and no errno: these are the texts of the
# errnos that mean a full disk, and a file or file system the store may not write
_FULL_TEXTS = tuple(os.strerror(e).lower() for e in (errno.ENOSPC, errno.EDQUOT))
_DENIED_TEXTS = tuple(os.strerror(e).lower() for e in (errno.EACCES, errno.EPERM, errno.EROFS))


def _error_class(exc: duckdb.Error, read_only: bool) -> type[StoreError]:
    """Which of the observatory's store errors a DuckDB error is, by its type."""
    if read_only and isinstance(exc, duckdb.InvalidInputException):
        return StoreReadOnlyError  # a write to a store opened read-only
    if isinstance(exc, duckdb.PermissionException):
        return StoreReadOnlyError
    if isinstance(exc, duckdb.IOException):
        low = str(exc).lower()
        if any(text in low for text in _FULL_TEXTS):
            return StoreFullError
        if any(text in low for text in _DENIED_TEXTS):
            return StoreReadOnlyError
    return StoreError


@contextlib.contextmanager
def _mapped_errors(path: str, read_only: bool = False) -> Iterator[None]:
    """DuckDB's errors become the observatory's, with the file named; the disk's state named plainly."""
    try:
        yield
    except duckdb.Error as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        kind = _error_class(exc, read_only)
        if kind is StoreFullError:
            raise StoreFullError(f"store {path}: the disk is full ({first})") from exc
        if kind is StoreReadOnlyError:
            raise StoreReadOnlyError(f"store {path}: cannot write ({first})") from exc
        raise StoreError(f"store {path}: {first}") from exc


CHECKPOINT_WAL = "64MB"  # write-ahead log that triggers a checkpoint


# Sharing the file between processes. DuckDB lets one process at a time open a file for writing (and none read
# it meanwhile), so a long-running service that kept its connection would lock every CLI command out. Instead:
# * whoever finds the file locked waits for it (up to $OBSERVATORY_STORE_WAIT seconds) and, while waiting, keeps
#   a marker file "<store>.wait" fresh to say so;
# * a `shared` store (what `serve` and `demo` open) lets go of the file between operations when that marker is
#   there, or after SHARED_IDLE_SECONDS without use, and takes it back on its next operation.
# A service with nobody waiting keeps its connection: reopening costs ~70 ms (100+ with the checkpoint DuckDB
# does on close), so letting go after every request would slow the collector several-fold.
STORE_WAIT_SECONDS = StoreSettings().wait_seconds  # default of $OBSERVATORY_STORE_WAIT
SHARED_IDLE_SECONDS = 5.0
_WAIT_MARK_FRESH = 5.0  # a marker older than this is a waiter that died: ignored
_RETRY_SECONDS = 0.02
_HANDOFF_SECONDS = 1.0  # after letting go for a waiter, the service gives it this long to take the file


def _is_lock_conflict(exc: duckdb.Error) -> bool:
    return isinstance(exc, duckdb.IOException) and "lock" in str(exc).lower()


class _Hold:
    """The store's mutex (one operation at a time per process), which also opens the connection on first use
    and, for a shared store, lets another process have the file between operations (see above)."""

    def __init__(self, store: DuckDBCore, shared: bool) -> None:
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


class DuckDBCore:
    """The connection, its sharing and the schema; the resource mixins (and DuckDBStore) build on it."""

    def __init__(self, path: str, *, read_only: bool = False, shared: bool = False,
                 settings: StoreSettings | None = None) -> None:
        """`shared`: let other processes use the file between this store's operations (a long-running service)."""
        self.url = path
        self._read_only = read_only
        self._settings = settings or StoreSettings()
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
        wait = max(0.0, self._settings.wait_seconds)
        deadline = time.monotonic() + wait
        marked = 0.0
        try:
            while True:
                try:
                    return self._open_connection()
                except duckdb.Error as exc:
                    if not _is_lock_conflict(exc):
                        with self._errors():
                            raise
                    if time.monotonic() >= deadline:
                        raise StoreError(
                            f"store {self.url} is in use by another process (waited {wait:g} s; "
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
        return duckdb.connect(self.url, read_only=self._read_only, config={
            "memory_limit": self._settings.duckdb_memory,  # bounded: see StoreSettings
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
        with self._lock, self._errors():
            self._con.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = _first(self._con.execute("SELECT max(version) FROM schema_version").fetchall())
            current = row[0] if row and row[0] is not None else 0
            for version in range(current, len(MIGRATIONS)):
                with transaction(self._con):
                    self._con.execute(MIGRATIONS[version])
                    self._con.execute("INSERT INTO schema_version VALUES (?)", [version + 1])

    def _errors(self) -> contextlib.AbstractContextManager[None]:
        return _mapped_errors(self.url, self._read_only)

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
            with self._lock, self._errors():
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


def _sql_literal(text: str) -> str:
    return str(text).replace("'", "''")
