"""The probe's address is neither stored nor published in any spelling; a document whose probe address is unknown
is published without any address that is not a server's, while the servers (the evidence) are kept.

Checks read the stored and published text for the literal spellings planted in the documents (independently of
observatory.scrub's own parser)."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pyarrow.parquet as pq
from conftest import OONI
from store_world import document
from typer.testing import CliRunner

from observatory.cli.app import app as cli
from observatory.incident import Incident
from observatory.scrub import SCRUBBED, scrub_document
from observatory.store.base import MeasurementFilter
from observatory.store.duckdb import DuckDBStore
from observatory.web import WebSettings, create_app
from observatory.web.collector import store_batch
from observatory.web.server import ServerThread

T = datetime(2024, 1, 15, 10, tzinfo=UTC)
SERVERS = ("192.0.2.10", "203.0.113.53")  # the DNS answer / endpoint and the resolver of store_world's document
PROBE_V4_SPELLINGS = ("198.51.100.7", "198.051.100.007", "7.100.51.198.in-addr.arpa", "::ffff:198.51.100.7",
                      "::FFFF:c633:6407")
PROBE_V6_SPELLINGS = ("2001:db8::42", "2001:0DB8:0000:0000:0000:0000:0000:0042", "2001:db8:0:0:0:0:0:42",
                      "2.4.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa")


def _doc(uid: str, **extra: object) -> dict:
    values = {"UID": uid, "TIME": T.strftime("%Y-%m-%d %H:%M:%S"), "CC": "PK", "ASN": "AS17557", "NET": "Jazz",
              "INPUT": "https://x.com/", "REGION": "Lahore", "PROBE": "p1", "TLSFAIL": "null"}
    doc = json.loads(document(values))
    doc.update(extra)
    return doc


def _plant(doc: dict, spellings: tuple[str, ...]) -> dict:
    """The probe's address where tools write it: a header, a whoami body, a PTR query, a dictionary key."""
    req = doc["test_keys"]["requests"][0]
    req["request"]["headers"]["X-Forwarded-For"] = spellings[1]
    req["response"]["body"] = f"<p>Your IP: {spellings[0]}</p> (also {spellings[-2]})"
    doc["test_keys"]["queries"].append({"hostname": spellings[2], "query_type": "PTR", "engine": "system",
                                        "resolver_address": "", "failure": "dns_nxdomain_error", "answers": None})
    doc["test_keys"]["seen_from"] = {spellings[-1]: "whoami"}
    return doc


def _texts_lower(texts: list[str]) -> str:
    return "\n".join(texts).lower()


def test_the_probe_address_is_not_stored_in_any_spelling(tmp_path: Path) -> None:
    store = DuckDBStore(str(tmp_path / "obs.duckdb"))
    try:
        docs = [_plant(_doc("v4", probe_ip="198.51.100.7"), PROBE_V4_SPELLINGS),
                _plant(_doc("v6", probe_ip="2001:db8::42"), PROBE_V6_SPELLINGS)]
        assert store_batch(store, docs)["accepted"] == 2
        stored = _texts_lower([d.decode() for d in store.documents(MeasurementFilter())])
    finally:
        store.close()
    for spelling in PROBE_V4_SPELLINGS + PROBE_V6_SPELLINGS:
        assert spelling.lower() not in stored, spelling
    assert all(s in stored for s in SERVERS), "the servers measured are kept"
    assert SCRUBBED.lower() in stored


def _published_scene(tmp_path: Path) -> tuple[DuckDBStore, str]:
    """One document with no probe_ip whose body, header and a PTR query name an address no server explains, and
    whose DNS answer is a censor's bogon (10.10.34.35): evidence, to be kept."""
    store = DuckDBStore(str(tmp_path / "obs.duckdb"))
    doc = _plant(_doc("unknown"), ("198.51.100.9", "198.51.100.9", "9.100.51.198.in-addr.arpa",
                                   "2001:db8::99", "198.51.100.9"))
    doc["test_keys"]["queries"][0]["answers"].append({"answer_type": "A", "ipv4": "10.10.34.35"})
    assert store_batch(store, [doc])["accepted"] == 1
    inc = Incident(id="PK-scrub", country="PK", kind="platform_restriction", scope="network", asns=(17557,),
                   regions=(), platforms=("twitter",), techniques=("tls_interference",), start=T - timedelta(hours=1),
                   end=T + timedelta(hours=1), status="ended", confirmed_at=T, confidence=0.9)
    store.save_incidents([inc])
    return store, inc.id


def _assert_published_clean(text: str) -> None:
    text = text.lower()
    for leak in ("198.51.100.9", "9.100.51.198.in-addr.arpa", "2001:db8::99"):
        assert leak not in text, leak
    for kept in (*SERVERS, "10.10.34.35"):
        assert kept in text, kept


def test_export_publishes_no_unexplained_address(tmp_path: Path) -> None:
    store, _ = _published_scene(tmp_path)
    store.close()
    db = str(tmp_path / "obs.duckdb")
    runner = CliRunner()
    jsonl, parquet = tmp_path / "out.jsonl", tmp_path / "out.parquet"
    for fmt, out in (("jsonl", jsonl), ("parquet", parquet)):
        r = runner.invoke(cli, ["export", "--db", db, "--format", fmt, "--out", str(out)])
        assert r.exit_code == 0, r.output
    _assert_published_clean(jsonl.read_text())
    _assert_published_clean("\n".join(pq.read_table(parquet).column("document").to_pylist()))


def test_the_incident_download_publishes_no_unexplained_address(tmp_path: Path) -> None:
    store, incident_id = _published_scene(tmp_path)
    server = ServerThread(create_app(WebSettings(detect_every_seconds=0), store, detector=None), "127.0.0.1", 0)
    port = server.start()
    try:
        r = httpx.get(f"http://127.0.0.1:{port}/api/v1/incidents/{incident_id}/measurements",
                      params={"format": "parquet"}, timeout=30)
        assert r.status_code == 200
        table = pq.read_table(io.BytesIO(r.content))
        assert table.num_rows == 1
        _assert_published_clean(table.column("document").to_pylist()[0])
    finally:
        server.stop()
        store.close()


def _real_docs() -> list[dict]:
    docs = [json.loads(line) for line in (OONI / "measurements.jsonl").read_text().splitlines() if line.strip()]
    return docs + [json.loads(p.read_text()) for p in sorted(OONI.glob("netem_qa/*/measurement.json"))]


def test_real_ooni_documents_keep_their_evidence_and_lose_a_whoami_answer() -> None:
    """On the 101 real OONI measurements: every DNS answer and every address connected to survives publishing;
    the one whoami page in them ("Your IP: 94.242.57.2", an openvpn_client_test) does not."""
    whoami = kept = 0
    for doc in _real_docs():
        keys = doc.get("test_keys") or {}
        queries = [q for q in keys.get("queries") or [] if isinstance(q, dict)]
        evidence = {a.get("ipv4") or a.get("ipv6") for q in queries for a in q.get("answers") or []
                    if isinstance(a, dict)}
        connects = keys.get("tcp_connect")
        if isinstance(connects, list):
            evidence |= {c.get("ip") for c in connects if isinstance(c, dict)}
        text = json.dumps(scrub_document(doc))
        missing = {a for a in evidence if a and json.dumps(a)[1:-1] not in text}
        assert not missing, (doc.get("test_name"), missing)
        kept += len(evidence - {None})
        if "Your IP</span>: 94.242.57.2" in json.dumps(doc):
            whoami += 1
            assert "94.242.57.2" not in text
    assert whoami == 1 and kept > 50, kept
