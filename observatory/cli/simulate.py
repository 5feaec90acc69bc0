"""simulate: a scenario file -> OONI-format measurements (file, stdout or collector) and the ground truth."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from observatory.cli.app import app, check_choice
from observatory.errors import ConfigError
from observatory.simulate import ACTIVITIES, DEDICATED, load_scenario
from observatory.simulate.output import stream_to_collector, write_simulation, write_truth


@app.command()
def simulate(
    scenario: Annotated[Path, typer.Argument(help="Scenario TOML file (see scenarios/ and docs/contracts.md).")],
    out: Annotated[
        str | None, typer.Option("--out", "-o", help="Output .jsonl or .jsonl.gz, or - for stdout.")
    ] = None,
    truth: Annotated[
        Path | None, typer.Option("--truth", help="Where to write the ground truth (JSON).")
    ] = None,
    activity: Annotated[
        str, typer.Option(help="Probe population: dedicated (ours) or volunteer (OONI-like).")
    ] = DEDICATED,
    speed: Annotated[
        float | None,
        typer.Option(help="Replay N scenario-seconds per wall-second (default: as fast as possible)."),
    ] = None,
    collector: Annotated[
        str | None,
        typer.Option(help="POST to this collector's /api/v1/measurements instead of writing --out."),
    ] = None,
    token: Annotated[str | None, typer.Option(help="Probe token for --collector.")] = None,
    secret: Annotated[
        str | None, typer.Option(help="Probe secret for --collector (signs each batch).")
    ] = None,
) -> None:
    """Simulate probes measuring platforms over days, with the scenario's disruptions, and write the truth.

    Output lines are in upload order (late and duplicate uploads included); the same scenario and seed give
    byte-identical output. The summary goes to stderr.

    Example: observatory simulate scenarios/pk-2023-12-2024-01.toml --out pk.jsonl.gz --truth pk.truth.json
    """
    check_choice(activity, ACTIVITIES, "--activity")
    sc = load_scenario(scenario)
    if collector is not None:
        if out is not None:
            raise ConfigError("give --out or --collector, not both")
        if not token or not secret:
            raise ConfigError("--collector needs --token and --secret (from `observatory probes add NAME --relay`)")
        if truth is not None:
            write_truth(sc, truth)
        summary = stream_to_collector(sc, collector, token, secret, speed=speed, activity=activity)
        where = collector
    else:
        if out is None:
            raise ConfigError("--out FILE.jsonl[.gz] (or - for stdout) is required, or --collector URL")
        summary = write_simulation(sc, out=out, truth_path=truth, activity=activity, speed=speed)
        where = out
    typer.echo(
        f"simulated {summary.measurements:,} measurements of {sc.name} ({activity}) to {where} "
        f"in {summary.seconds:.1f}s ({summary.per_second:,.0f}/s)"
        + (f"; truth: {len(sc.events)} incidents in {truth}" if truth else ""),
        err=True,
    )
