"""Crash safety: kill -9 during detection, a full disk, a read-only store. Clear errors, a store that opens
afterwards, every acknowledged measurement present, no incident lost or duplicated.

The disk-full and read-only cases run in a private mount namespace (`unshare -m`) on a small tmpfs, so the
host's mounts are never touched; they are skipped, saying why, where that is not possible."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
OBS = [sys.executable, "-m", "observatory"]


def _can_unshare() -> str | None:
    if os.geteuid() != 0:
        return "needs root for a private mount namespace"
    if not shutil.which("unshare"):
        return "unshare(1) is not installed"
    probe = subprocess.run(["unshare", "-m", "--propagation", "private", "true"], capture_output=True)
    if probe.returncode != 0:
        return f"cannot create a mount namespace here: {probe.stderr.decode().strip()}"
    return None


needs_unshare = pytest.mark.skipif(_can_unshare() is not None, reason=str(_can_unshare()))


def _good_lines(n: int, start: int = 0) -> str:
    out = []
    for i in range(start, start + n):
        out.append(json.dumps({
            "measurement_uid": f"crash-{i:08d}", "test_name": "web_connectivity",
            "measurement_start_time": f"2024-01-20 {i // 3600 % 24:02d}:{i // 60 % 60:02d}:{i % 60:02d}",
            "probe_cc": "PK", "probe_asn": "AS17557", "input": "https://x.com/",
            "test_keys": {"pad": os.urandom(600).hex()},  # incompressible: fills the disk quickly
        }))
    return "\n".join(out) + "\n"


_IN_NAMESPACE = textwrap.dedent("""
    import json, subprocess, sys
    from pathlib import Path
    from observatory.errors import StoreError
    from observatory.ingest import Ingestor
    from observatory.store.duckdb import DuckDBStore
    mnt, data, mode = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=12m", "tmpfs", str(mnt)], check=True)
    db = str(mnt / "obs.duckdb")
    acked = 0
    error = None
    if mode == "readonly":
        s = DuckDBStore(db)
        with Ingestor(s, batch_size=100) as ing:
            for i, line in enumerate(data.read_bytes().splitlines()[:300]):
                ing.ingest_bytes(line, where="seed", line=i + 1)
        acked = ing.summary.accepted
        s.close()
        subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)
    def progress(summary):
        global acked
        acked = max(acked, summary.accepted)
    try:
        s = DuckDBStore(db)
        with Ingestor(s, batch_size=200, on_progress=progress) as ing:
            for i, line in enumerate(data.read_bytes().splitlines()):
                ing.ingest_bytes(line, where=str(data), line=i + 1)
        s.close()
    except StoreError as exc:
        error = f"{type(exc).__name__}: {exc}"
    cli = subprocess.run([sys.executable, "-m", "observatory", "ingest", str(data), "--db", db],
                         capture_output=True, text=True)
    if mode == "full":
        subprocess.run(["mount", "-o", "remount,size=200m", str(mnt)], check=True)  # space again
    reopened = DuckDBStore(db, read_only=(mode == "readonly"))
    uids = {json.loads(d)["measurement_uid"] for d in reopened.documents(__import__(
        "observatory.store", fromlist=["MeasurementFilter"]).MeasurementFilter())}
    print(json.dumps({"acked": acked, "error": error, "stored": reopened.count(), "uids": len(uids),
                      "cli_rc": cli.returncode, "cli_err": cli.stderr.strip().splitlines()[-1:]}))
""")


def _run_in_namespace(tmp_path: Path, mode: str, lines: int) -> dict:
    data = tmp_path / "data.jsonl"
    data.write_text(_good_lines(lines))
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    script = tmp_path / "ns.py"
    script.write_text(_IN_NAMESPACE)
    out = subprocess.run(["unshare", "-m", "--propagation", "private", sys.executable, str(script), str(mnt),
                          str(data), mode], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@needs_unshare
def test_full_disk_gives_a_clear_error_and_keeps_every_acknowledged_measurement(tmp_path: Path) -> None:
    r = _run_in_namespace(tmp_path, "full", 20_000)
    assert r["error"] and "full" in r["error"].lower(), r
    assert r["cli_rc"] != 0 and any("full" in e.lower() for e in r["cli_err"]), r
    assert r["stored"] >= r["acked"] > 0, r
    assert r["uids"] == r["stored"], "every stored document is whole and readable"


@needs_unshare
def test_read_only_store_gives_a_clear_error_and_loses_nothing(tmp_path: Path) -> None:
    r = _run_in_namespace(tmp_path, "readonly", 1000)
    assert r["error"] and ("read-only" in r["error"].lower() or "cannot write" in r["error"].lower()), r
    assert r["cli_rc"] != 0 and r["cli_err"], r
    assert r["stored"] == r["acked"] == 300, r


def _simulated_store(tmp_path: Path) -> Path:
    """A small simulated scenario (the national shutdown) ingested into a fresh store."""
    scenario = ROOT / "scenarios" / "ir-national-shutdown.toml"
    out = tmp_path / "m.jsonl"
    subprocess.run([*OBS, "simulate", str(scenario), "--out", str(out), "--truth", str(tmp_path / "t.json")],
                   check=True, capture_output=True, timeout=600)
    db = tmp_path / "obs.duckdb"
    subprocess.run([*OBS, "ingest", str(out), "--db", str(db)], check=True, capture_output=True, timeout=600)
    return db


def _detect(db: Path) -> list[dict]:
    p = subprocess.run([*OBS, "detect", "--db", str(db), "--format", "json"], capture_output=True, text=True,
                       timeout=600, check=True)
    return json.loads(p.stdout)


def test_kill_during_detection_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    db = _simulated_store(tmp_path)
    clean = tmp_path / "clean.duckdb"
    shutil.copy(db, clean)
    reference = _detect(clean)
    assert reference, "the scenario has an incident to find"
    for delay in (0.5, 1.5, 3.0):
        proc = subprocess.Popen([*OBS, "detect", "--db", str(db), "--format", "json"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    after = _detect(db)
    assert [i["id"] for i in after] == [i["id"] for i in reference]
    assert len({i["id"] for i in after}) == len(after)
    strip = ("evidence", "confidence")
    assert [{k: v for k, v in i.items() if k not in strip} for i in after] == \
        [{k: v for k, v in i.items() if k not in strip} for i in reference]
