"""The settings of a run, in one typed record built once at the entry point and passed down.

Precedence, lowest first: the defaults of the code < the config file < the environment (`OBSERVATORY_*`) < the
command's flags. The config file is the one named by `observatory --config FILE`, else `$OBSERVATORY_CONFIG`,
else `./observatory.toml` when there is one; a file named explicitly must exist. Every key, its table, its
variable and its type are listed once, in `KEYS` (the README's configuration section is written from it).

A bad file (not TOML, an unknown table or key, a value of the wrong type) or a bad variable is a one-line
`ConfigError` naming the file and key (exit status 2): a setting silently ignored is worse than none.
Range checks (a token's length, a rate's sign) stay with the part that uses the value (`web.settings`).
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from observatory.errors import ConfigError

CONFIG_ENV = "OBSERVATORY_CONFIG"
CONFIG_NAME = "observatory.toml"


@dataclass(frozen=True, slots=True)
class Key:
    """One setting: where it lives in the file, which variable sets it, what type it takes."""

    field: str  # the Settings field
    table: str  # the TOML table: [store], [serve], [collector] or [alerts]
    name: str  # the key in that table
    env: str  # the OBSERVATORY_* variable
    kind: type  # str, float or int
    help: str


KEYS: tuple[Key, ...] = (
    Key("db", "store", "db", "OBSERVATORY_DB", str,
        "the store: a DuckDB file, chdb:///DIR or clickhouse://user:pass@host:8123/db (--db)"),
    Key("store_wait", "store", "wait", "OBSERVATORY_STORE_WAIT", float,
        "seconds to wait for a DuckDB file another process holds (default 30)"),
    Key("duckdb_memory", "store", "duckdb_memory", "OBSERVATORY_DUCKDB_MEMORY", str,
        "DuckDB's buffer pool, e.g. 4GB (default 4GB)"),
    Key("admin_token", "serve", "admin_token", "OBSERVATORY_ADMIN_TOKEN", str,
        "bearer token for analysts, at least 16 characters (serve --admin-token)"),
    Key("detect_every", "serve", "detect_every", "OBSERVATORY_DETECT_EVERY", float,
        "seconds between incremental detection runs, 0: off (serve --detect-every; default 60)"),
    Key("api_rate", "serve", "api_rate", "OBSERVATORY_API_RATE", float,
        "requests per second per client address, 0: no limit (serve --api-rate; default 20)"),
    Key("api_burst", "serve", "api_burst", "OBSERVATORY_API_BURST", float,
        "requests one address may send at once above the rate (serve --api-burst; default 200)"),
    Key("admin_failures", "serve", "admin_failures", "OBSERVATORY_ADMIN_FAILURES", int,
        "failed admin-token attempts per address per 15 minutes (default 10)"),
    Key("probe_per_hour", "collector", "per_hour", "OBSERVATORY_PROBE_PER_HOUR", int,
        "measurements one probe may have stored per clock hour (default 20,000; SECURITY.md)"),
    Key("probe_per_day", "collector", "per_day", "OBSERVATORY_PROBE_PER_DAY", int,
        "measurements one probe may have stored per UTC day (default 100,000)"),
    Key("probe_bytes_per_hour", "collector", "bytes_per_hour", "OBSERVATORY_PROBE_BYTES_PER_HOUR", int,
        "bytes of documents one probe may have stored per clock hour (default 64 MiB)"),
    Key("probe_bytes_per_day", "collector", "bytes_per_day", "OBSERVATORY_PROBE_BYTES_PER_DAY", int,
        "bytes of documents one probe may have stored per UTC day (default 512 MiB)"),
    Key("webhook_secret", "alerts", "webhook_secret", "OBSERVATORY_WEBHOOK_SECRET", str,
        "HMAC-SHA256 key signing webhook alerts (serve --webhook-secret, alert --secret)"),
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """None: not set at any level; the command's own default applies."""

    db: str | None = None
    store_wait: float | None = None
    duckdb_memory: str | None = None
    admin_token: str | None = None
    detect_every: float | None = None
    api_rate: float | None = None
    api_burst: float | None = None
    admin_failures: int | None = None
    probe_per_hour: int | None = None
    probe_per_day: int | None = None
    probe_bytes_per_hour: int | None = None
    probe_bytes_per_day: int | None = None
    webhook_secret: str | None = None
    # the config file these settings read, if any (for messages)
    config_file: str | None = None

    def with_flags(self, **flags: Any) -> Settings:
        """These settings under the command's flags: a flag given (not None) wins over every other level."""
        unknown = set(flags) - {f.name for f in fields(self)}
        if unknown:  # a programming error, not a user's: caught by the tests
            raise TypeError(f"not settings: {sorted(unknown)}")
        return replace(self, **{k: v for k, v in flags.items() if v is not None})


