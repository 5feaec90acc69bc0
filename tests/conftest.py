from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from observatory.cli import main

DATA = Path(__file__).parent / "data"
OONI = DATA / "ooni"


@pytest.fixture
def ooni_files() -> list[Path]:
    """The real OONI measurements bundled for tests (see tests/data/README.md)."""
    return [OONI / "measurements.jsonl", *sorted(OONI.glob("netem_qa/*/measurement.json"))]


@pytest.fixture
def duck(tmp_path: Path) -> Iterator[object]:
    from observatory.store.duckdb import DuckDBStore

    store = DuckDBStore(str(tmp_path / "obs.duckdb"))
    yield store
    store.close()


@dataclass
class Result:
    """What one in-process run of the `observatory` command gave: its exit status and its two streams."""

    code: int
    out: str
    err: str


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Callable[..., Result]:
    """The `observatory` entry point in-process, its error handling and exit codes included."""

    def invoke(*args: str) -> Result:
        capsys.readouterr()
        monkeypatch.setattr(sys, "argv", ["observatory", *args])
        code = 0
        try:
            main()
        except SystemExit as exc:
            code = int(exc.code or 0)
        out = capsys.readouterr()
        return Result(code, out.out, out.err)

    return invoke
