"""`lab run`: the whole chain on real packets. Probes in the ISPs' regions measure through the censor, upload
to the collector, the detector runs incrementally, and at the end the incidents are compared with the events.

The collector runs in this process, next to the store and the detector, on a socket made inside the world
namespace (`netns.listen_in`), so the probes reach it at a world address and nothing else holds the store.
The control helper runs in the world namespace too. Probes are real `observatory probe` processes, one per
probe of the scenario, each in its region's namespace, trusting the lab's CA.
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
from observatory.lab.plan import COLLECTOR_ADDR, HELPER_ADDR, LabPlan
from observatory.lab.runner import Lab, up
from observatory.lab.verify import Verification, expected_incidents, render, verify

Echo = Callable[[str], None]


@dataclass
class RunResult:
    t0: datetime
    incidents: list[Incident]
    verification: Verification
    db: str
    table: str = ""

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
    return DetectConfig(bucket_seconds=interval, end_grace_seconds=3 * interval, merge_gap_seconds=2 * interval,
                        baseline_seconds=int(plan.duration_s) + 3600)


def targets_file(plan: LabPlan, directory: Path) -> Path:
    """The probes' target list: the catalog URLs of the scenario's platforms."""
    urls = [u for p in plan.targets for u in catalog.get(p).urls[:1]]
    path = directory / "targets.txt"
    path.write_text("\n".join(urls) + "\n")
    return path


def _register_probe(store: Any, name: str) -> tuple[str, str]:
    from observatory.web import auth  # type: ignore[attr-defined]

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
            argv = [sys.executable, "-m", "observatory.lab.agents", "probe", "--targets", str(targets),
                    "--every", str(plan.interval_s), "--collector", f"http://{COLLECTOR_ADDR}/",
                    "--helper", f"http://{HELPER_ADDR}/", "--token", token, "--secret", secret,
                    "--region", region, "--cc", net.country, "--asn", str(net.asn), "--network-name", net.name,
                    "--resolver", net.resolver, "--ca-file", str(lab.ca_bundle), "--spool", str(home / "spool")]
            netns.spawn(state, f"probe-{name}", lab.region_ns(net, r), argv, log=home / "probe.log",
                        env={**env, "HOME": str(home), "XDG_DATA_HOME": str(home), "XDG_CONFIG_HOME": str(home)})
    echo(f"started {sum(n.probes for n in plan.networks)} probes, every {plan.interval_s:g}s")


def _start_helper(lab: Lab) -> None:
    env = {**os.environ, "SSL_CERT_FILE": str(lab.ca_bundle)}
    argv = [sys.executable, "-m", "observatory.lab.agents", "helper", "--host", HELPER_ADDR, "--port", "80",
            "--ca-file", str(lab.ca_bundle)]
    netns.spawn(lab.state, "helper", lab.world_ns, argv, log=Path(lab.state.state_dir) / "helper.log", env=env)
    deadline = time.monotonic() + 20
    while f"{HELPER_ADDR}:80" not in netns.run(["ss", "-Hltn"], ns=lab.world_ns, check=False).stdout:
        if time.monotonic() > deadline:
            log = (Path(lab.state.state_dir) / "helper.log").read_text()[-800:]
            raise LabError(f"the control helper did not start in {lab.world_ns}: {log}")
        time.sleep(0.1)


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM tears the lab down like Ctrl-C does."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def run(plan: LabPlan, *, db: str | None = None, echo: Echo = print, dashboard: tuple[str, int] | None = None,
        tls_mode: str = "reset", tolerance_intervals: float = 2.0) -> RunResult:
    """Brings the lab up, runs the scenario to its end, compares, and always tears everything down."""
    from observatory.detect.run import run_detection
    from observatory.store import IncidentFilter, open_store
    from observatory.web import WebSettings, create_app

    db = db or str(Path(tempfile.mkdtemp(prefix=f"observatory-lab-{plan.lab_id}-")) / "lab.duckdb")
    store = open_store(db)
    http: _Http | None = None
    lab: Lab | None = None
    with _sigterm_as_interrupt():
        try:
            t_up = time.monotonic()
            lab = up(plan, tls_mode=tls_mode)
            echo(f"lab {plan.lab_id} up in {time.monotonic() - t_up:.1f}s: {len(lab.state.namespaces)} namespaces, "
                 f"store {db}")
            app = create_app(WebSettings.from_env(detect_every_seconds=0), store, detector=None)
            sockets = [netns.listen_in(lab.world_ns, COLLECTOR_ADDR, 80)]
            if dashboard:
                import socket

                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind(dashboard)
                s.listen(64)
                sockets.append(s)
            http = _Http(app, sockets)
            http.start()
            if dashboard:
                echo(f"dashboard: http://{dashboard[0]}:{sockets[-1].getsockname()[1]}/")
            _start_helper(lab)
            _start_probes(lab, store, targets_file(plan, Path(lab.state.state_dir)), echo)
            t0 = datetime.now(UTC)
            _timeline(lab, t0, store, run_detection, detect_config(plan), echo)
            # the last uploads (a region back from a shutdown sends its spool) and a final detection
            time.sleep(min(plan.interval_s, 10))
            run_detection(store, config=detect_config(plan))
            incidents = store.incidents(IncidentFilter(since=t0 - timedelta(minutes=5), limit=10_000))
            v = verify(expected_incidents(plan, t0), incidents,
                       timedelta(seconds=tolerance_intervals * plan.interval_s))
            table = render(v, t0)
            echo(table)
            return RunResult(t0=t0, incidents=incidents, verification=v, db=db, table=table)
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


@dataclass(order=True)
class _Step:
    at: float
    order: int
    action: str = field(compare=False)
    event: Any = field(compare=False)


def _timeline(lab: Lab, t0: datetime, store: Any, run_detection: Any, cfg: Any, echo: Echo) -> None:
    """Applies and lifts events at their offsets; detection runs once per probe interval meanwhile."""
    plan = lab.plan
    steps = sorted([_Step(e.start_s, 1, "apply", e) for e in plan.events]
                   + [_Step(e.end_s, 0, "revert", e) for e in plan.events])
    start = time.monotonic()
    next_detect = plan.interval_s
    seen: set[str] = set()
    while True:
        now = time.monotonic() - start
        while steps and steps[0].at <= now:
            s = steps.pop(0)
            ev = s.event
            (lab.censor.apply if s.action == "apply" else lab.censor.revert)(ev)
            label = f"{ev.kind}/{ev.technique or '-'} {','.join(ev.platforms) or 'all'}"
            echo(f"+{int(now) // 60}m{int(now) % 60:02d}s censor {'starts' if s.action == 'apply' else 'ends'}: "
                 f"{label}")
        if now >= next_detect:
            next_detect += plan.interval_s
            run_detection(store, config=cfg)
            for inc in store.incidents(_filter(t0)):
                key = f"{inc.id}/{inc.status}"
                if key not in seen:
                    seen.add(key)
                    echo(f"+{int(now) // 60}m{int(now) % 60:02d}s detector: {inc.status} {inc.kind} "
                         f"{','.join(inc.techniques)} {inc.scope} {','.join(inc.platforms) or 'all'} [{inc.id}]")
        if now >= plan.duration_s:
            return
        time.sleep(0.2)


def _filter(t0: datetime) -> Any:
    from observatory.store import IncidentFilter

    return IncidentFilter(since=t0 - timedelta(minutes=5), limit=10_000)
