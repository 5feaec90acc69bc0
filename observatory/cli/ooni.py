"""ooni sync: follow OONI's public measurement stream into the store."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console

from observatory.cli.app import DbOption, app, check_choice, store_for, time_option
from observatory.errors import ConfigError
from observatory.sources.ooni import (
    DEFAULT_BUCKET,
    DEFAULT_TESTS,
    Syncer,
    SyncPlan,
    SyncStats,
    iter_countries,
    make_source,
    parse_list,
)

ooni_app = typer.Typer(help="OONI's public measurement stream.", no_args_is_help=True)
app.add_typer(ooni_app, name="ooni")


@ooni_app.command("sync")
def sync(
    db: DbOption,
    country: Annotated[str, typer.Option("--country", help="Countries, alpha-2, comma-separated: PK,IR.")],
    since: Annotated[str, typer.Option("--since", help="Start time (UTC), e.g. 2024-01-20T00:00:00Z.")],
    until: Annotated[str | None, typer.Option("--until", help="End time (UTC); default now.")] = None,
    test: Annotated[str, typer.Option("--test", help="OONI test names, comma-separated.")] = ",".join(DEFAULT_TESTS),
    follow: Annotated[bool, typer.Option("--follow", help="Keep polling for new hours; detect after each batch.")]
    = False,
    source: Annotated[str, typer.Option("--source", help="s3 (OONI's public bucket) or api.")] = "s3",
    endpoint: Annotated[str | None, typer.Option("--endpoint", help="S3 endpoint or API base URL.")] = None,
    bucket: Annotated[str, typer.Option("--bucket", help="S3 bucket.")] = DEFAULT_BUCKET,
    concurrency: Annotated[int, typer.Option("--concurrency", min=1, max=16, help="Parallel downloads.")] = 4,
    poll: Annotated[float, typer.Option("--poll", min=1.0, help="Seconds between polls with --follow.")] = 300.0,
    rounds: Annotated[int | None, typer.Option("--rounds", min=1, help="Stop --follow after N polls.")] = None,
) -> None:
    """Fetch OONI's raw measurements for countries and a time range and ingest them, each file once.

    A restart resumes where it stopped; nothing is ingested twice. Measurements keep their origin
    (software_name, report_id), so reports can tell OONI's from our own.

    Example: observatory ooni sync --country PK --since 2024-01-20T00:00:00Z --until 2024-01-21T00:00:00Z
    """
    check_choice(source, ("s3", "api"), "--source")
    t_since = time_option(since, "--since")
    t_until = time_option(until, "--until")
    assert t_since is not None
    if t_until and t_until <= t_since:
        raise ConfigError("--until must be after --since")
    plan = SyncPlan(countries=tuple(iter_countries(country)), tests=parse_list(test, flag="--test"),
                    since=t_since, until=t_until)
    console = Console(stderr=True)

    def progress(s: SyncStats) -> None:
        if console.is_terminal:
            console.print(f"\r[dim]files {s.files}  skipped {s.skipped}  failed {s.failed}  "
                          f"measurements {s.ingest.accepted:,} new, {s.ingest.duplicates:,} known[/dim]", end="")

    store = store_for(db)
    try:
        syncer = Syncer(store, make_source(source, endpoint=endpoint, bucket=bucket), concurrency=concurrency,
                        on_progress=progress)
        if follow:
            from observatory.detect.run import run_detection

            syncer.follow(plan, poll_seconds=poll, rounds=rounds, after_batch=lambda: run_detection(store))
        else:
            syncer.run_once(plan)
    finally:
        store.close()
    s = syncer.stats
    if console.is_terminal:
        console.print()
    for err in s.errors:
        typer.echo(f"error: {err}", err=True)
    typer.echo(json.dumps({"files": s.files, "skipped": s.skipped, "failed": s.failed,
                           "measurements": s.ingest.accepted, "duplicates": s.ingest.duplicates,
                           "rejected": s.ingest.rejected}))
