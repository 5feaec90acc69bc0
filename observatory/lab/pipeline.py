"""`lab run`: the whole chain on real packets. Probes in the ISPs' regions measure through the censor, upload
to the collector, the detector runs incrementally, and at the end the incidents are compared with the events.

The collector runs in this process, next to the store and the detector, on a socket made inside the world
namespace (`netns.listen_in`), so the probes reach it at a world address and nothing else holds the store.
The control helper (`observatory helper`) runs in the world namespace too. Probes are real `observatory probe
--every` processes, one per probe of the scenario, each in its region's namespace, trusting the lab's CA.
The outside-in pinger (`lab.outside`) probes the regions' customer blocks from the world, one round per
interval; detection runs after each round, fusing its signals and the collector's heartbeats with the probes'.
"""

from __future__ import annotations

import os
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from observatory import catalog
from observatory.errors import LabError
from observatory.incident import Incident
from observatory.lab import netns
from observatory.lab.outside import OutsideIn, OutsideReport, signal_config
from observatory.lab.plan import COLLECTOR_ADDR, HELPER_ADDR, LabPlan
from observatory.lab.runner import Lab, up
from observatory.lab.verify import Verification, expected_incidents, render, verify
from observatory.settings import Settings

Echo = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class DetectionPass:
    """One detection pass during the run: when it finished, after which outside-in round, what was stored."""

    time: datetime
    round: int | None
    incidents: tuple[Incident, ...]


@dataclass
class RunResult:
    t0: datetime
    incidents: list[Incident]
    verification: Verification
    db: str
    table: str = ""
    outside: OutsideReport | None = None
    passes: list[DetectionPass] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.verification.ok


