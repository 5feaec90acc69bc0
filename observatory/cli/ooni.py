"""ooni sync: follow OONI's public measurement stream into the store."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TaskID, TextColumn, TimeRemainingColumn

from observatory.cli.app import DbOption, app, check_choice, store_for, time_option
from observatory.errors import ConfigError
from observatory.sources.ooni import (
    DEFAULT_BUCKET,
    DEFAULT_TESTS,
    RemoteFile,
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
    bar = _SyncProgress()
    store = store_for(db)
    try:
        syncer = Syncer(store, make_source(source, endpoint=endpoint, bucket=bucket), concurrency=concurrency,
                        on_progress=bar.update, on_start=bar.start)
        if follow:
            from observatory.service import run_detection

            syncer.follow(plan, poll_seconds=poll, rounds=rounds, after_batch=lambda: run_detection(store))
        else:
            syncer.run_once(plan)
    finally:
        bar.close()
        store.close()
    s = syncer.stats
    for err in s.errors:
        typer.echo(f"error: {err}", err=True)
    typer.echo(json.dumps({"files": s.files, "skipped": s.skipped, "failed": s.failed, "bytes": s.bytes,
                           "measurements": s.ingest.accepted, "duplicates": s.ingest.duplicates,
                           "rejected": s.ingest.rejected}))


class _SyncProgress:
    """A progress bar (files, measurements, bytes) while stdout is a terminal; nothing otherwise, so that a
    script reading the JSON summary gets only that."""

    def __init__(self) -> None:
        self.console = Console()
        self._bar: Progress | None = None
        self._task: TaskID | None = None
        self._files = 0

    def start(self, todo: list[RemoteFile]) -> None:
        if not self.console.is_terminal:
            return
        if self._bar is None:
            self._bar = Progress(TextColumn("[dim]{task.fields[files]}  {task.fields[measurements]}[/dim]"),
                                 BarColumn(), DownloadColumn(), TimeRemainingColumn(), console=self.console,
                                 transient=False)
            self._bar.start()
        self._files += len(todo)
        total = sum(f.size for f in todo)
        if self._task is None:
            self._task = self._bar.add_task("sync", total=total, files="", measurements="")
        else:  # --follow: a new batch of files adds to the totals
            self._bar.update(self._task, total=(self._bar.tasks[0].total or 0) + total)

    def update(self, s: SyncStats) -> None:
        if self._bar is None or self._task is None:
            return
        self._bar.update(self._task, completed=s.bytes, files=f"files {s.files}/{self._files}",
                         measurements=f"measurements {s.ingest.accepted:,}")

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
