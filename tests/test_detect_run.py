"""Detection over a real DuckDB store: incremental runs, restarts and late data keep incident ids stable."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from detect_world import small_simulation

from observatory.detect.run import WATERMARK_KEY
from observatory.incident import Incident
from observatory.ingest import ingest_paths
from observatory.service import run_detection, stored_incidents
from observatory.store import open_store


@pytest.fixture(scope="module")
def simulated() -> tuple[list[str], list[Incident]]:
    lines, truth = small_simulation()
    return list(lines), list(truth)


def _time(line: str) -> datetime:
    return datetime.strptime(json.loads(line)["measurement_start_time"], "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)


def _ingest(store, lines: list[str], path: Path) -> None:  # type: ignore[no-untyped-def]
    path.write_text("\n".join(lines) + "\n")
    ingest_paths(store, [path], rejects_path=path.with_suffix(".rejects"))


def _national(incidents: list[Incident]) -> Incident:
    [inc] = [i for i in incidents if i.scope == "national" and i.kind == "platform_restriction"]
    return inc


def test_running_twice_and_restarting_never_duplicates_or_renumbers(simulated, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    lines, _ = simulated
    db = str(tmp_path / "obs.duckdb")
    store = open_store(db)
    _ingest(store, lines, tmp_path / "all.jsonl")
    first = run_detection(store)
    assert first.saved and int(store.get_state(WATERMARK_KEY) or 0) == first.watermark
    ids = [i.id for i in stored_incidents(store)]
    again = run_detection(store)  # nothing new: nothing re-examined, nothing changed
    assert again.saved == () and [i.id for i in stored_incidents(store)] == ids
    store.close()
    store = open_store(db)  # a restart: a new process over the same file, forced to recompute everything
    run_detection(store, full=True)
    after = stored_incidents(store)
    assert [i.id for i in after] == ids and len(set(ids)) == len(ids)
    store.close()


def test_incremental_run_continues_the_same_incident(simulated, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    lines, truth = simulated
    event = _national(truth)
    cut = event.start + timedelta(hours=1)
    store = open_store(str(tmp_path / "obs.duckdb"))
    _ingest(store, [x for x in lines if _time(x) < cut], tmp_path / "a.jsonl")
    run_detection(store)
    live = _national(stored_incidents(store))
    assert live.end is None and live.status == "confirmed"
    _ingest(store, [x for x in lines if _time(x) >= cut], tmp_path / "b.jsonl")
    run = run_detection(store)
    assert run.examined_since is not None and run.examined_since > event.start - timedelta(days=2)
    later = _national(stored_incidents(store))
    assert later.id == live.id and later.start == live.start and later.confirmed_at == live.confirmed_at
    assert later.end is not None and abs((later.end - event.end).total_seconds()) <= 15 * 60  # type: ignore[operator]
    store.close()


def test_late_data_extends_an_incident_in_the_past(simulated, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    lines, truth = simulated
    event = _national(truth)
    assert event.end is not None
    held_from, held_to = event.end - timedelta(hours=1, minutes=30), event.end
    late = [x for x in lines if held_from <= _time(x) < held_to]
    on_time = [x for x in lines if not held_from <= _time(x) < held_to]
    store = open_store(str(tmp_path / "obs.duckdb"))
    _ingest(store, on_time, tmp_path / "on_time.jsonl")
    run_detection(store)
    before = _national(stored_incidents(store))
    assert before.end is not None and before.end <= held_from + timedelta(minutes=5)
    # meanwhile the missing hour and a half looks like every network falling silent: a connectivity loss
    assert [i.kind for i in stored_incidents(store) if i.start >= held_from - timedelta(minutes=15)] == [
        "connectivity_loss"]
    _ingest(store, late, tmp_path / "late.jsonl")
    run_detection(store)
    after = _national(stored_incidents(store))
    assert after.id == before.id and after.start == before.start
    assert after.end is not None and abs((after.end - event.end).total_seconds()) <= 15 * 60
    # the late data show the probes were there all along: the silence is gone, nothing is duplicated
    assert [i.kind for i in stored_incidents(store)] == ["platform_restriction"] * 2
    store.close()
