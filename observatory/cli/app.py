"""The shared Typer application and the options every command uses."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path
from typing import Annotated

import platformdirs
import typer

from observatory.errors import ConfigError
from observatory.measurement import parse_time
from observatory.store import Store, open_store

app = typer.Typer(
    name="observatory",
    help="An open internet observatory: measure platforms, detect censorship and shutdowns, report them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def default_db() -> str:
    """The store used when --db is not given: $OBSERVATORY_DB, else a file in the user's data directory."""
    env = os.environ.get("OBSERVATORY_DB")
    if env:
        return env
    return str(Path(platformdirs.user_data_dir("observatory")) / "observatory.duckdb")


DbOption = Annotated[
    str,
    typer.Option("--db", help="Store: a DuckDB file path, chdb:///DIR or clickhouse://user:pass@host:port/db. "
                 "Default: $OBSERVATORY_DB or observatory.duckdb in the user's data directory.",
                 default_factory=default_db, show_default=False),
]
FormatOption = Annotated[str, typer.Option("--format", "-f", help="Output format.")]


def store_for(db: str, *, read_only: bool = False) -> Store:
    return open_store(db, read_only=read_only)


def time_option(value: str | None, flag: str) -> datetime | None:
    """Parses a --since/--until value: ISO 8601 or 'YYYY-MM-DD HH:MM:SS' (UTC), or a date."""
    if value is None:
        return None
    try:
        return parse_time(value.strip(), where=flag)
    except Exception as exc:
        raise ConfigError(f"{flag} {value!r}: expected a time like 2024-01-20T13:45:00Z") from exc


def check_choice(value: str, choices: tuple[str, ...], flag: str) -> str:
    if value not in choices:
        raise ConfigError(f"{flag} {value!r}: choose one of {', '.join(choices)}")
    return value
