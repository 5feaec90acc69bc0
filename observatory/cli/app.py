"""The shared Typer application and the options every command uses."""

from __future__ import annotations

import difflib
from datetime import datetime
from pathlib import Path
from typing import Annotated

import click
import platformdirs
import typer

from observatory import __version__
from observatory.errors import ConfigError, StoreError
from observatory.measurement import parse_time
from observatory.settings import CONFIG_ENV, CONFIG_NAME, Settings, load_settings
from observatory.store import Store, open_store, store_settings

app = typer.Typer(
    name="observatory",
    help="An open internet observatory: measure platforms, detect censorship and shutdowns, report them.\n\n"
    "Exit status: 0 all good; 1 done, but some input was rejected (counted, with file:line; the good part kept); "
    "2 usage or input error (one line on stderr); 3 the store is unavailable (missing, locked, full or "
    "read-only).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def current_settings() -> Settings:
    """The run's settings, built once by the root command from --config, the file and the environment (a
    command's flags then go on top with `Settings.with_flags`). Outside a command line run (a library call):
    built from the file and the environment now."""
    ctx = click.get_current_context(silent=True)
    root = ctx.find_root() if ctx is not None else None
    if root is not None and isinstance(root.obj, Settings):
        return root.obj
    return load_settings()


def default_db() -> str:
    """The store used when --db is not given: the settings' db ([store] db in the config file,
    $OBSERVATORY_DB), else a file in the user's data directory."""
    configured = current_settings().db
    if configured:
        return configured
    return str(Path(platformdirs.user_data_dir("observatory")) / "observatory.duckdb")


DbOption = Annotated[
    str,
    typer.Option("--db", help="Store: a DuckDB file path, chdb:///DIR or clickhouse://user:pass@host:port/db. "
                 "Default: [store] db of the config file, $OBSERVATORY_DB, or observatory.duckdb in the user's "
                 "data directory.",
                 default_factory=default_db, show_default=False),
]
FormatOption = Annotated[str, typer.Option("--format", "-f", help="Output format.")]


def store_for(db: str, *, read_only: bool = False, create: bool = True, shared: bool = False) -> Store:
    """The store named by --db. `create=False` (every command that only reads or analyses what is there): a
    missing DuckDB file is an error naming the path, never a new empty store that answers "nothing"."""
    if not create and "://" not in db and db != ":memory:" and not Path(db).expanduser().exists():
        raise StoreError(f"store {db}: no such store (check --db; `observatory ingest FILE --db {db}` "
                         "creates one)")
    return open_store(db, read_only=read_only, shared=shared, settings=store_settings(current_settings()))


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


def time_range(since: str | None, until: str | None) -> tuple[datetime | None, datetime | None]:
    """--since and --until together: an empty range (since at or after until) is a usage error, not []."""
    t_since, t_until = time_option(since, "--since"), time_option(until, "--until")
    if t_since is not None and t_until is not None and t_since >= t_until:
        raise ConfigError(f"--since {since} is not before --until {until}: the range is empty")
    return t_since, t_until


UNKNOWN_COUNTRY = "ZZ"  # OONI's code for a probe whose country is not known; stored as such


def country_option(value: str | None, flag: str = "--country") -> str | None:
    """A country given on the command line as its ISO 3166-1 alpha-2 code (returned) or alpha-3 code, any case.

    Anything else (a name, a typo, an unassigned code) is an error listing close matches: a filter on an
    unknown code would silently answer nothing.
    """
    if value is None:
        return None
    import pycountry

    text = value.strip()
    if text.upper() == UNKNOWN_COUNTRY:
        return UNKNOWN_COUNTRY
    if len(text) in (2, 3) and text.isalpha():
        code = text.upper()
        found = pycountry.countries.get(alpha_2=code) if len(code) == 2 else pycountry.countries.get(alpha_3=code)
        if found is not None:
            return str(found.alpha_2)
    raise ConfigError(f"{flag} {value!r}: not an ISO 3166-1 country code" + _country_hint(text))


def _country_hint(text: str) -> str:
    import pycountry

    names = {str(c.alpha_2): [str(c.name), str(getattr(c, "common_name", c.name)),
                              str(getattr(c, "official_name", c.name))] for c in pycountry.countries}
    low = text.lower()
    hits = [cc for cc, ns in names.items() if any(low == n.lower() for n in ns)]
    if not hits:
        by_name = {n.lower(): cc for cc, ns in names.items() for n in ns}
        hits = [by_name[n] for n in difflib.get_close_matches(low, list(by_name), n=3, cutoff=0.75)]
    if not hits and len(text) in (2, 3):
        codes = {str(c.alpha_2 if len(text) == 2 else c.alpha_3): str(c.alpha_2) for c in pycountry.countries}
        hits = [codes[c] for c in difflib.get_close_matches(text.upper(), list(codes), n=3, cutoff=0.5)]
    hits = list(dict.fromkeys(hits))
    if not hits:
        return " (use a two-letter code such as PK, or three letters such as PAK)"
    return "; did you mean " + ", ".join(f"{cc} ({names[cc][1]})" for cc in hits) + "?"


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"observatory {__version__}")
        raise typer.Exit()


@app.callback()
def _root(ctx: typer.Context,
          version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                                help="Print the version and exit.")] = False,
          config: Annotated[Path | None, typer.Option(
              "--config", help=f"Settings file (TOML). Default: ${CONFIG_ENV}, else ./{CONFIG_NAME} if present. "
              "Flags win over the environment (OBSERVATORY_*), which wins over the file.",
              show_default=False)] = None) -> None:
    # the one place settings are read: every command takes them from here (current_settings)
    ctx.obj = load_settings(config)
