"""Confirmation time at arrival (benchmarks/arrival.py, `benchmarks/detection.py --arrival`): a live observatory
confirms only once the measurements have been uploaded. Replayed in upload order, a world whose volunteers upload
late (the simulator's own `uploads=late-duplicated` option) is confirmed later than the same lines would be had
each arrived when it was measured; and never sooner than the measurement-time figure."""

from __future__ import annotations

import importlib.util
import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType

import pytest

from observatory.incident import Incident
from observatory.simulate.families import UPLOADS, Model

ROOT = Path(__file__).resolve().parent.parent
SCENARIO = Path(__file__).parent / "data" / "detect-small.toml"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "benchmarks" / f"{name}.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[f"bench_{name}"] = mod
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    return _load("detection")


def _model(option: str) -> Model:
    share, hours, duplicates = UPLOADS[option]
    return Model(options={"uploads": option}, late_share=share, late_max_hours=hours, duplicate_share=duplicates)


def _measured_at(line: bytes) -> float:
    stamp = json.loads(line)["measurement_start_time"]
    return datetime.strptime(stamp + "+0000", "%Y-%m-%d %H:%M:%S%z").timestamp()


def test_late_uploads_delay_the_confirmation_at_arrival(bench: ModuleType, tmp_path: Path) -> None:
    # volunteers: few runs, so a confirmation waits for the very runs that were late (dedicated probes, many
    # runs a cycle, confirm as soon on the runs that came on time)
    r = bench.evaluate(SCENARIO, "volunteer", tmp_path, model=_model("late-duplicated"), arrival=True)
    assert r.score.true_positives >= 1, (r.detected, r.truth)
    # one figure per confirmed true incident, aligned with the measurement-time figure, never sooner
    assert r.arrival is not None and len(r.arrival) == len(r.score.confirm_minutes) == r.score.true_positives
    assert all(a >= c for a, c in zip(r.arrival, r.score.confirm_minutes, strict=True))
    # the same world's lines, each arriving when it was measured: what the figure would be without late uploads
    lines = bench.read_lines(tmp_path / f"{r.scenario}.volunteer.jsonl")
    measured = sorted(((_measured_at(line), line) for line in lines), key=lambda p: p[0])
    on_time = bench.replay([line for _, line in measured], [t for t, _ in measured], r.truth, r.detected, tmp_path)
    assert all(o >= c for o, c in zip(on_time, r.score.confirm_minutes, strict=True))
    # late uploads held back a confirming measurement: at arrival, some incident was confirmed later
    assert all(a >= o for a, o in zip(r.arrival, on_time, strict=True)), (r.arrival, on_time)
    assert any(a > o for a, o in zip(r.arrival, on_time, strict=True)), (r.arrival, on_time)


def test_the_replay_leaves_the_ordinary_figures_as_they_were(bench: ModuleType, tmp_path: Path) -> None:
    model = _model("late")
    plain = bench.evaluate(SCENARIO, "volunteer", tmp_path, model=model)
    data = (tmp_path / f"{plain.scenario}.volunteer.jsonl").read_bytes()
    replayed = bench.evaluate(SCENARIO, "volunteer", tmp_path, model=model, arrival=True)
    assert plain.arrival is None and replayed.arrival is not None
    assert (tmp_path / f"{plain.scenario}.volunteer.jsonl").read_bytes() == data  # the same lines, same order
    assert replayed.score.summary() == plain.score.summary()
    assert [i.to_json() for i in replayed.detected] == [i.to_json() for i in plain.detected]


def _shutdown(day: int, end: datetime | None, status: str = "ended") -> Incident:
    start = datetime(2022, 9, day, 12, 30, tzinfo=UTC)
    return Incident(id=f"i{day}", country="IR", kind="connectivity_loss", scope="network", asns=(44244,),
                    regions=(), platforms=(), techniques=(), start=start, end=end, status=status,
                    confirmed_at=start if status != "suspected" else None, confidence=1.0)


def test_an_open_incident_at_a_cut_off_is_the_truth_begun_by_then() -> None:
    # three nightly shutdowns, each 8 hours; at the first one's onset the store holds it, confirmed and open:
    # it overlaps the later truths as much as the first, and only the first had begun
    arrival = _load("arrival")
    truth = [_shutdown(day, datetime(2022, 9, day, 20, 30, tzinfo=UTC)) for day in (21, 22, 23)]
    cut = truth[0].start + timedelta(minutes=5)
    assert arrival._held([_shutdown(21, None, "confirmed")], truth, cut, [0]) == {0}
