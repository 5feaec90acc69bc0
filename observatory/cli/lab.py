"""lab up | run | down: the emulated country network with a real censor (needs root and network namespaces)."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from observatory.cli.app import app, current_settings
from observatory.errors import LabError

lab_app = typer.Typer(
    help="The lab: an emulated country (ISPs, resolvers, probes) behind a real censor, in network namespaces.\n\n"
         "Example: sudo observatory lab run scenarios/lab/reference.toml",
    no_args_is_help=True,
)
app.add_typer(lab_app, name="lab")

ScenarioArg = Annotated[str, typer.Argument(help="A lab scenario TOML (the simulator's format, times as '+2m').",
                                            show_default=False)]


@lab_app.command("up")
def lab_up(scenario: ScenarioArg) -> None:
    """Build the lab and leave it running: world (DNS, web servers, lab CA), censor, ISPs and their regions.

    Prints where everything is (namespaces, addresses, the CA bundle) as JSON. Explore it with e.g.
    `ip netns exec obs-<id>-i0r0 curl --cacert CA https://www.facebook.com/`; remove it with `lab down`.

    Example: sudo observatory lab up scenarios/lab/mechanisms.toml
    """
    from observatory.lab import runner
    from observatory.lab.plan import load_plan

    plan = load_plan(scenario)
    lab = runner.up(plan)
    info = {**lab.state.info, "lab_id": plan.lab_id, "namespaces": lab.state.namespaces,
            "ca_bundle": str(lab.ca_bundle), "state": str(lab.state.path)}
    typer.echo(json.dumps(info, indent=1))


@lab_app.command("run")
def lab_run(
    scenario: ScenarioArg,
    db: Annotated[str | None, typer.Option("--db", help="Store for the run (default: a new file in a temp dir).",
                                           show_default=False)] = None,
    dashboard: Annotated[str | None, typer.Option(
        help="Also serve the dashboard at HOST:PORT (on this machine's loopback) to watch the run live.",
        show_default=False)] = None,
    tls: Annotated[str, typer.Option(help="TLS interference: 'reset' the ClientHello, or 'drop' it (timeout).")]
    = "reset",
) -> None:
    """Run a scenario end to end: probes measure through the censor, the collector stores, the detector
    confirms; then print the incidents found next to the scenario's events.

    Exits 0 when every event was found with the right kind, technique, scope, platforms and times (within two
    probe intervals) and nothing else was reported; 1 otherwise. Everything is torn down at the end, on any
    failure and on Ctrl-C.

    Example: sudo observatory lab run scenarios/lab/reference.toml --dashboard 127.0.0.1:8000
    """
    from observatory.lab import pipeline
    from observatory.lab.plan import load_plan

    if tls not in ("reset", "drop"):
        raise LabError(f"--tls {tls!r}: choose reset or drop")
    where: tuple[str, int] | None = None
    if dashboard:
        host, _, port = dashboard.rpartition(":")
        if not host or not port.isdigit():
            raise LabError(f"--dashboard {dashboard!r}: expected HOST:PORT, e.g. 127.0.0.1:8000")
        where = (host, int(port))
    plan = load_plan(scenario)
    result = pipeline.run(plan, db=db, echo=typer.echo, dashboard=where, tls_mode=tls,
                          settings=current_settings())
    raise typer.Exit(0 if result.ok else 1)


@lab_app.command("down")
def lab_down(scenario: ScenarioArg) -> None:
    """Remove everything a lab made: its processes, namespaces and /etc/netns files (safe to repeat).

    Example: sudo observatory lab down scenarios/lab/mechanisms.toml
    """
    from observatory.lab import runner
    from observatory.lab.plan import load_plan

    plan = load_plan(scenario)
    problems = runner.down(plan.lab_id)
    if problems:
        raise LabError("; ".join(problems))
    typer.echo(f"lab {plan.lab_id} is down")
