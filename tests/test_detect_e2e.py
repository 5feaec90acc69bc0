"""End to end: simulate a small scenario -> ingest into a real DuckDB file -> detect -> score against the truth
with the benchmark's own scorer (no incident is written down here: the truth file is the simulator's)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCENARIO = Path(__file__).parent / "data" / "detect-small.toml"


def _benchmark() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_detection", ROOT / "benchmarks" / "detection.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules["bench_detection"] = mod
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    return _benchmark()


def test_dedicated_probes_find_every_true_incident_and_nothing_else(bench: ModuleType, tmp_path: Path) -> None:
    r = bench.evaluate(SCENARIO, "dedicated", tmp_path)
    s = r.score
    assert s.truth == 2
    assert s.recall == 1.0 and s.precision == 1.0, (r.detected, r.truth)
    assert s.false_national == 0
    # the national event (21 probes, 15-minute cycles) within 10 minutes of onset; the one-network block
    # (7 probes) needs about a probe cycle to gather three witnesses
    national = bench.score(r.detected, [t for t in r.truth if t.scope == "national"])
    assert national.confirm_minutes and max(national.confirm_minutes) <= 10
    assert max(s.confirm_minutes) <= 30
    assert max(abs(x) for x in s.start_error_minutes) <= 15
    assert max(abs(x) for x in s.end_error_minutes) <= 15
    assert s.scope_right == 2 and s.technique_right == 2
    # the stored evidence points at real measurements
    assert all(inc.evidence["example_measurements"] for inc in r.detected)


def test_volunteer_probes_find_the_national_restriction_without_false_alarms(bench: ModuleType,
                                                                            tmp_path: Path) -> None:
    r = bench.evaluate(SCENARIO, "volunteer", tmp_path)
    s = r.score
    assert s.precision == 1.0, r.detected
    assert s.false_national == 0
    # the national restriction (many probes, evening) must be found; the one-network night-time block has
    # only a handful of volunteer runs behind it and may stay below the evidence rule
    national = [t for t in r.truth if t.scope == "national"]
    found = bench.score(r.detected, national)
    assert found.recall == 1.0, (r.detected, national)
