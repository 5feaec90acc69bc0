"""serve and demo: the web service, and the main job (a live replay of the reference case on the dashboard)."""

from __future__ import annotations

import os
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from observatory.cli.app import DbOption, app, current_settings, store_for
from observatory.errors import ConfigError
from observatory.incident import Incident
from observatory.store import IncidentFilter, Store

REFERENCE_SCENARIO = "pk-2023-12-2024-01.toml"


@app.command()
def serve(
    db: DbOption,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    detect_every: Annotated[float | None, typer.Option(
        help="Seconds between incremental detection runs (0: off). Default: [serve] detect_every, "
             "$OBSERVATORY_DETECT_EVERY, or 60.", show_default=False)] = None,
    admin_token: Annotated[str | None, typer.Option(
        help="Bearer token for analysts (annotate/review/dismiss). Default: [serve] admin_token or "
             "$OBSERVATORY_ADMIN_TOKEN.",
        show_default=False)] = None,
    webhook: Annotated[list[str] | None, typer.Option(
        help="POST each incident's confirmation and end here (repeatable); signed with --webhook-secret.",
        show_default=False)] = None,
    webhook_secret: Annotated[str | None, typer.Option(
        help="HMAC-SHA256 key for X-Observatory-Signature. Default: [alerts] webhook_secret or "
             "$OBSERVATORY_WEBHOOK_SECRET.",
        show_default=False)] = None,
    webhook_style: Annotated[str, typer.Option(help="json, slack (Slack/Mattermost) or matrix (a Matrix "
                                                    "m.notice with an HTML body).")]
    = "json",
    api_rate: Annotated[float | None, typer.Option(
        help="Requests per second per client address to the pages and API (0: no limit). Default: "
             "[serve] api_rate, $OBSERVATORY_API_RATE, or 20.", show_default=False)] = None,
    api_burst: Annotated[float | None, typer.Option(
        help="Requests one address may send at once above the rate. Default: [serve] api_burst, "
             "$OBSERVATORY_API_BURST, or 200.",
        show_default=False)] = None,
    max_connections_per_address: Annotated[int, typer.Option(
        help="Open connections one client address may hold; more are closed unanswered.")] = 100,
    max_connections: Annotated[int, typer.Option(help="Open connections in total.")] = 2000,
    header_timeout: Annotated[float, typer.Option(
        help="Seconds a client has to send a request's headers before its connection is closed.")] = 10.0,
    body_timeout: Annotated[float, typer.Option(
        help="Seconds a client has to send a request's body after its headers.")] = 120.0,
) -> None:
    """Run the dashboard, the JSON API, the collector and scheduled detection over one store.

    Pages: / (overview), /country/CC, /incident/ID, /incidents (search); API under /api/v1; /feed.atom,
    /metrics, /docs, /healthz. With --webhook, alerts go out after each detection run, never twice.

    Example: observatory serve --db obs.duckdb --port 8000 --webhook https://hooks.example.org/obs
    """
    import uvicorn

    from observatory.report.deliver import Webhook
    from observatory.service import alerting_detector
    from observatory.web import WebSettings, create_app
    from observatory.web.limits import API_RATE, ConnectionGuard, server_options

    run = current_settings().with_flags(admin_token=admin_token, detect_every=detect_every, api_rate=api_rate,
                                        api_burst=api_burst, webhook_secret=webhook_secret)
    if run.api_rate is None:
        run = run.with_flags(api_rate=API_RATE)  # the service's documented default (an embedded app has none)
    settings = WebSettings.from_settings(run)
    if min(max_connections_per_address, max_connections) < 1 or min(header_timeout, body_timeout) <= 0:
        raise ConfigError("connection limits must be at least 1 and timeouts positive")
    guard = ConnectionGuard(per_address=max_connections_per_address, total=max_connections,
                            header_timeout=header_timeout, body_timeout=body_timeout)
    hooks = [Webhook(url=u, secret=run.webhook_secret, style=webhook_style) for u in webhook or []]
    base = f"http://{_url_host(host)}:{port}/"
    sock = _listen(host, port)  # a busy port fails here, before anything says "serving"
    store = store_for(db, shared=True)  # other commands can use the store while it is served
    try:
        application = create_app(settings, store, **({"detector": alerting_detector(hooks, base)} if hooks else {}))
        typer.echo(f"observatory serving {db} at {base}", err=True)
        server = uvicorn.Server(uvicorn.Config(application, log_level="warning", access_log=False,
                                               **server_options(guard)))
        server.run(sockets=[sock])
    finally:
        store.close()
        sock.close()


