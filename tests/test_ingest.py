"""Ingest of OONI-format files: round trip, idempotency, privacy, bad input, crash safety."""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from observatory.ingest import ingest_paths
from observatory.measurement import PRIVATE_FIELDS, SCRUBBED
from observatory.store import MeasurementFilter
from observatory.store.duckdb import DuckDBStore

OBS = [sys.executable, "-m", "observatory.cli.__main__"]


def _docs(files: list[Path]) -> list[dict]:
    out = []
    for f in files:
        if f.suffix == ".jsonl":
            out += [json.loads(line) for line in f.read_text().splitlines() if line.strip()]
        else:
            out.append(json.loads(f.read_text()))
    return out


def _expected(doc: dict) -> dict:
    """What export must give back: the document minus private fields (and the address scrubbed)."""
    ip = doc.get("probe_ip")
    clean = {k: v for k, v in doc.items() if k not in PRIVATE_FIELDS}
    if ip and ip not in ("127.0.0.1", "0.0.0.0", "::1"):
        text = json.dumps(clean)
        if ip in text:
            clean = json.loads(text.replace(ip, SCRUBBED))
    return clean


def test_every_real_measurement_round_trips(duck: DuckDBStore, ooni_files: list[Path]) -> None:
    summary = ingest_paths(duck, ooni_files)
    inputs = _docs(ooni_files)
    assert summary.rejected == 0, summary.rejects
    assert summary.accepted == len(inputs) == duck.count()
    exported = [json.loads(d) for d in duck.documents(MeasurementFilter())]
    canon = sorted(json.dumps(_expected(d), sort_keys=True) for d in inputs)
    assert sorted(json.dumps(d, sort_keys=True) for d in exported) == canon


def test_reingest_adds_nothing(duck: DuckDBStore, ooni_files: list[Path]) -> None:
    first = ingest_paths(duck, ooni_files)
    before = duck.stats()
    second = ingest_paths(duck, ooni_files)
    assert second.accepted == 0
    assert second.duplicates == first.accepted
    assert duck.stats() == before


def test_no_probe_address_survives_anywhere(tmp_path: Path, ooni_files: list[Path]) -> None:
    db = tmp_path / "obs.duckdb"
    addresses = {d["probe_ip"] for d in _docs(ooni_files) if d.get("probe_ip") not in (None, "127.0.0.1")}
    assert len(addresses) > 5, "the fixture should carry real-looking probe addresses"
    run(["ingest", *map(str, ooni_files), "--db", str(db)])
    for fmt in ("jsonl", "csv", "parquet"):
        out = tmp_path / f"export.{fmt}"
        run(["export", "--db", str(db), "--format", fmt, "--out", str(out)])
        blob = out.read_bytes()
        assert blob, fmt
        for ip in addresses:
            assert ip.encode() not in blob, (fmt, ip)
    for line in (tmp_path / "export.jsonl").read_text().splitlines():
        doc = json.loads(line)
        assert "probe_ip" not in doc and "probe_city" not in doc
    # nor in the database file itself
    raw = db.read_bytes()
    for ip in addresses:
        assert ip.encode() not in raw


GOOD = json.dumps({"test_name": "web_connectivity", "measurement_start_time": "2024-01-20 13:45:00",
                   "probe_cc": "PK", "probe_asn": "AS17557", "input": "https://x.com/", "test_keys": {}})


def _good(i: int) -> str:
    d = json.loads(GOOD)
    d["measurement_uid"] = f"uid-{i}"
    return json.dumps(d)


