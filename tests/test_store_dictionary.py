"""DuckDB stores raw documents zstd-compressed with a dictionary trained from the first big batch; documents
stored before it (no dictionary) and after it read back byte for byte, also after reopening the store."""

from __future__ import annotations

import json
from pathlib import Path

from observatory.ingest import to_row
from observatory.measurement import parse_measurement
from observatory.store.base import MeasurementFilter
from observatory.store.duckdb import DuckDBStore

DOC = {"measurement_uid": "", "measurement_start_time": "2024-01-20 13:45:00", "probe_cc": "PK",
       "probe_asn": "AS17557", "test_name": "web_connectivity", "test_version": "0.4.3",
       "software_name": "observatory", "input": "https://www.facebook.com/", "test_keys": {"requests": []}}


def _lines(start: int, n: int) -> list[bytes]:
    return [json.dumps({**DOC, "measurement_uid": f"uid-{i}", "annotations": {"note": "x" * (i % 37)}},
                       separators=(",", ":")).encode() for i in range(start, start + n)]


def test_documents_before_and_after_the_dictionary_read_back_exactly(tmp_path: Path) -> None:
    db = str(tmp_path / "d.duckdb")
    early, late = _lines(0, 10), _lines(10, 1500)
    store = DuckDBStore(db)
    assert store.insert([to_row(parse_measurement(x)) for x in early]).accepted == 10  # too few to train
    assert store.insert([to_row(parse_measurement(x)) for x in late]).accepted == 1500  # trains, then uses it
    assert store.insert([to_row(parse_measurement(x)) for x in late[:5]]).duplicates == 5
    assert sorted(store.documents(MeasurementFilter())) == sorted(early + late)
    assert store._con.execute("SELECT count(*) FROM zstd_dictionaries").fetchall() == [(1,)]
    store.close()
    for read_only in (False, True):
        again = DuckDBStore(db, read_only=read_only)
        assert sorted(again.documents(MeasurementFilter())) == sorted(early + late)
        again.close()