def _listen(host: str, port: int) -> socket.socket:
    """The listening socket, bound now: a port in use is a one-line error, not a "serving at" then a failure."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # what uvicorn does: restarts need no wait
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc} (choose another --port, or "
                          "stop what holds it)") from None
    sock.set_inheritable(True)
    return sock


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


@dataclass(slots=True)
class _Watcher:
    """Prints each incident's steps (suspected, confirmed with its statement, ended) as detection saves them."""

    store: Store
    base_url: str
    echo: Callable[[str], None]
    seen: dict[str, str]

    def poll(self) -> None:
        from observatory.web.present import headline, view

        for inc in sorted(self.store.incidents(IncidentFilter(limit=10_000)), key=lambda i: i.start):
            before = self.seen.get(inc.id)
            if before == inc.status:
                continue
            self.seen[inc.id] = inc.status
            if inc.status == "ended" and before != "confirmed" and inc.confirmed_at is not None:
                # detection caught up only after the end (a fast replay): the confirmation still gets its line,
                # with the statement as it read then
                then = inc.with_(status="confirmed", end=None)
                self.echo(self._line(then, headline(then)))
                self.echo("    " + view(self.store, then, now=inc.confirmed_at).statement)
            self.echo(self._line(inc, headline(inc)))
            if inc.status in ("confirmed", "ended"):  # the statement when confirmed; the restoration when ended
                self.echo("    " + view(self.store, inc, now=self.store.latest_time()).statement)
            self.echo(f"    {self.base_url}incident/{inc.id}")

    @staticmethod
    def _line(inc: Incident, head: str) -> str:
        when = {"suspected": inc.start, "confirmed": inc.confirmed_at or inc.start, "ended": inc.end or inc.start}
        t = when.get(inc.status) or inc.start
        return f"[{t:%Y-%m-%d %H:%M} UTC] {inc.status.upper():9} {head}"


def _default_scenario() -> Path:
    here = Path(__file__).resolve().parents[2] / "scenarios" / REFERENCE_SCENARIO
    return here if here.exists() else Path("scenarios") / REFERENCE_SCENARIO


def _register_demo_probe(store: Store, scenario: Any = None) -> tuple[str, str]:
    """A probe credential for the replay, made the way `observatory probes add` makes one: a relay (it carries
    a whole simulated country of probes, each its own witness), bound to the scenario's country and networks."""
    from observatory.web import auth

    name = f"demo-{int(time.time())}"
    countries = list(getattr(scenario, "countries", ()))
    country = countries[0].code if len(countries) == 1 else None
    asns = sorted({a for c in countries for a in c.asns})
    created = auth.create_probe(store, name, country=country, asns=asns, relay=True)
    return created["token"], created["secret"]


def _probe_name(store: Store, token: str) -> str:
    from observatory.web import auth

    return auth.authenticate(store, f"Bearer {token}").name