def load_settings(config: Path | str | None = None, *, env: Mapping[str, str] | None = None,
                  cwd: Path | None = None) -> Settings:
    """Defaults < config file < environment. `config`: the --config flag (None: not given)."""
    env = os.environ if env is None else env
    path = config_path(config, env=env, cwd=cwd)
    values = file_values(path) if path is not None else {}
    values.update(env_values(env))
    return replace(Settings(**values), config_file=str(path) if path is not None else None)


def config_path(config: Path | str | None, *, env: Mapping[str, str], cwd: Path | None = None) -> Path | None:
    """--config, else $OBSERVATORY_CONFIG, else ./observatory.toml if present. A file named must exist."""
    named = str(config) if config is not None else env.get(CONFIG_ENV) or None
    if named is not None:
        path = Path(named).expanduser()
        if not path.is_file():
            how = "--config" if config is not None else f"${CONFIG_ENV}"
            raise ConfigError(f"config file {path} ({how}): no such file")
        return path
    local = (cwd or Path.cwd()) / CONFIG_NAME
    return local if local.is_file() else None


def file_values(path: Path) -> dict[str, Any]:
    """The settings a config file sets, checked: unknown tables or keys and wrong types are errors."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"config file {path}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path}: not valid TOML: {exc}") from None
    by_place = {(k.table, k.name): k for k in KEYS}
    tables = sorted({k.table for k in KEYS})
    values: dict[str, Any] = {}
    for table, body in data.items():
        if table not in tables:
            raise ConfigError(f"config file {path}: unknown table or key {table!r} (known tables: "
                              f"{', '.join(f'[{t}]' for t in tables)})")
        if not isinstance(body, dict):
            raise ConfigError(f"config file {path}: {table!r} must be a table ([{table}])")
        for name, value in body.items():
            key = by_place.get((table, name))
            if key is None:
                known = ", ".join(k.name for k in KEYS if k.table == table)
                raise ConfigError(f"config file {path}: unknown key [{table}] {name} (known: {known})")
            values[key.field] = _typed(value, key, f"config file {path}: [{table}] {name}")
    return values


def env_values(env: Mapping[str, str]) -> dict[str, Any]:
    """The settings the OBSERVATORY_* variables set; an empty variable is unset."""
    values: dict[str, Any] = {}
    for key in KEYS:
        text = env.get(key.env)
        if text:
            values[key.field] = _parsed(text, key, f"{key.env}={text!r}")
    return values


_KIND_NAMES = {str: "a string", float: "a number", int: "a whole number"}


def _typed(value: Any, key: Key, where: str) -> Any:
    """A TOML value of the key's type (an int where a float is expected is fine; a bool is never a number)."""
    if key.kind is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if key.kind is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if key.kind is str and isinstance(value, str):
        return value
    raise ConfigError(f"{where}: expected {_KIND_NAMES[key.kind]}, got {value!r}")


def _parsed(text: str, key: Key, where: str) -> Any:
    if key.kind is str:
        return text
    try:
        return key.kind(text)
    except ValueError:
        raise ConfigError(f"{where}: expected {_KIND_NAMES[key.kind]}") from None
