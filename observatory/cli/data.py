"""ingest, stats, export: getting measurements in and out of the store."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from observatory import publish
from observatory.cli.app import DbOption, FormatOption, app, check_choice, country_option, store_for, time_range
from observatory.errors import ConfigError
from observatory.ingest import IngestSummary, expand_paths, ingest_paths
from observatory.store import MeasurementFilter


def _rejects_default(db: str) -> Path:
    if "://" in db:
        import platformdirs

        return Path(platformdirs.user_data_dir("observatory")) / "rejects.jsonl"
    return Path(db + ".rejects.jsonl")


@app.command()
def ingest(
    paths: Annotated[list[Path], typer.Argument(
        help="Files (.jsonl, .jsonl.gz, .json; OONI observation rows as .csv, .csv.gz or .parquet) or directories.")],
    db: DbOption,
    rejects: Annotated[Path | None, typer.Option(help="Where rejected lines go (default: beside the store).")] = None,
    format: FormatOption = "table",
) -> None:
    """Ingest OONI-format measurements into the store; bad lines are rejected with file:line and a reason.

    OONI's observation rows (obs_web CSV/CSV.gz/Parquet, recognised by their header) are grouped by
    measurement_uid into measurements.

    Example: observatory ingest measurements.jsonl.gz data/ --db obs.duckdb
    """
    # text (or table, its first name): a summary line; json: one object. Any line rejected: exit 1.
    check_choice(format, ("text", "table", "json"), "--format")
    files = expand_paths(paths)
    if not files:
        raise ConfigError("no input files found in " + ", ".join(map(str, paths)))
    store = store_for(db)
    rejects_path = rejects or _rejects_default(db)
    progress = _progress_bar(len(files))
    try:
        summary = ingest_paths(store, files, rejects_path=rejects_path, on_progress=progress.update)
    finally:
        progress.close()
        store.close()
    _print_summary(summary, format, rejects_path)
    # a rejected line is lost input: exit 0 would tell a script that everything it sent is stored
    if summary.read == 0 or summary.rejected > 0:
        raise typer.Exit(1)


class _progress_bar:
    """A progress line on a terminal; silent otherwise."""

    def __init__(self, files: int) -> None:
        self.console = Console(stderr=True)
        self.live = self.console.is_terminal
        self.files = files

    def update(self, s: IngestSummary) -> None:
        if self.live:
            self.console.print(
                f"\r[dim]file {s.files}/{self.files}  read {s.read:,}  stored {s.accepted:,}  "
                f"duplicates {s.duplicates:,}  rejected {s.rejected:,}[/dim]", end="")

    def close(self) -> None:
        if self.live:
            self.console.print()


def _print_summary(s: IngestSummary, fmt: str, rejects_path: Path) -> None:
    if fmt == "json":
        typer.echo(json.dumps(s.to_json() | {"rejects_file": str(rejects_path) if s.rejected else None}))
    else:
        typer.echo(f"files {s.files}  read {s.read}  accepted {s.accepted}  duplicates {s.duplicates}  "
                   f"rejected {s.rejected}")
    # the rejected lines go to stderr whatever the format: stdout stays one JSON object for scripts
    for r in s.rejects[:10]:
        typer.echo(f"  rejected {r}", err=True)
    if s.rejected:
        more = f" ({s.rejected - 10} more)" if s.rejected > 10 else ""
        typer.echo(f"rejected lines{more} written to {rejects_path}", err=True)


STATS_ROWS = 20  # rows per table printed by `stats` (the JSON has them all)


@app.command()
def stats(db: DbOption, format: FormatOption = "table") -> None:
    """Counts of stored measurements by country, network, test, platform, verdict and day.

    Example: observatory stats --format json
    """
    check_choice(format, ("table", "json"), "--format")
    store = store_for(db, read_only=True, create=False)
    try:
        data = store.stats()
    finally:
        store.close()
    if format == "json":
        typer.echo(json.dumps(data, indent=2))
        return
    console = Console()
    console.print(f"[bold]{data['measurements']:,}[/bold] measurements in {db}")
    for key in ("by_country", "by_network", "by_test", "by_platform", "by_verdict", "by_day"):
        items = list(data[key].items())
        if key == "by_day":
            items.reverse()  # the newest days first: what an analyst checks is whether today's data came in
        table = Table(title=key.replace("_", " "), show_header=False, box=None)
        for k, v in items[:STATS_ROWS]:
            table.add_row(k, f"{v:,}")
        console.print(table)
        if len(items) > STATS_ROWS:
            rest = sum(v for _, v in items[STATS_ROWS:])
            console.print(f"  ... {STATS_ROWS} of {len(items)} rows shown ({rest:,} measurements in the rest); "
                          "--format json for all", highlight=False)


@app.command()
def export(
    db: DbOption,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output file.")],
    format: FormatOption = "jsonl",
    country: Annotated[str | None, typer.Option(help="ISO alpha-2 country code.")] = None,
    since: Annotated[str | None, typer.Option(help="Start time (UTC), inclusive.")] = None,
    until: Annotated[str | None, typer.Option(help="End time (UTC), exclusive.")] = None,
) -> None:
    """Write stored measurements: jsonl (the documents as ingested, scrubbed of any address that may be a
    probe's), parquet or csv.

    Example: observatory export --format jsonl --out pk.jsonl --country PK --since 2024-01-20
    """
    check_choice(format, ("jsonl", "parquet", "csv"), "--format")
    t_since, t_until = time_range(since, until)
    flt = MeasurementFilter(country=country_option(country), since=t_since, until=t_until)
    store = store_for(db, read_only=True, create=False)
    try:
        if format == "jsonl":
            n = 0
            with open(out, "wb") as fh:
                for doc in publish.documents(store, flt):  # scrubbed of any address that may be a probe's
                    fh.write(doc)
                    fh.write(b"\n")
                    n += 1
        else:
            n = publish.export(store, flt, format, str(out))
    finally:
        store.close()
    typer.echo(f"exported {n} measurements to {out}", err=not sys.stdout.isatty())