BAD_LINES = {
    "truncated": (GOOD[: len(GOOD) // 2], "invalid JSON"),
    "invalid json": ("{not json}", "invalid JSON"),
    "array": ("[1, 2, 3]", "expected a JSON object"),
    "missing test_name": (json.dumps({"measurement_start_time": "2024-01-20 13:45:00"}), "test_name"),
    "missing time": (json.dumps({"test_name": "web_connectivity", "probe_cc": "PK"}), "measurement_start_time"),
    "asn as number": (GOOD.replace('"AS17557"', "17557"), "probe_asn"),
    "runtime as string": (GOOD.replace('"test_keys"', '"test_runtime": "1.5", "test_keys"'), "test_runtime"),
    "cc as number": (GOOD.replace('"PK"', "586"), "probe_cc"),
    "bad asn text": (GOOD.replace('"AS17557"', '"Pakistan"'), "probe_asn"),
}


@pytest.mark.parametrize("case", sorted(BAD_LINES))
def test_bad_line_is_rejected_with_file_line_and_reason(case: str, tmp_path: Path, duck: DuckDBStore) -> None:
    bad, reason = BAD_LINES[case]
    f = tmp_path / "mixed.jsonl"
    f.write_text("\n".join([_good(1), bad, _good(2)]) + "\n")
    rejects = tmp_path / "rejects.jsonl"
    s = ingest_paths(duck, [f], rejects_path=rejects)
    assert (s.accepted, s.rejected) == (2, 1)
    rec = json.loads(rejects.read_text())
    assert rec["file"] == str(f) and rec["line"] == 2
    assert reason in rec["reason"], rec["reason"]


def test_invalid_utf8_is_rejected(tmp_path: Path, duck: DuckDBStore) -> None:
    f = tmp_path / "utf8.jsonl"
    bad = _good(9).replace("x.com", "x\x00com").encode().replace(b"\x00", b"\xff\xfe")
    f.write_bytes(b"\n".join([_good(1).encode(), bad, _good(2).encode()]) + b"\n")
    s = ingest_paths(duck, [f])
    assert (s.accepted, s.rejected) == (2, 1)
    assert s.rejects[0].line == 2 and "UTF-8" in s.rejects[0].reason


def test_oversized_line_is_skipped_without_holding_it(tmp_path: Path, duck: DuckDBStore) -> None:
    f = tmp_path / "big.jsonl"
    with open(f, "w") as fh:
        fh.write(_good(1) + "\n")
        fh.write('{"test_name": "x", "pad": "' + "a" * (50 * 1024 * 1024) + '"}\n')
        fh.write(_good(2) + "\n")
    s = ingest_paths(duck, [f])
    assert (s.accepted, s.rejected) == (2, 1)
    assert s.rejects[0].line == 2 and "exceeds" in s.rejects[0].reason


def test_empty_file_is_rejected(tmp_path: Path, duck: DuckDBStore) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    good = tmp_path / "good.jsonl"
    good.write_text(_good(1) + "\n")
    s = ingest_paths(duck, [empty, good])
    assert (s.accepted, s.rejected) == (1, 1)
    assert s.rejects[0].file == str(empty) and "empty" in s.rejects[0].reason


def test_gzip_cut_short_keeps_what_came_before(tmp_path: Path, duck: DuckDBStore) -> None:
    whole = gzip.compress(("\n".join(_good(i) for i in range(2000)) + "\n").encode())
    f = tmp_path / "cut.jsonl.gz"
    f.write_bytes(whole[: len(whole) * 2 // 3])
    s = ingest_paths(duck, [f])
    assert s.accepted > 100
    assert s.rejected == 1 and "cut short" in s.rejects[0].reason
    assert duck.count() == s.accepted


def test_cli_exit_status_nonzero_when_nothing_read_or_a_line_rejected(tmp_path: Path) -> None:
    db = str(tmp_path / "o.duckdb")
    empty = tmp_path / "e.jsonl"
    empty.write_text("")
    assert run(["ingest", str(empty), "--db", db], check=False).returncode != 0
    mixed = tmp_path / "m.jsonl"
    mixed.write_text(_good(1) + "\n{bad\n")
    # the exit status contract: 1 = done, some input rejected, the good part kept
    assert run(["ingest", str(mixed), "--db", db], check=False).returncode == 1


def run(args: list[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([*OBS, *args], capture_output=True, text=True, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(proc.stderr)
    return proc


def test_kill_during_ingest_leaves_whole_measurements_and_rerun_completes(tmp_path: Path) -> None:
    n = 60_000
    f = tmp_path / "big.jsonl"
    with open(f, "w") as fh:
        for i in range(n):
            fh.write(_good(i) + "\n")
    db = tmp_path / "o.duckdb"
    proc = subprocess.Popen([*OBS, "ingest", str(f), "--db", str(db)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # kill once some, not all, batches are committed
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        time.sleep(0.2)
        # committed batches are in the file or, until a checkpoint, in its write-ahead log
        written = sum(p.stat().st_size for p in (db, Path(f"{db}.wal")) if p.exists())
        if written > 2_000_000 or proc.poll() is not None:
            break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    store = DuckDBStore(str(db))
    partial = store.count()
    assert partial < n
    assert partial % 5000 == 0, "only whole batches are committed"
    for d in store.documents(MeasurementFilter()):
        json.loads(d)  # every stored document is whole
    store.close()
    run(["ingest", str(f), "--db", str(db)])
    store = DuckDBStore(str(db))
    assert store.count() == n
    store.close()


@pytest.mark.parametrize("suffix", [".jsonl", ".jsonl.gz"])
def test_parallel_parsing_gives_exactly_the_serial_result(tmp_path: Path, suffix: str,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A large file is parsed by a pool of processes; counts, rejects (with file:line) and rows are the same.

    A plain file is cut into byte ranges that each worker reads itself (here small ones, cutting lines
    anywhere); a compressed one is read by the parent and sent in chunks of lines. The store learns its zstd
    dictionary from the head of the file first, so the workers compress the documents too."""
    import observatory.ingest as ingest_mod

    lines = []
    for i in range(3000):
        lines.append(_good(i) if i % 97 else '{"broken": ')
        if i % 500 == 0:
            lines.append(_good(i))  # a duplicate
        if i % 701 == 0:
            lines.append("  \t")  # blank: counted, not read
    f = tmp_path / f"mixed{suffix}"
    text = ("\n".join(lines) + "\n").encode()
    f.write_bytes(gzip.compress(text) if suffix.endswith(".gz") else text)
    monkeypatch.setattr(ingest_mod, "POOL_MIN_BYTES", 0)  # use the pool even for this small file
    monkeypatch.setattr(ingest_mod, "POOL_RANGE_BYTES", 1000)
    results = []
    for processes in (1, 2):
        store = DuckDBStore(str(tmp_path / f"p{processes}.duckdb"))
        s = ingest_paths(store, [f], processes=processes, batch_size=1200)
        docs = sorted(store.documents(MeasurementFilter()))
        results.append(((s.read, s.accepted, s.duplicates, s.rejected), [(r.line, r.reason) for r in s.rejects],
                        docs))
        store.close()
    assert results[0] == results[1]
    assert results[0][0][3] == 31 and results[0][0][2] == 5  # i=0 is broken, so its extra copy is new
    assert [line for line, _ in results[0][1]][:3] == [1, 100, 197]  # after a duplicate and a blank line


def test_pool_learns_the_dictionary_from_documents_without_the_probe_address(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Before the pool starts, the store trains its dictionary from the head of the file: from the documents as
    stored (no probe_ip), so the address is neither in the dictionary nor anywhere in the database file."""
    import observatory.ingest as ingest_mod

    secret = "203.0.113.77"
    lines = []
    for i in range(1500):
        d = json.loads(_good(i))
        d["probe_ip"] = secret
        d["test_keys"] = {"client_resolver": secret, "requests": [{"response": {"body": f"page {i} " * 20}}]}
        lines.append(json.dumps(d))
    f = tmp_path / "big.jsonl"
    f.write_text("\n".join(lines) + "\n")
    monkeypatch.setattr(ingest_mod, "POOL_MIN_BYTES", 0)
    monkeypatch.setattr(ingest_mod, "POOL_RANGE_BYTES", 50_000)
    db = tmp_path / "d.duckdb"
    store = DuckDBStore(str(db))
    assert store.document_encoder() is None
    compressed_by_workers: list[bool] = []
    insert = store.insert_table
    monkeypatch.setattr(store, "insert_table",
                        lambda t: (compressed_by_workers.append("raw" in t.column_names), insert(t))[1])
    s = ingest_paths(store, [f], processes=2, batch_size=400)
    assert (s.accepted, s.rejected) == (1500, 0)
    assert len(compressed_by_workers) > 1 and all(compressed_by_workers), "workers compress from the first batch"
    assert store.document_encoder() is not None, "the store learnt a dictionary"
    docs = [json.loads(d) for d in store.documents(MeasurementFilter())]
    assert len(docs) == 1500 and all("probe_ip" not in d and secret not in json.dumps(d) for d in docs)
    store.close()
    assert secret.encode() not in db.read_bytes()
