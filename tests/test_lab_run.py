"""End to end in the lab: real probes measure through the real censor, the collector stores, the detector
confirms; every event must be found with the right kind, technique, scope, platforms and times (within two
probe intervals) and nothing else reported. Then nothing of the lab may be left.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import observatory
from observatory.lab import netns, pipeline, runner
from observatory.lab.plan import load_plan

pytestmark = [pytest.mark.lab, pytest.mark.timeout(900)]

SCENARIOS = Path(__file__).parent.parent / "scenarios" / "lab"


def _missing() -> str | None:
    reason = netns.namespaces_available()
    if reason:
        return f"lab tests need Linux network namespaces: {reason}"
    # by file, not by import: importing the CLI here would run typer's imports under the test's warning filters
    package = Path(observatory.__file__).parent
    for module, what in (("cli/probe.py", "the probe command"), ("web/collector.py", "the collector"),
                         ("service.py", "the detector")):
        if not (package / module).exists():
            return f"{what} (observatory/{module}) is not available"
    return None


@pytest.mark.parametrize("name", ["reference.toml", "techniques.toml"])
def test_lab_run_finds_every_event_and_nothing_else(name: str, tmp_path: Path) -> None:
    why = _missing()
    if why:
        pytest.skip(why)
    plan = load_plan(SCENARIOS / name)
    runner.down(plan.lab_id)
    lines: list[str] = []
    result = pipeline.run(plan, db=str(tmp_path / "lab.duckdb"), echo=lines.append)
    report = "\n".join(lines)
    Path("test-artifacts").mkdir(exist_ok=True)
    Path("test-artifacts", f"lab-{plan.lab_id}.txt").write_text(report)
    assert netns.lab_namespaces(plan.lab_id) == [], "namespaces left behind"
    assert runner.lab_processes(plan.lab_id) == [], "processes left behind"
    assert not any(Path("/etc/netns").glob(f"obs-{plan.lab_id}-*"))
    assert result.ok, report
    assert len(result.verification.events) == len(plan.events)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupting_lab_run_leaves_nothing_behind(sig: signal.Signals, tmp_path: Path) -> None:
    why = _missing()
    if why:
        pytest.skip(why)
    scenario = SCENARIOS / "mechanisms.toml"
    plan = load_plan(scenario)
    runner.down(plan.lab_id)
    proc = subprocess.Popen([sys.executable, "-m", "observatory", "lab", "run", str(scenario), "--db",
                             str(tmp_path / "lab.duckdb")], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    seen = []
    deadline = time.monotonic() + 120
    for line in proc.stdout:
        seen.append(line)
        if "probes" in line or time.monotonic() > deadline:
            break
    assert any("started" in s for s in seen), "".join(seen)
    assert netns.lab_namespaces(plan.lab_id), "the lab should be up while it runs"
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode != 0, "an interrupted run is not a success"
    assert netns.lab_namespaces(plan.lab_id) == [], "".join(seen) + out
    assert runner.lab_processes(plan.lab_id) == []
    assert not any(Path("/etc/netns").glob(f"obs-{plan.lab_id}-*"))