@app.command()
def demo(
    db: Annotated[str | None, typer.Option("--db", help="Store for the demo (default: a fresh one in a temp dir).",
                                           show_default=False)] = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port (0: any free port).")] = 8000,
    speed: Annotated[str, typer.Option(
        help="Scenario seconds per wall second (3600: an hour a second), or 'max' for as fast as possible.")]
    = "3600",
    scenario: Annotated[Path | None, typer.Option(help="Scenario TOML (default: the reference case, "
                                                       "scenarios/pk-2023-12-2024-01.toml).", show_default=False)]
    = None,
    until_done: Annotated[bool, typer.Option("--until-done", help="Exit when the replay is over (default: keep "
                                                                   "serving until Ctrl-C).")] = False,
    duration: Annotated[float | None, typer.Option(help="Stop after this many seconds, replay done or not.")]
    = None,
    detect_every: Annotated[float, typer.Option(help="Seconds between detection runs during the replay.")] = 1.0,
) -> None:
    """The main job: replay the Pakistan Dec 2023 - Jan 2024 reference case through the collector, live.

    Starts the service on a fresh embedded store, registers a demo probe, streams the simulated measurements
    in accelerated time, and prints each disruption as it is suspected, confirmed (with its statement) and
    ended. Open the printed URL to watch the dashboard.

    Example: observatory demo --speed 7200 --port 8000
    """
    from observatory.simulate.output import stream_to_collector
    from observatory.simulate.scenario import load_scenario
    from observatory.web import WebSettings, create_app
    from observatory.web.server import ServerThread

    pace = _parse_speed(speed)
    sc = load_scenario(scenario or _default_scenario())
    tmp = None
    if db is None:
        tmp = tempfile.mkdtemp(prefix="observatory-demo-")
        db = os.path.join(tmp, "demo.duckdb")
    store = store_for(db, shared=True)
    settings = WebSettings.from_settings(current_settings(), detect_every_seconds=detect_every, poll_seconds=3,
                                         title="observatory demo")
    application = create_app(settings, store)
    scheduler = application.state.scheduler
    server = ServerThread(application, host, port)
    bound = server.start()
    url = f"http://{_url_host(host)}:{bound}/"
    echo = typer.echo
    echo(f"observatory demo: replaying {sc.name} ({sc.start:%d %b %Y} - {sc.end:%d %b %Y}) at "
         f"{'full' if pace is None else f'{pace:g}x'} speed")
    echo(f"store: {db}")
    echo(f"open {url}  (dashboard; Pakistan: {url}country/PK)")
    watcher = _Watcher(store, url, echo, {})
    done = threading.Event()
    failure: list[BaseException] = []

    def replay() -> None:
        try:
            token, secret = _register_demo_probe(store, sc)
            # the replay is the service's own: not held to the per-probe rate outside probes are (so that
            # --speed max is as fast as the store takes it)
            application.state.unlimited_probes = {_probe_name(store, token)}
            summary = stream_to_collector(sc, url, token, secret, speed=pace)
            echo(f"replay finished: {summary.measurements:,} measurements sent in {summary.seconds:.0f} s")
        except BaseException as exc:  # reported on the main thread
            failure.append(exc)
        finally:
            done.set()

    started = time.monotonic()
    threading.Thread(target=replay, name="observatory-replay", daemon=True).start()
    try:
        while True:
            finished = done.wait(0.5)
            watcher.poll()
            if finished:
                if failure:
                    raise failure[0]
                scheduler.run_once()  # the last measurements are detected before the summary
                watcher.poll()
                _summary(store, echo)
                if until_done:
                    break
                echo(f"still serving at {url}  (Ctrl-C to stop)")
                while duration is None or time.monotonic() - started < duration:
                    time.sleep(1)
                    watcher.poll()
                break
            if duration is not None and time.monotonic() - started > duration:
                echo(f"stopping after {duration:g} s (replay not finished)")
                break
    finally:
        server.stop()
        store.close()
        if tmp is not None and until_done:
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)


def _parse_speed(value: str) -> float | None:
    if value.strip().lower() == "max":
        return None
    try:
        pace = float(value)
    except ValueError:
        raise ConfigError(f"--speed {value!r}: a number of scenario seconds per second, or 'max'") from None
    if pace <= 0:
        raise ConfigError(f"--speed {value!r}: must be positive")
    return pace


def _summary(store: Store, echo: Callable[[str], None]) -> None:
    incidents = store.incidents(IncidentFilter(limit=10_000))
    confirmed = [i for i in incidents if i.confirmed_at is not None]
    echo(f"incidents: {len(incidents)} detected, {len(confirmed)} confirmed "
         f"(as of {datetime.now(UTC):%H:%M:%S} UTC)")
