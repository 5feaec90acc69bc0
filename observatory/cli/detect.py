"""detect: incidents from the store's measurements (incremental, restart-safe)."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from observatory.cli.app import DbOption, FormatOption, app, check_choice, country_option, store_for, time_range
from observatory.incident import Incident, iso
from observatory.service import run_detection, stored_incidents


@app.command()
def detect(
    db: DbOption,
    country: Annotated[str | None, typer.Option("--country", help="Only this country (alpha-2).")] = None,
    since: Annotated[str | None, typer.Option("--since", help="Incidents active at or after this time (UTC).")] = None,
    until: Annotated[str | None, typer.Option("--until", help="Incidents starting before this time (UTC).")] = None,
    full: Annotated[bool, typer.Option("--full", help="Re-examine all stored data, not only what is new.")] = False,
    format: FormatOption = "table",
) -> None:
    """Detect incidents in the new measurements of the store, save them, and print the incidents.

    Only data ingested since the last run is re-examined (late measurements included); incidents keep their
    ids across runs. JSON output is one array of incident objects (see docs/contracts.md).

    Example: observatory detect --db obs.duckdb --country PK --since 2024-01-20 --format json
    """
    check_choice(format, ("table", "json"), "--format")
    t_since, t_until = time_range(since, until)
    cc = country_option(country)
    store = store_for(db, create=False)
    try:
        run_detection(store, full=full)
        incidents = stored_incidents(store, country=cc, since=t_since,
                                     until=t_until)
    finally:
        store.close()
    if format == "json":
        typer.echo(json.dumps([i.to_json() for i in incidents], indent=1))
    else:
        _table(incidents)


def _table(incidents: list[Incident], width: int | None = None) -> None:
    table = Table(show_edge=False)
    # ids are copied from here into `report ID`: never cut or wrapped, whatever the terminal's width (the other
    # columns wrap instead)
    table.add_column("id", no_wrap=True, min_width=max((len(i.id) for i in incidents), default=2))
    for col in ("country", "kind", "scope", "platforms", "techniques", "start", "end", "status", "confirmed"):
        table.add_column(col, overflow="fold")
    for i in incidents:
        table.add_row(i.id, i.country or "world", i.kind, i.scope, ",".join(i.platforms) or "-",
                      ",".join(i.techniques) or "-", iso(i.start) or "", iso(i.end) or "ongoing", i.status,
                      iso(i.confirmed_at) or "-")
    # piped output is not cut to 80 columns: ids and times must stay whole
    Console(width=width or (None if sys.stdout.isatty() else 240)).print(table)
    if not incidents:
        typer.echo("no incidents")
