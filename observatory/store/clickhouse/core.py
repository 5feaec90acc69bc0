"""The ClickHouse store's client: connecting (a server, or the engine in-process through chdb), the
statement helpers, migrations and errors every resource module uses."""

from __future__ import annotations

import contextlib
import errno
import re
import threading
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

from observatory.errors import ConfigError, StoreError, StoreFullError, StoreReadOnlyError
from observatory.store.clickhouse.migrations import _TS, MIGRATIONS
from observatory.store.shared import Cond
from observatory.vocab import TECHNIQUES

_TECHNIQUE_LIST = sorted(TECHNIQUES)
_TECH_IN = ", ".join(f"'{t}'" for t in _TECHNIQUE_LIST)
DEFAULT_DATABASE = "observatory"
ROLLUP_BUCKET_SECONDS = 300
ROLLUP_SEQ_KEY = "rollup.seq"
ROLLUP_GEN_KEY = "rollup.generation"  # bumped by each rebuild of the rollup
_REBUILD = -1  # ROLLUP_SEQ_KEY's value while the rollup is to be emptied and refolded


def _utc(t: datetime) -> datetime:
    """An aware UTC datetime (naive ones are UTC by the observatory's convention)."""
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def _read_time(t: datetime | None) -> datetime | None:
    return None if t is None else _utc(t)


def _quote_ident(name: str) -> str:
    if not name.replace("_", "").isalnum():
        raise ConfigError(f"ClickHouse database name {name!r}: use letters, digits and _ only")
    return f"`{name}`"


# ClickHouse's own error codes (server and chdb alike: "Code: N. DB::Exception: ..."): a full disk, and a
# store that may not be written (read-only settings or user, a file it cannot open or write)
_FULL_CODES = frozenset({243})  # NOT_ENOUGH_SPACE
_DENIED_CODES = frozenset({76, 164, 291, 497})  # CANNOT_OPEN_FILE, READONLY, DATABASE_ACCESS_DENIED, ACCESS_DENIED
_CODE = re.compile(r"\bCode: (\d+)\b")


def _error_class(exc: BaseException) -> type[StoreError]:
    """Which of the observatory's store errors a ClickHouse (or OS) error is: by errno for the OS's, by
    ClickHouse's error code for the engine's."""
    if isinstance(exc, OSError):
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return StoreFullError
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            return StoreReadOnlyError
        return StoreError
    code = _CODE.search(str(exc))
    if code and int(code.group(1)) in _FULL_CODES:
        return StoreFullError
    if code and int(code.group(1)) in _DENIED_CODES:
        return StoreReadOnlyError
    return StoreError


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
        kind = _error_class(exc)
        if kind is StoreFullError:
            raise StoreFullError(f"store {url}: the disk is full ({first})") from exc
        if kind is StoreReadOnlyError:
            raise StoreReadOnlyError(f"store {url}: cannot write ({first})") from exc
        raise StoreError(f"store {url}: {first}") from exc


def where(conds: Sequence[Cond], prefix: str = "w") -> tuple[str, dict[str, Any]]:
    """The conditions (shared.py) ANDed ("1" for none) with their typed parameters, named `prefix`0, 1..."""
    parts: list[str] = []
    params: dict[str, Any] = {}
    for i, c in enumerate(conds):
        name = f"{prefix}{i}"
        kind = _TS if c.kind == "time" else c.kind
        if c.op == "in":
            parts.append(f"{c.column} IN {{{name}:Array({kind})}}")
        elif c.op == "has":
            parts.append(f"has({c.column}, {{{name}:{kind}}})")
        elif c.op == "open_at":
            parts.append(f"({c.column} IS NULL OR {c.column} >= {{{name}:{kind}}})")
        else:
            parts.append(f"{c.column} {c.op} {{{name}:{kind}}}")
        params[name] = _utc(c.value) if isinstance(c.value, datetime) else c.value
    return " AND ".join(parts) or "1", params


class _ChdbDirectory:
    """The one chdb data directory this process may use (chdb's rule: one engine per process; clients for the
    same directory share it), claimed under a lock so two threads cannot open two directories at once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._path: str | None = None

    def claim(self, url: str, path: str) -> Any:
        """A client for `path`, or StoreError (said plainly, rather than as the engine's "EmbeddedServer already
        initialized") when the process already uses another directory."""
        import clickhouse_connect

        resolved = str(Path(path).resolve())
        with self._lock:
            if self._path is not None and self._path != resolved:
                raise StoreError(f"store {url}: this process already uses the chdb directory {self._path} and "
                                 "chdb allows one per process (use another database in it: ?database=NAME)")
            client = clickhouse_connect.get_client(dsn=f"chdb://{path}")
            self._path = resolved
            return client


_CHDB = _ChdbDirectory()


def _connect(url: str, read_only: bool) -> tuple[Any, str]:
    """A clickhouse-connect client for the URL, and the database the observatory's tables live in. Read-only: a
    chdb directory is not created."""
    import clickhouse_connect

    parsed = urlparse(url)
    query = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
    if parsed.scheme == "chdb":
        path = unquote(parsed.path)
        if not path or path == "/":
            raise ConfigError(f"--db {url!r}: give a directory, e.g. chdb:///var/lib/observatory/ch")
        if read_only and not Path(path).is_dir():
            raise StoreError(f"store {url}: no such store")
        try:
            Path(path).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"store {url}: cannot create its directory: {exc}") from exc
        database = query.get("database", DEFAULT_DATABASE)
        return _CHDB.claim(url, path), database
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


class ClickHouseCore:
    """The client and the schema; the resource mixins (and ClickHouseStore) build on it."""

    def __init__(self, url: str, *, read_only: bool = False) -> None:
        """`read_only`: the database must exist (it is neither created nor migrated) and every write is refused
        with StoreReadOnlyError, as DuckDB does for a file opened read-only."""
        self.url = url
        self._read_only = read_only
        self._lock = threading.RLock()
        self._last_version = 0
        with _mapped_errors(self._display_url()):
            self._client, self._database = _connect(url, read_only)
            self._db = _quote_ident(self._database)
            if read_only:
                if not self._client.command("SELECT count() FROM system.databases WHERE name = {name:String}",
                                            parameters={"name": self._database}):
                    raise StoreError(f"store {self._display_url()}: no such store")
            else:
                self._client.command(f"CREATE DATABASE IF NOT EXISTS {self._db}")
                self._migrate()
            self._next_seq = int(self._scalar("SELECT max(seq) FROM {db}.measurements") or 0) + 1

    def _writable(self) -> None:
        if self._read_only:
            raise StoreReadOnlyError(f"store {self._display_url()}: cannot write (opened read-only)")

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
        """A statement that writes (DDL, mutations, INSERT ... SELECT)."""
        self._writable()
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
        self._writable()
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
