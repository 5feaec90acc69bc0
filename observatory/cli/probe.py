"""probe, helper, probes add|list|revoke|purge: measuring from a network, the control vantage point, credentials."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import re
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import platformdirs
import typer

from observatory.cli.app import DbOption, FormatOption, app, check_choice, country_option, store_for
from observatory.errors import ConfigError

probes_app = typer.Typer(
    help="Probe credentials for the collector: add, list, revoke, purge.\n\n"
         "Example: observatory probes add lahore-ptcl-1 --db obs.duckdb",
    no_args_is_help=True,
)
app.add_typer(probes_app, name="probes")

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)?\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}


# Without the control helper's view from outside the network, a failure here cannot be told from the site being
# down everywhere: the verdict rules answer `unknown` rather than guess.
NO_HELPER_WARNING = ("warning: no --helper: every verdict will be `unknown`, because without a control "
                     "measurement from outside this network a failure cannot be told from the site being down "
                     "everywhere (run `observatory helper` on an uncensored machine and pass --helper URL)")


def parse_duration(text: str, flag: str = "--every") -> float:
    """'15m' -> 900.0; '30s', '1h', '2d'; a bare number is seconds."""
    m = _DURATION.match(text or "")
    if not m or float(m.group(1)) <= 0:
        raise ConfigError(f"{flag} {text!r}: expected a duration like 30s, 15m or 1h")
    return float(m.group(1)) * _UNITS[m.group(2)]


def load_targets(selection: str) -> list[str]:
    """A catalog selection (social, messaging, all, a platform id) or a file of URLs, one per line."""
    from observatory.catalog import resolve_targets

    path = Path(selection)
    if path.is_file():
        urls = [line.split("#", 1)[0].strip() for line in path.read_text().splitlines()]
        urls = [u for u in urls if u]
        bad = [u for u in urls if not u.startswith(("http://", "https://"))]
        if bad:
            raise ConfigError(f"{path}: not http(s) URLs: {', '.join(bad[:3])}")
        if not urls:
            raise ConfigError(f"{path}: no target URLs")
        return urls
    try:
        return resolve_targets(selection)
    except KeyError:
        raise ConfigError(f"--targets {selection!r}: not a file, and not social, messaging, video, control, "
                          "all or a platform id") from None


def _connect_map(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        left, sep, right = item.partition("=")
        if not sep or ":" not in left or ":" not in right:
            raise ConfigError(f"--connect {item!r}: expected IP:PORT=HOST:PORT")
        out[left.strip()] = right.strip()
    return out


def _asn(value: str | None, flag: str) -> int | None:
    from observatory.measurement import parse_asn

    if value is None:
        return None
    try:
        return parse_asn(value if value.upper().startswith("AS") else f"AS{value}", where=flag)
    except Exception as exc:
        raise ConfigError(str(exc)) from None


DEFAULT_TARGETS = "social"


@app.command()
def probe(
    targets: Annotated[str | None, typer.Option(help="social, messaging, video, control, all, a platform id, or "
                                                      "a FILE of URLs (one per line). Default: [probe] targets of "
                                                      "--config, else social.", show_default=False)] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Append measurements to this .jsonl file.")] = None,
    collector: Annotated[str | None, typer.Option(help="Collector base URL: measurements are spooled, then "
                                                       "uploaded (needs --token and --secret).")] = None,
    once: Annotated[bool, typer.Option("--once", help="Measure once and exit (the default).")] = False,
    every: Annotated[str | None, typer.Option(help="Measure repeatedly, e.g. 15m; runs until stopped.")] = None,
    concurrency: Annotated[int, typer.Option(min=1, max=1000, help="Targets measured at once.")] = 32,
    helper: Annotated[str | None, typer.Option(help="Control helper URL (observatory helper).")] = None,
    region: Annotated[str | None, typer.Option(help="Region the probe is in (annotations.region).")] = None,
    cc: Annotated[str | None, typer.Option("--cc", help="Country code (ISO 3166-1 alpha-2).")] = None,
    asn: Annotated[str | None, typer.Option(help="Network, e.g. AS17557 or 17557.")] = None,
    network_name: Annotated[str | None, typer.Option(help="Network's name.")] = None,
    resolver: Annotated[str | None, typer.Option(help="Resolver queried over UDP, IP:PORT (e.g. 8.8.8.8:53).")] = None,
    ca_file: Annotated[Path | None, typer.Option(help="CA bundle (PEM) to validate certificates with.")] = None,
    connect: Annotated[list[str] | None, typer.Option(help="Dial HOST:PORT when measuring IP:PORT "
                                                          "(IP:PORT=HOST:PORT; repeatable; for labs).")] = None,
    mmdb: Annotated[list[Path] | None, typer.Option(help="MaxMind/DB-IP .mmdb file(s) to locate the address "
                                                        "the helper reports (repeatable).")] = None,
    config: Annotated[Path | None, typer.Option(help="TOML file: [metadata] cc, asn, network_name, region...; "
                                                     "[probe] helper, collector, resolver, token, secret...")] = None,
    token: Annotated[str | None, typer.Option(envvar="OBSERVATORY_PROBE_TOKEN", help="Collector token.")] = None,
    secret: Annotated[str | None, typer.Option(envvar="OBSERVATORY_PROBE_SECRET", help="Signing secret.")] = None,
    spool: Annotated[Path | None, typer.Option(help="Spool directory (default: in the user data dir).")] = None,
    state_dir: Annotated[Path | None, typer.Option(help="Where probe_id is kept (default: user data dir).")] = None,
    timeout: Annotated[float, typer.Option(min=0.1, help="Timeout of each step (DNS, connect, TLS) in s; "
                                                        "HTTP gets twice that.")] = 5.0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output (for services).")] = False,
) -> None:
    """Measure the reachability of platforms from this network (OONI web_connectivity) and upload them.

    Each target gets DNS (system and --resolver), TCP, TLS, HTTP and a bounded download, compared with the
    control helper's view. The probe's own IP address is never written anywhere.

    Example: observatory probe --targets social --helper http://helper.example:8080/ --collector
    https://observatory.example/ --token T --secret S --cc PK --asn AS17557 --region Punjab --every 15m
    """
    from observatory.probe.metadata import ProbeMetadata, from_config, probe_id
    from observatory.probe.net import NetConfig

    settings: dict[str, Any] = {}
    meta = ProbeMetadata(cc=cc, asn=_asn(asn, "--asn"), network_name=network_name, region=region,
                         resolver_ip=resolver.rpartition(":")[0].strip("[]") if resolver else None)
    if config:
        file_meta, settings = from_config(config)
        meta = meta.merged(file_meta)
    collector = collector or settings.get("collector")
    helper = helper or settings.get("helper")
    resolver = resolver or settings.get("resolver")
    token = token or settings.get("token")
    secret = secret or settings.get("secret")
    if once and every:
        raise ConfigError("--once and --every: choose one")
    every = every or (None if once else settings.get("every"))
    period = parse_duration(every) if every else None
    if collector and not (token and secret):
        raise ConfigError("--collector needs --token and --secret (from `observatory probes add NAME`)")
    if meta.cc:
        meta = dataclasses.replace(meta, cc=country_option(meta.cc, "--cc"))
    if not helper and not quiet:
        typer.echo(NO_HELPER_WARNING, err=True)
    # a flag given wins over the file: the default ("social") applies only when neither names targets
    urls = load_targets(str(targets or settings.get("targets") or DEFAULT_TARGETS))
    if resolver:
        from observatory.probe.net import split_endpoint

        split_endpoint(resolver)
    data_dir = Path(platformdirs.user_data_dir("observatory"))
    net = NetConfig(resolver=resolver, ca_file=str(ca_file or settings.get("ca_file") or "") or None,
                    connect_map=_connect_map(connect or []), dns_timeout=timeout, connect_timeout=timeout,
                    tls_timeout=timeout, http_timeout=2 * timeout)
    mmdb_paths = list(mmdb or []) + [Path(p) for p in settings.get("mmdb", [])]
    for p in mmdb_paths:
        if not p.is_file():
            raise ConfigError(f"--mmdb {p}: no such file")
    pid = probe_id(state_dir or data_dir)
    spool_dir = spool or Path(settings.get("spool") or data_dir / "spool")

    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per helper request is noise
    show = not quiet and sys.stderr.isatty()
    cycle = 0
    while True:
        started = time.monotonic()
        cycle += 1
        _cycle(urls, net=net, meta=meta, pid=pid, helper=helper, mmdb=mmdb_paths, concurrency=concurrency,
               out=out, collector=collector, token=token, secret=secret, spool_dir=spool_dir, show=show,
               quiet=quiet)
        if period is None:
            return
        wait = max(0.0, period - (time.monotonic() - started))
        if not quiet:
            typer.echo(f"cycle {cycle} done; next in {wait:.0f}s", err=True)
        time.sleep(wait)


def _cycle(urls: list[str], *, net: Any, meta: Any, pid: str, helper: str | None, mmdb: list[Path],
           concurrency: int, out: Path | None, collector: str | None, token: str | None, secret: str | None,
           spool_dir: Path, show: bool, quiet: bool) -> None:
    """One round: measure every target, keep each measurement (spool/file/stdout), then upload."""
    from observatory.probe.runner import HelperClient, Runner
    from observatory.probe.spool import Spool
    from observatory.probe.upload import Uploader

    spool = Spool(spool_dir) if collector else None
    sink = open(out, "ab") if out else None  # noqa: SIM115
    counts = {"measured": 0}
    progress = _Progress(len(urls)) if show else None

    def keep(doc: dict[str, Any]) -> None:
        line = json.dumps(doc, separators=(",", ":")).encode() + b"\n"
        if spool is not None:
            spool.put(doc)
        if sink is not None:
            sink.write(line)
            sink.flush()
        if spool is None and sink is None:
            sys.stdout.buffer.write(line)
            sys.stdout.flush()
        counts["measured"] += 1
        if progress:
            progress.advance(doc)

    async def measure() -> None:
        client = HelperClient(helper) if helper else None
        runner = Runner(net=net, metadata=meta, probe_id=pid, helper=client, mmdb=mmdb)
        try:
            await runner.run(urls, concurrency=concurrency, on_done=keep)
        finally:
            if client:
                await client.aclose()

    try:
        asyncio.run(measure())
    finally:
        if progress:
            progress.close()
        if sink is not None:
            os.fsync(sink.fileno())
            sink.close()
    if spool is not None and collector and token and secret:
        try:
            # few retries per round: the next round retries anyway, and measuring must not wait on uploads
            # (a probe in a shutdown keeps measuring into its spool)
            report = Uploader(spool, collector, token=token, secret=secret, retries=2).upload_all()
        except Exception as exc:  # a collector answering nonsense: keep the spool, try next round
            logging.getLogger("observatory.probe").warning("upload failed: %s; %d measurements stay spooled",
                                                           exc, len(spool))
            return
        msg = (f"measured {counts['measured']}; uploaded {report.accepted} new, {report.duplicates} duplicate, "
               f"{report.rejected} rejected; {report.remaining} still spooled")
        if report.error:
            logging.getLogger("observatory.probe").warning("%s (upload stopped: %s)", msg, report.error)
        elif not quiet:
            typer.echo(msg, err=True)
    elif not quiet and out:
        typer.echo(f"measured {counts['measured']} -> {out}", err=True)


class _Progress:
    def __init__(self, total: int) -> None:
        from rich.progress import Progress

        self.bar = Progress(transient=True)
        self.task = self.bar.add_task("measuring", total=total)
        self.bar.start()

    def advance(self, doc: dict[str, Any]) -> None:
        self.bar.update(self.task, advance=1, description=str(doc.get("input", ""))[:40])

    def close(self) -> None:
        self.bar.stop()


@app.command()
def helper(
    listen: Annotated[str, typer.Option(help="HOST:PORT to listen on.")] = "127.0.0.1:8080",
    resolver: Annotated[str | None, typer.Option(help="Resolve with this resolver over UDP (IP:PORT) "
                                                      "instead of the system's.")] = None,
    ca_file: Annotated[Path | None, typer.Option(help="CA bundle (PEM) to validate certificates with.")] = None,
    connect: Annotated[list[str] | None, typer.Option(help="Dial HOST:PORT when measuring IP:PORT "
                                                          "(IP:PORT=HOST:PORT; repeatable).")] = None,
    timeout: Annotated[float, typer.Option(min=0.1, help="Timeout of each step in seconds.")] = 5.0,
) -> None:
    """Run the control test helper: measures a URL from here, for probes inside censored networks.

    It keeps nothing and logs no client addresses; it tells each probe the address it came from, for the
    probe's own metadata lookup.

    Example: observatory helper --listen 0.0.0.0:8080
    """
    import uvicorn

    from observatory.probe.helper import make_helper_app
    from observatory.probe.net import NetConfig, split_endpoint

    host, port = split_endpoint(listen)
    if resolver:
        split_endpoint(resolver)
    cfg = NetConfig(resolver=resolver, ca_file=str(ca_file) if ca_file else None,
                    connect_map=_connect_map(connect or []), dns_timeout=timeout, connect_timeout=timeout,
                    tls_timeout=timeout, http_timeout=2 * timeout)
    typer.echo(f"control helper on http://{listen}/", err=True)
    uvicorn.run(make_helper_app(cfg), host=host, port=port, access_log=False, log_level="warning")


@probes_app.command("add")
def probes_add(
    name: Annotated[str, typer.Argument(help="A name for the probe.")],
    db: DbOption,
    country: Annotated[str | None, typer.Option(
        "--country", help="The country it measures from (ISO code): uploads claiming another are refused.",
        show_default=False)] = None,
    asn: Annotated[list[str] | None, typer.Option(
        "--asn", help="A network it measures from (17557 or AS17557), repeatable: uploads claiming another "
                      "are refused.", show_default=False)] = None,
    relay: Annotated[bool, typer.Option(
        "--relay", help="It relays many probes (a replay, a partner's collector): their measurements count by "
                        "the probe ids they carry, and it has no per-probe quota. Only for sources you trust.")]
    = False,
    format: Annotated[str, typer.Option("--format", "-f", help="json (for scripts) or text.")] = "json",
) -> None:
    """Register a probe; prints its token and secret (shown once: the token is stored hashed).

    Everything it uploads counts as one witness, whatever probe ids the measurements claim.

    Example: observatory probes add lahore-ptcl-1 --country PK --asn 17557 --db obs.duckdb
    """
    from observatory.web.auth import create_probe

    check_choice(format, ("json", "text"), "--format")
    asns: list[int] = []
    for value in asn or []:
        number = _asn(value, "--asn")
        if number is not None:
            asns.append(number)
    country = country_option(country)
    store = store_for(db)
    try:
        _refuse_revoked_name(store, name)
        created = create_probe(store, name, country=country, asns=asns, relay=relay)
    finally:
        store.close()
    if format == "json":
        typer.echo(json.dumps(created))
    else:
        typer.echo(f"probe {name.strip()} registered (the token is shown once: keep it now)\n"
                   f"token  {created['token']}\nsecret {created['secret']}")


def _refuse_revoked_name(store: Any, name: str) -> None:
    """A revoked probe keeps its name, so its past measurements keep one owner: say so, with advice that works
    (the store's generic "revoke it or choose another name" is no help for a name already revoked)."""
    if any(p.name == name.strip() and p.revoked for p in store.probes()):
        raise ConfigError(f"probe name {name.strip()!r} belongs to a revoked probe and stays reserved: "
                          f"choose another name, e.g. {name.strip()}-2")


@probes_app.command("list")
def probes_list(db: DbOption, format: FormatOption = "table") -> None:
    """List registered probes (names, creation time, revoked or not; never tokens or secrets).

    Example: observatory probes list --db obs.duckdb --format json
    """
    check_choice(format, ("table", "json"), "--format")
    store = store_for(db, read_only=True, create=False)
    try:
        creds = store.probes()
    finally:
        store.close()
    rows = [{"name": c.name, "created": c.created.strftime("%Y-%m-%dT%H:%M:%SZ"), "revoked": c.revoked,
             "country": c.country, "asns": list(c.asns), "relay": c.relay}
            for c in creds]
    if format == "json":
        typer.echo(json.dumps(rows))
        return
    for c, r in zip(creds, rows, strict=True):
        where = " ".join([c.country or "any country", *(f"AS{a}" for a in c.asns)])
        typer.echo(f"{r['name']}\t{r['created']}\t{'revoked' if c.revoked else 'active'}\t{where}"
                   f"{chr(9) + 'relay' if c.relay else ''}")


@probes_app.command("revoke")
def probes_revoke(name: Annotated[str, typer.Argument(help="The probe's name.")], db: DbOption) -> None:
    """Revoke a probe: its uploads are refused (401) from now on.

    Example: observatory probes revoke lahore-ptcl-1 --db obs.duckdb
    """
    store = store_for(db, create=False)
    try:
        found = store.revoke_probe(name)
    finally:
        store.close()
    if not found:
        raise ConfigError(f"no probe named {name!r}")
    typer.echo(f"revoked {name}")


@probes_app.command("purge")
def probes_purge(name: Annotated[str, typer.Argument(help="The probe's name.")], db: DbOption,
                 detect: Annotated[bool, typer.Option(
                     "--detect/--no-detect", help="Run detection again over the time it covered.")] = True) -> None:
    """Remove everything a probe's credential uploaded (and its heartbeats), then run detection again so that
    incidents resting on its measurements go. The credential itself stays (revoke it too, if it is forged).

    Example: observatory probes purge lahore-ptcl-1 --db obs.duckdb
    """
    from observatory.store.base import credential_of

    store = store_for(db, create=False)
    try:
        if not any(p.name == name for p in store.probes()):
            raise ConfigError(f"no probe named {name!r}")
        before = store.count()
        spans = store.purge_credential(credential_of(name))
        removed = before - store.count()
        summary: dict[str, Any] = {"probe": name, "removed": removed,
                                   "countries": {cc: [lo.isoformat(), hi.isoformat()]
                                                 for cc, (lo, hi) in sorted(spans.items())}}
        if detect and spans:
            summary["incidents_removed"] = _redetect(store, spans)
    finally:
        store.close()
    typer.echo(json.dumps(summary))


def _redetect(store: Any, spans: dict[str, tuple[Any, Any]]) -> list[str]:
    """Detection again after a purge; the ids of the incidents it removed.

    A purge adds no rows, so the incremental run would see nothing: the full run re-judges every window (its
    incidents keep their ids). An incident of a purged country and time that it no longer finds goes too,
    even where nothing else is left to look at, unless an analyst reviewed it."""
    from observatory.service import run_detection, stored_incidents

    before = {i.id: i for i in stored_incidents(store)}
    found = {i.id for i in run_detection(store, full=True).saved}
    stale = [i.id for i in stored_incidents(store) if i.id not in found and i.review is None
             and i.country in spans and i.start <= spans[i.country][1]
             and (i.end is None or i.end >= spans[i.country][0])]
    store.delete_incidents(stale)
    return sorted(set(before) - {i.id for i in stored_incidents(store)})
