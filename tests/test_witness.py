"""A credential is one witness (issue #22), replayed as the attacker did it: the real collector over HTTP on
127.0.0.1, a real DuckDB file, the real detector.

The data is a simulated national restriction (tests/data/forged-witness.toml): 10,300 measurements from 60
probes on Pakistan's six networks. Ingested as a public file, its 60 probe ids are 60 witnesses and the
restriction is found (the honest case); uploaded through ONE probe credential, claiming the same 60 probe ids,
it is one witness and nothing is found.
"""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner, Result
from collector_app import make_app
from probe_net import UvicornThread

from observatory.ingest import ingest_paths
from observatory.service import run_detection
from observatory.simulate.generator import generate
from observatory.simulate.scenario import load_scenario
from observatory.store import IncidentFilter, MeasurementFilter
from observatory.store.duckdb import DuckDBStore
from observatory.web.auth import create_probe, sign
from observatory.web.collector import own_uid

SCENARIO = Path(__file__).parent / "data" / "forged-witness.toml"
PK_ASNS = (17557, 45669, 24499, 59257, 9541, 38193)
BATCH = 2000


@pytest.fixture(scope="module")
def lines() -> list[bytes]:
    return [line for _, line in generate(load_scenario(SCENARIO))]


class Collector:
    def __init__(self, tmp: Path) -> None:
        self.store = DuckDBStore(str(tmp / "collector.duckdb"))
        self.server = UvicornThread(make_app(self.store))
        self.url = self.server.url + "/api/v1/measurements"
        self.client = httpx.Client(timeout=120)

    def post(self, cred: dict[str, str], docs: list[Any]) -> httpx.Response:
        body = b'{"measurements":[' + b",".join(d if isinstance(d, bytes) else json.dumps(d).encode()
                                                 for d in docs) + b"]}"
        return self.client.post(self.url, content=body, headers={
            "Authorization": f"Bearer {cred['token']}", "X-Observatory-Signature": sign(body, cred["secret"])})

    def close(self) -> None:
        self.client.close()
        self.server.stop()
        self.store.close()


@pytest.fixture
def collector(tmp_path: Path) -> Iterator[Collector]:
    c = Collector(tmp_path)
    yield c
    c.close()


def _cli(args: list[str]) -> Result:
    with warnings.catch_warnings():  # typer imports a name click deprecates; not ours to fix
        warnings.simplefilter("ignore", DeprecationWarning)
        from typer.main import get_command

        from observatory.cli import app
    return CliRunner().invoke(get_command(app), args)


def _national(store: DuckDBStore) -> list[Any]:
    return [i for i in run_detection(store, full=True).saved if i.country == "PK"]


def test_the_honest_import_finds_the_national_restriction(lines: list[bytes], tmp_path: Path) -> None:
    path = tmp_path / "pk.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    store = DuckDBStore(str(tmp_path / "honest.duckdb"))
    try:
        assert ingest_paths(store, [path], processes=1).accepted == len(lines)
        [inc] = _national(store)
        assert (inc.kind, inc.status, set(inc.platforms)) == ("platform_restriction", "confirmed",
                                                               {"twitter", "facebook"})
        assert set(inc.asns) == set(PK_ASNS)
        # the import's rows record their source
        assert {m["credential"] for m in _rows(store)} == {"file:pk.jsonl"}
    finally:
        store.close()


def _rows(store: DuckDBStore) -> list[dict[str, Any]]:
    with store._lock:  # the provenance column, read as the store keeps it
        cur = store._con.execute("SELECT uid, credential, probe_key FROM measurements")
        return [dict(zip(("uid", "credential", "probe_key"), r, strict=True)) for r in cur.fetchall()]


def test_one_credential_claiming_60_probes_on_six_networks_is_one_witness(lines: list[bytes],
                                                                          collector: Collector) -> None:
    assert len(lines) >= 10_000
    claimed = {json.loads(line)["annotations"]["probe_id"] for line in lines}
    assert len(claimed) == 60
    forger = create_probe(collector.store, "forger", country="PK", asns=PK_ASNS)
    started = time.perf_counter()
    for i in range(0, len(lines), BATCH):
        r = collector.post(forger, lines[i:i + BATCH])
        assert r.status_code == 200, r.text
        assert r.json()["accepted"] == len(lines[i:i + BATCH])
    seconds = time.perf_counter() - started
    print(f"\n{len(lines)} forged measurements uploaded in {seconds:.1f} s")
    assert collector.store.count() == len(lines)
    assert _national(collector.store) == []
    # every row names the credential that brought it, and counts as that credential's witness only
    rows = _rows(collector.store)
    assert {r["credential"] for r in rows} == {"probe:forger"}
    assert {r["probe_key"] for r in rows} == {"c:forger"}


def test_a_probe_cannot_claim_a_network_it_was_not_registered_for(lines: list[bytes],
                                                                  collector: Collector) -> None:
    lahore = create_probe(collector.store, "lahore-1", country="PK", asns=[17557])
    batch = lines[:400]
    started = time.perf_counter()
    r = collector.post(lahore, batch)
    refused_in = time.perf_counter() - started
    assert r.status_code == 200
    res = r.json()["results"]
    mine = [json.loads(line)["probe_asn"] == "AS17557" for line in batch]
    assert 0 < sum(mine) < len(batch)
    for ok, item in zip(mine, res, strict=True):
        if ok:
            assert item["status"] == "accepted"
        else:
            assert item["status"] == "rejected"
            assert "is not a network probe 'lahore-1' was registered for (AS17557)" in item["reason"]
    assert collector.store.count() == sum(mine)
    print(f"\n{len(batch)} items answered in {refused_in * 1000:.0f} ms, {len(batch) - sum(mine)} refused")
    # and another country
    other = json.loads(batch[mine.index(True)])
    other["probe_cc"], other["measurement_uid"] = "IN", other["measurement_uid"] + "x"
    [item] = collector.post(lahore, [other]).json()["results"]
    assert item["status"] == "rejected" and "probe_cc IN is not PK" in item["reason"]


