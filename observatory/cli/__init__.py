"""The `observatory` command: thin commands over library calls, one module per pipeline stage."""

from __future__ import annotations

import sys

import typer

from observatory.cli.app import app
from observatory.errors import ObservatoryError, StoreError

# Each module registers its commands on `app` when imported.
from observatory.cli import data  # noqa: E402,F401  isort: skip
from observatory.cli import report  # noqa: E402,F401  isort: skip
from observatory.cli import classify  # noqa: E402,F401  isort: skip
from observatory.cli import detect  # noqa: E402,F401  isort: skip
from observatory.cli import simulate  # noqa: E402,F401  isort: skip
from observatory.cli import serve  # noqa: E402,F401  isort: skip
from observatory.cli import lab  # noqa: E402,F401  isort: skip
from observatory.cli import probe  # noqa: E402,F401  isort: skip
from observatory.cli import ooni  # noqa: E402,F401  isort: skip
from observatory.cli import signals  # noqa: E402,F401  isort: skip


# The exit status contract (README, `observatory --help`); tests/test_cli_contract.py holds every command to it.
EXIT_OK = 0
EXIT_REJECTED = 1  # done, but some input was rejected (counted, with file:line; the good part kept)
EXIT_USAGE = 2  # usage or input error: one line on stderr, nothing changed
EXIT_STORE = 3  # the store is unavailable: missing, locked by another process, full, read-only

# click already suggests close command names; typer's own suggestion on top printed them twice
for _group in app.registered_groups:
    if _group.typer_instance is not None:
        _group.typer_instance.suggest_commands = False
app.suggest_commands = False


def main() -> None:
    try:
        result = app(standalone_mode=False)
        if isinstance(result, int) and result:
            sys.exit(result)
    except StoreError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_STORE)
    except ObservatoryError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_USAGE)
    except OSError as exc:
        # a file named on the command line that cannot be read or written (--out in a missing directory...)
        where = f"{exc.filename}: " if exc.filename else ""
        typer.echo(f"error: {where}{exc.strerror or exc}", err=True)
        sys.exit(EXIT_USAGE)
    except typer.Abort:
        typer.echo("aborted", err=True)
        sys.exit(130)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
    except (typer.Exit, SystemExit) as exc:
        code = getattr(exc, "exit_code", None)
        if code is None:
            code = getattr(exc, "code", 0)
        sys.exit(code or 0)
    except Exception as exc:  # click's usage errors
        import click

        if isinstance(exc, click.UsageError):
            # one line, like every other error: what is wrong, and where the help is
            where = exc.ctx.command_path if exc.ctx is not None else "observatory"
            typer.echo(f"error: {exc.format_message()} (see `{where} --help`)", err=True)
            sys.exit(EXIT_USAGE)
        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        raise
