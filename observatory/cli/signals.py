"""signals import, pinger: outside-in signals into the store."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer

from observatory.cli.app import DbOption, app, check_choice, country_option, store_for
from observatory.errors import ConfigError, ParseError
from observatory.signals import SignalPoint, parse_asn
from observatory.signals.formats import Entity, read_signal_file

signals_app = typer.Typer(help="Outside-in signals (IODA, Cloudflare Radar, our pinger).", no_args_is_help=True)
app.add_typer(signals_app, name="signals")


@signals_app.command("import")
def import_signals(
    file: Annotated[Path, typer.Argument(help="Our CSV (time,country,region,asn,signal,value), IODA's dashboard CSV "
                                              "export, IODA's API v2 JSON or Cloudflare Radar's API JSON.")],
    db: DbOption,
    source: Annotated[str | None, typer.Option("--source", help="Where the series comes from, e.g. ioda, radar "
                                                                "(default: the format's source).")] = None,
    country: Annotated[str | None, typer.Option("--country", help="Country of the series, when the file does not "
                                                                  "say (IODA's export, Radar's JSON).")] = None,
    asn: Annotated[str | None, typer.Option("--asn", help="Network of the series, e.g. AS44244.")] = None,
    region: Annotated[str | None, typer.Option("--region", help="Region of the series.")] = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="json (for scripts) or text.")] = "json",
) -> None:
    """Import external connectivity series, format recognised by content; bad rows are reported with file:line
    and skipped. A file that is none of the formats, a source's error answer, or a file whose country cannot be
    known is refused in one line (exit 2) and nothing is stored.

    Example: observatory signals import ioda-pk.csv --country PK --db obs.duckdb
    """
    from observatory.service import note_signal_span

    check_choice(fmt, ("json", "text"), "--format")
    if source is not None:
        source = source.strip()
        if not source or len(source) > 64:
            raise ConfigError("--source: give a short name such as ioda")
    if not file.is_file():
        raise ConfigError(f"{file}: no such file")
    entity = _entity(country, asn, region)
    found = read_signal_file(str(file), source=source, entity=entity)
    good = [p for p in found.points if isinstance(p, SignalPoint)]
    bad = [p for p in found.points if isinstance(p, ParseError)]
    for err in bad[:20]:
        typer.echo(f"rejected {err}", err=True)
    if not good:
        raise ParseError(f"no usable point in this {found.format} file ({len(bad)} rejected)", where=str(file))
    store = store_for(db)
    try:
        result = store.insert_signals(good)
        note_signal_span(store, min(p.time for p in good), max(p.time for p in good))
    finally:
        store.close()
    series = sorted({p.signal for p in good})
    summary = {"format": found.format, "source": good[0].source, "country": good[0].country,
               "signals": series, "read": len(good) + len(bad),
               "accepted": result.accepted, "duplicates": result.duplicates, "rejected": len(bad)}
    if fmt == "json":
        typer.echo(json.dumps(summary))
    else:
        typer.echo(f"{found.format}: {result.accepted:,} points stored in {len(series)} series "
                   f"({', '.join(series)}) for {good[0].country}; {result.duplicates:,} duplicates, "
                   f"{len(bad):,} rejected")
    if bad:
        raise typer.Exit(1)  # done, the good part kept, but some rows were rejected (docs/contracts.md's exit codes)


def _entity(country: str | None, asn: str | None, region: str | None) -> Entity:
    cc = country_option(country)
    try:
        network = parse_asn(asn) if asn else None
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    name = region.strip() if region else None
    if name is not None and not 0 < len(name) <= 128:
        raise ConfigError("--region: give a name of at most 128 characters")
    return Entity(country=cc, region=name or None, asn=network)


@signals_app.command("list")
def list_signals(
    db: DbOption,
    fmt: Annotated[str, typer.Option("--format", "-f", help="table or json.")] = "table",
) -> None:
    """The stored signal series: source, signal, entity, span and number of points.

    Example: observatory signals list --db obs.duckdb
    """
    check_choice(fmt, ("table", "json"), "--format")
    store = store_for(db, read_only=True, create=False)
    try:
        rows = store.signal_series()
    finally:
        store.close()
    if fmt == "json":
        typer.echo(json.dumps([r.as_json() for r in rows]))
        return
    if not rows:
        typer.echo("no signals stored")
        return
    typer.echo(f"{'source':<10} {'signal':<18} {'country':<7} {'network':<10} {'region':<16} "
               f"{'first (UTC)':<17} {'last (UTC)':<17} {'points':>7}")
    for r in rows:
        typer.echo(f"{r.source[:10]:<10} {r.signal[:18]:<18} {r.country:<7} {(f'AS{r.asn}' if r.asn else '-'):<10} "
                   f"{(r.region or '-')[:16]:<16} {r.first:%Y-%m-%d %H:%M} {r.last:%Y-%m-%d %H:%M} {r.points:>7}")


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
                from observatory.service import run_detection

                run_detection(store)
            done += 1
            up = [pt for pt in points if pt.region is None and pt.asn is None]
            typer.echo(json.dumps({"round": done, "probes": len(p.sent),
                                   "countries": {pt.country: round(pt.value, 3) for pt in up}}))
            if rounds == 0 or done < rounds:
                time.sleep(max(0.0, interval - (time.monotonic() - started)))
    finally:
        store.close()