def test_purge_removes_what_one_credential_sent_and_its_incident(lines: list[bytes], tmp_path: Path,
                                                                 collector: Collector) -> None:
    """A relay's forged upload did make an incident (a relay's probe ids count): purging it removes the rows,
    the heartbeats and, after detection runs again, the incident; an honest probe's rows stay."""
    relay = create_probe(collector.store, "partner", country="PK", asns=PK_ASNS, relay=True)
    honest = create_probe(collector.store, "honest", country="PK", asns=PK_ASNS)
    for i in range(0, len(lines), BATCH):
        assert collector.post(relay, lines[i:i + BATCH]).status_code == 200
    own = json.loads(lines[0])
    own["measurement_uid"] += "-own"
    assert collector.post(honest, [own]).json()["accepted"] == 1
    assert len(_national(collector.store)) == 1
    collector.server.stop()
    collector.store.close()
    db = str(tmp_path / "collector.duckdb")
    out = _cli(["probes", "purge", "partner", "--db", db])
    assert out.exit_code == 0, out.output
    summary = json.loads(out.output)
    assert summary["removed"] == len(lines) and len(summary["incidents_removed"]) == 1
    collector.store = DuckDBStore(db)
    assert [r["credential"] for r in _rows(collector.store)] == ["probe:honest"]
    assert collector.store.incidents(IncidentFilter()) == []
    collector.server = UvicornThread(make_app(collector.store))


def test_a_squatted_uid_neither_drops_nor_overwrites_another_probes_measurement(lines: list[bytes],
                                                                              collector: Collector) -> None:
    squatter = create_probe(collector.store, "squatter", country="PK", asns=PK_ASNS)
    victim = create_probe(collector.store, "victim", country="PK", asns=PK_ASNS)
    real = json.loads(lines[0])
    fake = dict(real, test_keys={"forged": True})  # sent first, under the victim's uid
    assert collector.post(squatter, [fake]).json()["accepted"] == 1
    r = collector.post(victim, [real]).json()
    [item] = r["results"]
    assert item["status"] == "accepted", r
    assert item["stored_as"] == own_uid(real["measurement_uid"], "probe:victim")
    # a retry of the victim's upload is a duplicate of its own copy, not stored twice
    [again] = collector.post(victim, [real]).json()["results"]
    assert (again["status"], again["stored_as"]) == ("duplicate", item["stored_as"])
    # the squatter's retry stays a duplicate of its own row
    [mine] = collector.post(squatter, [fake]).json()["results"]
    assert mine["status"] == "duplicate" and "stored_as" not in mine
    held = {r["uid"]: r["credential"] for r in _rows(collector.store)}
    assert held == {real["measurement_uid"]: "probe:squatter", item["stored_as"]: "probe:victim"}
    docs = {json.loads(d)["test_keys"].get("forged", False)
            for d in collector.store.documents(MeasurementFilter())}
    assert docs == {True, False}  # both documents kept, neither overwritten


def test_an_upload_cannot_make_an_import_drop_the_real_measurement(lines: list[bytes], tmp_path: Path,
                                                                   collector: Collector) -> None:
    squatter = create_probe(collector.store, "squatter", country="PK", asns=PK_ASNS)
    real = json.loads(lines[0])
    assert collector.post(squatter, [dict(real, test_keys={"forged": True})]).json()["accepted"] == 1
    path = tmp_path / "ooni.jsonl"
    path.write_text(json.dumps(real) + "\n")
    first = ingest_paths(collector.store, [path], processes=1)
    assert (first.accepted, first.duplicates) == (1, 0)
    again = ingest_paths(collector.store, [path], processes=1)  # a re-import stays idempotent
    assert (again.accepted, again.duplicates) == (0, 1)
    held = {r["uid"]: r["credential"] for r in _rows(collector.store)}
    assert held == {real["measurement_uid"]: "probe:squatter",
                    own_uid(real["measurement_uid"], "file:ooni.jsonl"): "file:ooni.jsonl"}


def test_probes_add_with_a_place_and_list_it(tmp_path: Path) -> None:
    db = str(tmp_path / "p.duckdb")
    out = _cli(["probes", "add", "lahore-1", "--country", "pk", "--asn", "17557", "--asn", "AS45669", "--db", db])
    assert out.exit_code == 0, out.output
    assert set(json.loads(out.output)) == {"token", "secret"}
    assert _cli(["probes", "add", "replay", "--relay", "--db", db]).exit_code == 0
    listed = json.loads(_cli(["probes", "list", "--format", "json", "--db", db]).output)
    assert [(p["name"], p["country"], p["asns"], p["relay"]) for p in listed] == [
        ("lahore-1", "PK", [17557, 45669], False), ("replay", None, [], True)]
    bad = _cli(["probes", "add", "x", "--country", "Pakistan", "--db", db])
    assert bad.exit_code != 0 and "did you mean PK" in str(bad.exception or bad.output)
    bad = _cli(["probes", "add", "y", "--asn", "seventeen", "--db", db])
    assert bad.exit_code != 0
    gone = _cli(["probes", "purge", "ghost", "--db", db])
    assert gone.exit_code != 0 and "no probe named 'ghost'" in str(gone.exception or gone.output)
