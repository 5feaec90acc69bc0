"""signals import, pinger: outside-in signals into the store."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer

from observatory.cli.app import DbOption, app, store_for
from observatory.errors import ConfigError, ParseError
from observatory.signals import SignalPoint, read_signals_file

signals_app = typer.Typer(help="Outside-in signals (IODA, Cloudflare Radar, our pinger).", no_args_is_help=True)
app.add_typer(signals_app, name="signals")


@signals_app.command("import")
def import_signals(
    file: Annotated[Path, typer.Argument(help="CSV with header time,country,region,asn,signal,value.")],
    source: Annotated[str, typer.Option("--source", help="Where the series comes from, e.g. ioda, radar.")],
    db: DbOption,
) -> None:
    """Import external connectivity series; bad rows are reported with file:line and skipped.

    Example: observatory signals import ioda-pk.csv --source ioda --db obs.duckdb
    """
    source = source.strip()
    if not source or len(source) > 64:
        raise ConfigError("--source: give a short name such as ioda")
    if not file.is_file():
        raise ConfigError(f"{file}: no such file")
    good: list[SignalPoint] = []
    bad: list[ParseError] = []
    for item in read_signals_file(str(file), source=source):
        (bad if isinstance(item, ParseError) else good).append(item)  # type: ignore[arg-type]
    for err in bad[:20]:
        typer.echo(f"rejected {err}", err=True)
    store = store_for(db)
    try:
        result = store.insert_signals(good)
    finally:
        store.close()
    typer.echo(json.dumps({"read": len(good) + len(bad), "accepted": result.accepted,
                           "duplicates": result.duplicates, "rejected": len(bad)}))
    if not good:
        raise typer.Exit(1)


@app.command()
def pinger(
    blocks: Annotated[Path, typer.Option("--blocks", help="CSV: prefix,asn,country,region.")],
    db: DbOption,
    rounds: Annotated[int, typer.Option("--rounds", min=0, help="Rounds to run; 0 = forever.")] = 0,
    interval: Annotated[float, typer.Option("--interval", min=1.0, help="Seconds between rounds.")] = 600.0,
    rate: Annotated[float, typer.Option("--rate", min=0.1, max=10_000, help="Probes per second, at most.")] = 50.0,
    ports: Annotated[str, typer.Option("--ports", help="TCP ports for SYN probes.")] = "80,443",
    timeout: Annotated[float, typer.Option("--timeout", min=0.05, help="Seconds to wait for an answer.")] = 1.0,
    icmp: Annotated[bool, typer.Option("--icmp/--no-icmp", help="ICMP echo first (needs root).")] = True,
    detect: Annotated[bool, typer.Option("--detect/--no-detect", help="Run detection after each round.")] = True,
) -> None:
    """Probe a sample of each address block from outside, Trinocular-style, and store the share that answers.

    Run it outside the country. Only the listed blocks are ever probed, at most --rate probes per second.

    Example: observatory pinger --blocks pk-blocks.csv --interval 600 --rate 50
    """
    from observatory.signals.pinger import Pinger, default_prober, read_blocks

    try:
        port_list = [int(p) for p in ports.split(",") if p.strip()]
    except ValueError:
        raise ConfigError(f"--ports {ports!r}: expected numbers such as 80,443") from None
    if not port_list or any(not 0 < p < 65536 for p in port_list):
        raise ConfigError(f"--ports {ports!r}: expected ports between 1 and 65535")
    p = Pinger(read_blocks(str(blocks)), default_prober(port_list, timeout, icmp), rate=rate)
    store = store_for(db)
    try:
        done = 0
        while rounds == 0 or done < rounds:
            started = time.monotonic()
            points = p.run_round()
            store.insert_signals(points)
            if detect:
                from observatory.detect.run import run_detection

                run_detection(store)
            done += 1
            up = [pt for pt in points if pt.region is None and pt.asn is None]
            typer.echo(json.dumps({"round": done, "probes": len(p.sent),
                                   "countries": {pt.country: round(pt.value, 3) for pt in up}}))
            if rounds == 0 or done < rounds:
                time.sleep(max(0.0, interval - (time.monotonic() - started)))
    finally:
        store.close()
