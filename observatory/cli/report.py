"""report, assess, events, alert: turning incidents into statements, charts, assessments and alerts."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer

from observatory.cli.app import (
    DbOption,
    FormatOption,
    app,
    check_choice,
    country_option,
    current_settings,
    store_for,
    time_option,
)
from observatory.errors import ConfigError, ParseError
from observatory.report.assess import CLAIMS, assessment_text
from observatory.report.eventfile import make_event, parse_csv, parse_ics
from observatory.report.render import FORMATS, render
from observatory.service import report_for
from observatory.store.base import IncidentFilter

events_app = typer.Typer(help="Context events (rallies, elections, exams) that reports mention.",
                         no_args_is_help=True)
app.add_typer(events_app, name="events")

WindowOption = Annotated[float, typer.Option("--window-hours", help="Mention context events that start up to "
                                             "this many hours before the incident (or during it).")]


@app.command()
def report(
    incident_id: Annotated[str, typer.Argument(help="The incident's id (from `observatory detect`).")],
    db: DbOption,
    format: FormatOption = "text",
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write here instead of standard output "
                                             "(required for png on a terminal).")] = None,
    window_hours: WindowOption = 48.0,
) -> None:
    """The incident's report: statement, history, context, claim assessment, cost and chart.

    Formats: text, md, json, png (the analyst's chart, one line per network), card (a 1200x675 image stating
    the finding, to post), html (self-contained, chart embedded).

    Example: observatory report PK-20240120-1405-platform_restriction --format html --out report.html
    """
    check_choice(format, FORMATS, "--format")
    if format in ("png", "card") and out is None and sys.stdout.isatty():
        raise ConfigError(f"--format {format} writes binary data: give --out FILE.png")
    store = store_for(db, read_only=True)
    try:
        rep = report_for(store, incident_id, now=datetime.now(UTC), chart=format in ("png", "html"),
                         card=format == "card",
                         event_window=timedelta(hours=window_hours))
    finally:
        store.close()
    if out is not None and not out.expanduser().resolve().parent.is_dir():
        raise ConfigError(f"--out {out}: no such directory {out.parent}")
    data = render(rep, format)
    if out is not None:
        out.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
        typer.echo(f"wrote {out} ({out.stat().st_size:,} bytes)", err=True)
    elif isinstance(data, bytes):
        sys.stdout.buffer.write(data)
    else:
        typer.echo(data, nl=False)


@app.command()
def assess(
    incident_id: Annotated[str, typer.Argument(help="The incident's id.")],
    db: DbOption,
    claim: Annotated[str, typer.Option("--claim", help=f"The claim to test: {', '.join(CLAIMS)}.")] =
    "technical_fault",
    format: FormatOption = "text",
) -> None:
    """Evidence for and against an official claim about an incident, and a conclusion.

    Example: observatory assess PK-20240120-1405-platform_restriction --claim technical_fault
    """
    check_choice(format, ("text", "json"), "--format")
    check_choice(claim, CLAIMS, "--claim")
    store = store_for(db, read_only=True, create=False)
    try:
        rep = report_for(store, incident_id, now=datetime.now(UTC), chart=False, claim=claim)
    finally:
        store.close()
    a = rep.assessment
    typer.echo(json.dumps(a.to_json(), indent=2) if format == "json" else assessment_text(a))


@events_app.command("add")
def events_add(
    db: DbOption,
    country: Annotated[str, typer.Option("--country", help="ISO 3166 alpha-2 code, e.g. PK.")],
    time: Annotated[str, typer.Option("--time", help="When, ISO 8601 (UTC unless a zone is given).")],
    title: Annotated[str, typer.Option("--title", help="What happens, as a report should name it.")],
    url: Annotated[str | None, typer.Option("--url", help="A source for it.")] = None,
) -> None:
    """Record a context event that reports mention when an incident overlaps it or follows it closely.

    Example: observatory events add --country PK --time 2024-01-20T15:00:00Z --title "PTI virtual rally"
    """
    t = time_option(time, "--time")
    assert t is not None
    try:
        event = make_event(country=country_option(country) or country, time=t, title=title, url=url, where="events add")
    except ParseError as exc:
        raise ConfigError(exc.reason) from None
    store = store_for(db)
    try:
        store.add_event(event)
    finally:
        store.close()
    typer.echo(f"added {event.id}: {event.country} {event.time:%Y-%m-%d %H:%M}Z {event.title}")


@events_app.command("import")
def events_import(
    path: Annotated[Path, typer.Argument(help="A .csv (time,country,title[,url]) or .ics file.")],
    db: DbOption,
    country: Annotated[str | None, typer.Option("--country", help="Country of an .ics file's events (else "
                                                "X-COUNTRY or a two-letter LOCATION).")] = None,
) -> None:
    """Import context events from CSV or iCalendar; nothing is stored if any row is bad.

    Example: observatory events import pk-events.csv --db obs.duckdb
    """
    if not path.is_file():
        raise ConfigError(f"{path}: no such file")
    text = path.read_text(encoding="utf-8-sig")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        events = parse_csv(text, name=str(path))
    elif suffix in (".ics", ".ical", ".ifb"):
        events = parse_ics(text, name=str(path), country=country)
    else:
        raise ConfigError(f"{path}: expected a .csv or .ics file")
    store = store_for(db)
    try:
        for e in events:
            store.add_event(e)
    finally:
        store.close()
    typer.echo(f"imported {len(events)} event{'s' if len(events) != 1 else ''} from {path}")


@events_app.command("list")
def events_list(
    db: DbOption,
    country: Annotated[str | None, typer.Option("--country", help="Only this country.")] = None,
    format: FormatOption = "text",
) -> None:
    """List context events.

    Example: observatory events list --country PK --format json
    """
    check_choice(format, ("text", "json"), "--format")
    cc = country_option(country)
    store = store_for(db, read_only=True, create=False)
    try:
        events = store.events(country=cc)
    finally:
        store.close()
    for e in events:
        if format == "json":
            typer.echo(json.dumps({"id": e.id, "country": e.country, "time": e.time.strftime("%Y-%m-%dT%H:%M:%SZ"),
                                   "title": e.title, "url": e.url}))
        else:
            typer.echo(f"{e.time:%Y-%m-%d %H:%M}Z  {e.country}  {e.title}" + (f"  {e.url}" if e.url else ""))


@app.command()
def alert(
    db: DbOption,
    webhook: Annotated[list[str], typer.Option("--webhook", help="URL to POST alerts to (repeatable).")],
    secret: Annotated[str | None, typer.Option("--secret", help="HMAC-SHA256 key for X-Observatory-Signature "
                                               "(default: [alerts] webhook_secret or "
                                               "$OBSERVATORY_WEBHOOK_SECRET).")] = None,
    slack: Annotated[bool, typer.Option("--slack", help="Send Slack/Mattermost-style {\"text\": ...} "
                                        "payloads instead of the incident JSON.")] = False,
    stage: Annotated[list[str] | None, typer.Option("--stage", help="Which changes to send: new, confirmed, "
                                                    "ended (repeatable; default confirmed and ended).")] = None,
    since: Annotated[str | None, typer.Option("--since", help="Only incidents starting after this time.")] = None,
    base_url: Annotated[str | None, typer.Option("--base-url", help="The dashboard's address, for links.")] = None,
    attempts: Annotated[int, typer.Option("--attempts", help="Tries per alert (retries on 5xx/timeouts).")] = 4,
) -> None:
    """Send incidents to webhooks: signed JSON, retried with backoff, each alert once (state kept in the store).

    Run it after each `detect` (or from cron); a restart never re-sends what was delivered.

    Example: observatory alert --webhook https://hooks.example.org/obs --secret s3cret --stage confirmed
    """
    from observatory.report.deliver import DEFAULT_STAGES, Webhook
    from observatory.service import deliver

    stages = tuple(stage or DEFAULT_STAGES)
    for s in stages:
        check_choice(s, ("new", "confirmed", "ended"), "--stage")
    key = current_settings().with_flags(webhook_secret=secret).webhook_secret
    hooks = [Webhook(url=u, secret=key, style="slack" if slack else "json", attempts=attempts) for u in webhook]
    store = store_for(db, create=False)
    try:
        incidents = store.incidents(IncidentFilter(since=time_option(since, "--since"), limit=10_000))
        results = deliver(store, incidents, hooks, stages_wanted=stages, base_url=base_url)
    finally:
        store.close()
    failed = [r for r in results if not r.ok]
    for r in results:
        typer.echo(f"{'sent' if r.ok else 'FAILED'} {r.incident} {r.stage} after {r.attempts} attempt(s)"
                   + (f": {r.error}" if r.error else ""), err=not r.ok)
    typer.echo(f"{len(results) - len(failed)} sent, {len(failed)} failed", err=True)
    if failed:
        raise typer.Exit(1)

