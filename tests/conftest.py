from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

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
