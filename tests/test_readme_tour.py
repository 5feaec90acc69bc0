"""The README's quick tour runs as written, exit codes included: each command of its block, in order, from a
fresh directory laid out like the checkout (tests/ and scenarios/ linked in), as a new user would type it.

What is not run as written, and why, is listed in STAND_INS and SKIPPED below; nothing else is changed.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

# Commands that cannot run here as written: they reach the public internet or need root.
SKIPPED = {
    "probe": "measures the real platforms over the public internet (the probe is tested against local servers "
             "in tests/test_probe_*.py)",
    "ooni sync": "reads OONI's public bucket over the internet (tested against a local S3 stand-in in "
                 "tests/test_ooni_sync.py)",
    "lab run": "needs root and network namespaces (tests/test_lab_run.py, marked lab)",
}


def tour_block(readme: str) -> list[str]:
    """The lines of the first ```sh block after the "A quick tour" heading."""
    section = readme.split("## A quick tour", 1)[1]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block, "the tour has no ```sh block"
    return block.group(1).splitlines()


def parse_tour(readme: str) -> list[tuple[list[str], int, str]]:
    """(argv, expected exit status, the line as written) for each command; `# exit N` in a line's comment says
    which status that command must end with (0 when not said)."""
    out = []
    for line in tour_block(readme):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        command, _, comment = text.partition("#")
        m = re.search(r"\bexit (\d+)\b", comment)
        out.append((shlex.split(command), int(m.group(1)) if m else 0, text))
    return out


def _name(argv: list[str]) -> str:
    words = [w for w in argv[1:] if not w.startswith("-")]
    two = " ".join(words[:2])
    return two if two in SKIPPED else words[0]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ioda_stand_in(path: Path) -> None:
    """Stands in for the IODA export the tour imports (IODA is on the public internet): an ordinary day of PK's
    national BGP signal at its usual level, in the signals CSV the command reads."""
    rows = ["time,country,region,asn,signal,value"]
    rows += [f"2024-01-20T{h:02d}:{m:02d}:00Z,PK,,,bgp,{100.0 - (h % 3) * 0.1:.1f}" for h in range(24)
             for m in (0, 30)]
    path.write_text("\n".join(rows) + "\n")


def test_the_readme_tour_parses_into_commands_with_their_exit_status() -> None:
    tour = parse_tour((ROOT / "README.md").read_text())
    assert len(tour) >= 15 and all(argv[0] in (".", "observatory") for argv, _, _ in tour)
    assert any(code == 3 for _, code, _ in tour), "the tour shows what a typo in --db does"


@pytest.mark.timeout(1500)
def test_the_readme_tour_runs_as_written(tmp_path: Path) -> None:
    for name in ("tests", "scenarios"):
        (tmp_path / name).symlink_to(ROOT / name)
    _ioda_stand_in(tmp_path / "ioda-pk.csv")
    env = os.environ | {"PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "PYTHONPATH": str(ROOT),
                        "OBSERVATORY_STORE_WAIT": "60"}
    incident_id = None
    ran: list[str] = []
    for argv, expected, line in parse_tour((ROOT / "README.md").read_text()):
        if argv[0] == ".":
            continue  # `. .venv/bin/activate`: the environment above puts the venv's bin first on PATH
        if _name(argv) in SKIPPED:
            continue
        argv = [a for a in argv]
        if "INCIDENT_ID" in argv:
            # the placeholder the reader fills from `detect`: the 20 January incident, the reference case
            assert incident_id, "no incident of 20 January detected before the tour needs one"
            argv = [incident_id if a == "INCIDENT_ID" else a for a in argv]
        if _name(argv) == "serve":
            _serve(argv, env, tmp_path)
            ran.append(line)
            continue
        res = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
        assert res.returncode == expected, f"`{line}` exited {res.returncode}:\n{res.stderr[-1500:]}"
        if expected:
            assert res.stderr.count("\n") == 1 and res.stderr.startswith("error: "), res.stderr
        if _name(argv) == "detect" and "json" in argv:
            found = [i["id"] for i in json.loads(res.stdout) if i["start"].startswith("2024-01-20")]
            incident_id = found[0] if found else None
        ran.append(line)
    assert len(ran) >= 13, ran
    assert not (tmp_path / "obs.duckb").exists(), "the typo made a store"


def _serve(argv: list[str], env: dict[str, str], cwd: Path) -> None:
    """`serve` runs until stopped: started, asked for its health and the incident list, and stopped. The one
    change: port 8000 may be taken on a shared machine, so a free port stands in for it."""
    port = str(_free_port())
    argv = [port if a == "8000" else a for a in argv]
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, f"serve exited {proc.returncode}: {proc.stderr.read() if proc.stderr else ''}"
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/api/v1/incidents", timeout=10)
                if r.status_code == 200:
                    assert r.json(), "the served store has the tour's incidents"
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "serve did not answer"
            time.sleep(0.3)
        # and while it is served, the store is still the tour's to use
        stats = subprocess.run(["observatory", "stats", "--db", "obs.duckdb"], cwd=cwd, env=env,
                               capture_output=True, text=True, timeout=180)
        assert stats.returncode == 0, stats.stderr
    finally:
        proc.terminate()
        proc.wait(30)
