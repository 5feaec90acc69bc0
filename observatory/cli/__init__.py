"""The `observatory` command: thin commands over library calls, one module per pipeline stage."""

from __future__ import annotations

import sys

import typer

from observatory.cli.app import app
from observatory.errors import ObservatoryError

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


def main() -> None:
    try:
        result = app(standalone_mode=False)
        if isinstance(result, int) and result:
            sys.exit(result)
    except ObservatoryError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
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

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        raise
