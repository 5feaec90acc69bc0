"""A store usable while it is served: `observatory serve` (a real process on a real port, a real DuckDB file) lets
the CLI read and write the same store, and read-only commands work on a file they cannot write."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from observatory.ingest import ingest_paths
from observatory.store.duckdb import DuckDBStore

ROOT = Path(__file__).resolve().parent.parent
OONI = ROOT / "tests" / "data" / "ooni" / "measurements.jsonl"
OBS = [sys.executable, "-m", "observatory"]
WAIT = "8"  # seconds a command waits for the store: bounded, so that a regression fails instead of hanging


def _env() -> dict[str, str]:
    return os.environ | {"OBSERVATORY_STORE_WAIT": WAIT, "PYTHONPATH": str(ROOT)}


def _cli(*args: str, user: str | None = None) -> subprocess.CompletedProcess[str]:
    prefix = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups"] if user is not None else []
    # the unprivileged user's home is root's: matplotlib's cache goes where it may write
    env = _env() | ({"MPLCONFIGDIR": tempfile.mkdtemp(), "HOME": "/nonexistent"} if user is not None else {})
    if user is not None:
        os.chmod(env["MPLCONFIGDIR"], 0o777)
    return subprocess.run([*prefix, *OBS, *args], capture_output=True, text=True, timeout=180, env=env, cwd=ROOT)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _store(path: Path) -> str:
    store = DuckDBStore(str(path))
    try:
        assert ingest_paths(store, [OONI], rejects_path=path.with_suffix(".rejects")).accepted > 10
    finally:
        store.close()
    return str(path)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """(store path, base URL) of `observatory serve` running on it."""
    db = _store(tmp_path / "obs.duckdb")
    port = _free_port()
    proc = subprocess.Popen([*OBS, "serve", "--db", db, "--port", str(port), "--detect-every", "0"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=_env(), cwd=ROOT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(base + "/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "serve did not come up"
            time.sleep(0.2)
        yield db, base
    finally:
        proc.terminate()
        proc.wait(30)


def test_every_kind_of_command_works_on_a_served_store(served: tuple[str, str]) -> None:
    db, base = served
    runs = {
        "stats": _cli("stats", "--db", db, "--format", "json"),
        "probes add": _cli("probes", "add", "lahore-1", "--db", db),
        "events add": _cli("events", "add", "--db", db, "--country", "PK", "--time", "2024-01-20T15:00:00Z",
                           "--title", "PTI virtual rally"),
        "detect": _cli("detect", "--db", db, "--format", "json"),
    }
    failed = {name: (r.returncode, r.stderr.strip()[-300:]) for name, r in runs.items() if r.returncode != 0}
    assert not failed, failed
    assert json.loads(runs["stats"].stdout)["measurements"] > 10
    cred = json.loads(runs["probes add"].stdout)

    # the service sees what the CLI wrote: the new probe can upload, and once revoked (by the CLI, while
    # served) it cannot
    def upload() -> int:
        from observatory.simulate.output import sign

        body = json.dumps({"measurements": []}).encode()
        return httpx.post(base + "/api/v1/measurements", content=body, timeout=30, headers={
            "Authorization": f"Bearer {cred['token']}", "X-Observatory-Signature": sign(body, cred["secret"]),
            "Content-Type": "application/json"}).status_code

    assert upload() == 200
    revoked = _cli("probes", "revoke", "lahore-1", "--db", db)
    assert revoked.returncode == 0, revoked.stderr
    assert upload() == 401
    # and the service still answers, from the same file, with what the CLI added
    events = httpx.get(base + "/healthz", timeout=30)
    assert events.status_code == 200 and events.json()["measurements"] > 10


def test_a_store_held_by_another_process_is_exit_3_with_one_line_naming_it(tmp_path: Path) -> None:
    """A process that does not share (here a plain writer in a child process) keeps the file: the command waits
    its bounded time, then says so in one line."""
    db = _store(tmp_path / "obs.duckdb")
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from observatory.store.duckdb import DuckDBStore; s = DuckDBStore(sys.argv[1]); "
        "print('held', flush=True); time.sleep(60)"), db], stdout=subprocess.PIPE, text=True, env=_env())
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        started = time.monotonic()
        r = _cli("stats", "--db", db)
        assert r.returncode == 3
        assert r.stderr.count("\n") == 1 and db in r.stderr and "in use by another process" in r.stderr
        assert time.monotonic() - started >= float(WAIT) - 1  # it waited for the file before giving up
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.skipif(os.geteuid() == 0 and shutil.which("setpriv") is None, reason="needs setpriv to drop root")
def test_read_only_commands_work_on_a_read_only_file() -> None:
    # a directory of its own, reachable by the unprivileged user (pytest's tmp_path is private to root)
    where = Path(tempfile.mkdtemp(prefix="observatory-ro-"))
    db = _store(where / "obs.duckdb")
    os.chmod(db, 0o444)
    os.chmod(where, 0o555)  # not even a marker can be written beside it
    user = "65534" if os.geteuid() == 0 else None  # nobody: root writes through any mode bits
    try:
        for args in (["stats"], ["probes", "list"], ["events", "list"],
                     ["export", "--out", "/dev/null", "--format", "jsonl"]):
            r = _cli(*args, "--db", db, user=user)
            assert r.returncode == 0, (args, r.stderr)
        # a write says plainly that the store cannot be written: exit 3, one line
        r = _cli("events", "add", "--db", db, "--country", "PK", "--time", "2024-01-20T15:00:00Z", "--title",
                 "x", user=user)
        assert r.returncode == 3 and r.stderr.count("\n") == 1, r.stderr
    finally:
        os.chmod(where, 0o755)
        shutil.rmtree(where)