@dataclass
class _Http:
    """uvicorn serving one app on sockets we made (one inside the world namespace)."""

    app: Any
    sockets: list[Any]
    server: Any = None
    thread: threading.Thread | None = None

    def start(self) -> None:
        import uvicorn

        self.server = uvicorn.Server(uvicorn.Config(self.app, log_level="warning", lifespan="on",
                                                    timeout_graceful_shutdown=2))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": self.sockets},
                                       name="lab-collector", daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise LabError("the collector did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.server is not None:
            self.server.should_exit = True
        if self.thread is not None:
            self.thread.join(timeout=10)
        for s in self.sockets:
            s.close()


def detect_config(plan: LabPlan) -> Any:
    """The detector's knobs at the lab's time scale: one bucket per probe interval."""
    from observatory.detect import DetectConfig

    interval = int(plan.interval_s)
    # two probes per network give a bucket little weight: at the default end threshold a network's series
    # would need six clean buckets to end, longer than a lab run leaves after its last event. The end is
    # refined back to the last disrupted bucket anyway, so a lower threshold only makes it known sooner.
    return DetectConfig(bucket_seconds=interval, end_grace_seconds=3 * interval, merge_gap_seconds=2 * interval,
                        baseline_seconds=int(plan.duration_s) + 3600, end_threshold=5.0)


def targets_file(plan: LabPlan, directory: Path) -> Path:
    """The probes' target list: the catalog URLs of the scenario's platforms."""
    urls = [u for p in plan.targets for u in catalog.get(p).urls[:1]]
    path = directory / "targets.txt"
    path.write_text("\n".join(urls) + "\n")
    return path


def _observatory() -> list[str]:
    """The `observatory` command of this very installation (the lab runs as root, often outside the venv)."""
    return [sys.executable, "-m", "observatory"]


def _register_probe(store: Any, name: str) -> tuple[str, str]:
    from observatory.web import auth

    created = auth.create_probe(store, name)
    return created["token"], created["secret"]


def _start_probes(lab: Lab, store: Any, targets: Path, echo: Echo) -> None:
    plan, state = lab.plan, lab.state
    env = {**os.environ, "SSL_CERT_FILE": str(lab.ca_bundle)}
    env.pop("OBSERVATORY_DB", None)
    for net in plan.networks:
        for k, region in enumerate(net.probe_regions()):
            r = net.regions.index(region)
            name = f"lab-{plan.lab_id}-i{net.index}-p{k}"
            token, secret = _register_probe(store, name)
            home = Path(state.state_dir) / "probes" / name
            home.mkdir(parents=True, exist_ok=True)
            argv = [*_observatory(), "probe", "--targets", str(targets), "--every", f"{plan.interval_s:g}s",
                    "--collector", f"http://{COLLECTOR_ADDR}/", "--helper", f"http://{HELPER_ADDR}/",
                    "--token", token, "--secret", secret, "--region", region, "--cc", net.country,
                    "--asn", str(net.asn), "--network-name", net.name, "--resolver", f"{net.resolver}:53",
                    "--ca-file", str(lab.ca_bundle), "--spool", str(home / "spool"), "--state-dir", str(home),
                    "--quiet"]
            netns.spawn(state, f"probe-{name}", lab.region_ns(net, r), argv, log=home / "probe.log",
                        env={**env, "HOME": str(home), "XDG_DATA_HOME": str(home), "XDG_CONFIG_HOME": str(home)})
    echo(f"started {sum(n.probes for n in plan.networks)} probes, every {plan.interval_s:g}s")


def _start_helper(lab: Lab) -> None:
    env = {**os.environ, "SSL_CERT_FILE": str(lab.ca_bundle)}
    argv = [*_observatory(), "helper", "--listen", f"{HELPER_ADDR}:80", "--ca-file", str(lab.ca_bundle)]
    netns.spawn(lab.state, "helper", lab.world_ns, argv, log=Path(lab.state.state_dir) / "helper.log", env=env)
    deadline = time.monotonic() + 20
    while f"{HELPER_ADDR}:80" not in netns.run(["ss", "-Hltn"], ns=lab.world_ns, check=False).stdout:
        if time.monotonic() > deadline:
            log = (Path(lab.state.state_dir) / "helper.log").read_text()[-800:]
            raise LabError(f"the control helper did not start in {lab.world_ns}: {log}")
        time.sleep(0.1)


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM and SIGINT tear the lab down like Ctrl-C does, even when SIGINT came in ignored (a job started
    in the background by a shell ignores it, and Python then never raises KeyboardInterrupt)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    old = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, previous in old.items():
            signal.signal(sig, previous)


def run(plan: LabPlan, *, db: str | None = None, echo: Echo = print, dashboard: tuple[str, int] | None = None,
        tls_mode: str = "reset", tolerance_intervals: float = 2.0, outside_in: bool = True,
        settings: Settings | None = None) -> RunResult:
    """Brings the lab up, runs the scenario to its end, compares, and always tears everything down.
    `outside_in`: run the pinger from the world and fuse its signals (the default). `settings`: the run's
    (observatory.settings; the defaults when None), for the store and the dashboard."""
    from observatory.service import run_detection
    from observatory.store import IncidentFilter, open_store, store_settings
    from observatory.web import WebSettings, create_app

    db = db or str(Path(tempfile.mkdtemp(prefix=f"observatory-lab-{plan.lab_id}-")) / "lab.duckdb")
    store = open_store(db, settings=store_settings(settings or Settings()))
    http: _Http | None = None
    lab: Lab | None = None
    with _sigterm_as_interrupt():
        try:
            t_up = time.monotonic()
            lab = up(plan, tls_mode=tls_mode)
            echo(f"lab {plan.lab_id} up in {time.monotonic() - t_up:.1f}s: {len(lab.state.namespaces)} namespaces, "
                 f"store {db}")
            app = create_app(WebSettings.from_settings(settings or Settings(), detect_every_seconds=0), store,
                             detector=None)
            sockets = [netns.listen_in(lab.world_ns, COLLECTOR_ADDR, 80)]
            if dashboard:
                import socket

                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sockets.append(s)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    s.bind(dashboard)
                except OSError as exc:
                    for opened in sockets:
                        opened.close()
                    raise LabError(f"--dashboard {dashboard[0]}:{dashboard[1]}: cannot listen there: {exc}") from exc
                s.listen(64)
            http = _Http(app, sockets)
            http.start()
            if dashboard:
                echo(f"dashboard: http://{dashboard[0]}:{sockets[-1].getsockname()[1]}/")
            _start_helper(lab)
            _start_probes(lab, store, targets_file(plan, Path(lab.state.state_dir)), echo)
            timeline = _timeline(lab, store, run_detection, detect_config(plan), echo, outside_in=outside_in)
            censorship = timeline.censor
            t0 = censorship.t0
            # the last uploads (a region back from a shutdown sends its spool) and a final detection
            time.sleep(min(plan.interval_s, 10))
            run_detection(store, config=detect_config(plan), signal_config=signal_config(plan))
            incidents = store.incidents(IncidentFilter(since=t0 - timedelta(minutes=5), limit=10_000))
            v = verify(expected_incidents(plan, t0, censorship.actual), incidents,
                       timedelta(seconds=tolerance_intervals * plan.interval_s))
            table = render(v, t0)
            echo(table)
            report = timeline.outside.report if timeline.outside else None
            if report is not None:
                echo(f"pinger: {len(report.rounds)} rounds, {report.packets} packets counted on the wire, "
                     f"peak {report.peak_rate():.1f}/s (limit {report.rate:g}/s), "
                     f"{report.stray_echo_requests} echo requests outside the country")
            return RunResult(t0=t0, incidents=incidents, verification=v, db=db, table=table, outside=report,
                             passes=timeline.passes)
        finally:
            if lab is not None:
                lab.censor.revert_all()
                for role in [r for r in lab.state.pids if r.startswith("probe-")]:
                    netns.stop_role(lab.state, role)
            if http is not None:
                http.stop()
            if lab is not None:
                problems = lab.down()
                if problems:
                    echo("teardown left: " + "; ".join(problems))
            store.close()


class _Censorship(threading.Thread):
    """Applies and lifts the events at their offsets, on its own thread so that a slow detection pass on
    a loaded machine never delays the censor; records when each event really started and ended."""

    def __init__(self, lab: Lab, echo: Echo) -> None:
        super().__init__(name="lab-censor", daemon=True)
        self.lab = lab
        self.echo = echo
        self.t0 = datetime.now(UTC)
        self.start_mono = time.monotonic()
        self.applied: dict[int, datetime] = {}
        self.actual: dict[int, tuple[datetime, datetime]] = {}
        self.error: BaseException | None = None
        self.stop = threading.Event()

    def run(self) -> None:
        plan = self.lab.plan
        steps = sorted([(e.end_s, 0, "revert", e) for e in plan.events]
                       + [(e.start_s, 1, "apply", e) for e in plan.events], key=lambda s: (s[0], s[1]))
        try:
            for at, _, action, ev in steps:
                if self.stop.wait(max(0.0, self.start_mono + at - time.monotonic())):
                    return
                (self.lab.censor.apply if action == "apply" else self.lab.censor.revert)(ev)
                now = datetime.now(UTC)
                if action == "apply":
                    self.applied[ev.index] = now
                else:
                    self.actual[ev.index] = (self.applied[ev.index], now)
                label = f"{ev.kind}/{ev.technique or '-'} {ev.country or 'world'} {','.join(ev.platforms) or 'all'}"
                self.echo(f"{_offset(self.t0, now)} censor {'starts' if action == 'apply' else 'ends'}: {label}")
        except BaseException as exc:  # reported by the main thread, which tears the lab down
            self.error = exc


def _offset(t0: datetime, t: datetime) -> str:
    s = int((t - t0).total_seconds())
    return f"+{s // 60}m{s % 60:02d}s"


@dataclass
class _Timeline:
    censor: _Censorship
    outside: OutsideIn | None
    passes: list[DetectionPass]


def _timeline(lab: Lab, store: Any, run_detection: Any, cfg: Any, echo: Echo, *, outside_in: bool) -> _Timeline:
    """Runs the censor's schedule to the scenario's end; detection runs after each outside-in round (once
    per probe interval; on the interval itself when there is no pinger or a round is late)."""
    plan = lab.plan
    censor = _Censorship(lab, echo)
    outside = OutsideIn(plan, lab.world_ns, store, censor.start_mono, echo=echo) if outside_in else None
    sig_cfg = signal_config(plan)
    censor.start()
    if outside is not None:
        outside.start()
    seen: set[str] = set()
    passes: list[float] = []
    timeline = _Timeline(censor, outside, [])
    try:
        next_detect = censor.start_mono + plan.interval_s * (1.5 if outside else 1.0)
        end = censor.start_mono + plan.duration_s
        while time.monotonic() < end:
            if censor.error is not None:
                raise LabError(f"the censor failed: {censor.error}") from censor.error
            if outside is not None and outside.error is not None:
                raise LabError(f"the outside-in pinger failed: {outside.error}") from outside.error
            fresh = outside is not None and outside.fresh.is_set()
            if fresh or time.monotonic() >= next_detect:
                if outside is not None:
                    outside.fresh.clear()
                t = time.monotonic()
                next_detect = t + plan.interval_s * (1.5 if outside else 1.0)
                run_detection(store, config=cfg, signal_config=sig_cfg)
                passes.append(time.monotonic() - t)
                found = store.incidents(_filter(censor.t0))
                rounds = outside.report.rounds if outside is not None else []
                timeline.passes.append(DetectionPass(time=datetime.now(UTC), incidents=tuple(found),
                                                     round=rounds[-1].index if rounds else None))
                for inc in found:
                    key = f"{inc.id}/{inc.status}"
                    if key not in seen:
                        seen.add(key)
                        echo(f"{_offset(censor.t0, datetime.now(UTC))} detector: {inc.status} {inc.kind} "
                             f"{','.join(inc.techniques) or '-'} {inc.scope} {inc.country or 'world'} "
                             f"{','.join(inc.platforms) or 'all'} [{inc.id}]")
            time.sleep(0.2)
        censor.join(timeout=30)
    finally:
        censor.stop.set()
        if outside is not None:
            outside.stop.set()
            outside.join(timeout=30)
    if passes:
        echo(f"detection: {len(passes)} passes, median {sorted(passes)[len(passes) // 2]:.2f}s, "
             f"max {max(passes):.2f}s")
    return timeline


def _filter(t0: datetime) -> Any:
    from observatory.store import IncidentFilter

    return IncidentFilter(since=t0 - timedelta(minutes=5), limit=10_000)
