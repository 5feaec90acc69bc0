"""`observatory detect` over a real DuckDB file: JSON per docs/contracts.md, filters, idempotent re-runs."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from detect_world import small_simulation

from observatory.ingest import ingest_paths
from observatory.store import open_store

FIELDS = {"id", "country", "kind", "scope", "asns", "regions", "platforms", "techniques", "start", "end", "status",
          "confirmed_at", "confidence", "assessment", "evidence"}


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "observatory", *args], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> str:
    d = tmp_path_factory.mktemp("cli")
    out = d / "m.jsonl"
    out.write_text("\n".join(small_simulation()[0]) + "\n")
    path = str(d / "obs.duckdb")
    store = open_store(path)
    ingest_paths(store, [out], rejects_path=d / "rejects.jsonl")
    store.close()
    return path


def test_help_ends_with_an_example() -> None:
    r = _cli("detect", "--help")
    assert r.returncode == 0 and "Example: observatory detect" in r.stdout


def test_json_output_is_an_array_of_contract_incidents_and_stable(db: str) -> None:
    first = _cli("detect", "--db", db, "--format", "json")
    assert first.returncode == 0, first.stderr
    incidents = json.loads(first.stdout)
    assert incidents and all(FIELDS <= set(i) for i in incidents)
    assert all(a.startswith("AS") for i in incidents for a in i["asns"])
    assert all(i["start"].endswith("Z") for i in incidents)
    second = json.loads(_cli("detect", "--db", db, "--format", "json").stdout)
    assert [i["id"] for i in second] == [i["id"] for i in incidents]
    pk = json.loads(_cli("detect", "--db", db, "--country", "pk", "--since", "2024-05-02T12:00:00Z",
                         "--format", "json").stdout)
    assert pk and all(i["country"] == "PK" and (i["end"] is None or i["end"] >= "2024-05-02T12:00:00Z")
                      for i in pk)
    assert len(pk) < len(incidents)


def test_bad_time_is_a_clear_error(db: str) -> None:
    r = _cli("detect", "--db", db, "--since", "yesterday-ish")
    assert r.returncode != 0 and "--since" in r.stderr


def test_table_output(db: str) -> None:
    r = _cli("detect", "--db", db)
    assert r.returncode == 0 and "platform_restriction" in r.stdout
