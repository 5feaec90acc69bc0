"""OONI's own models (the `oonidata` package from PyPI) load what our probe writes, blocked or not.

oonidata pins old libraries, so it lives in its own virtual environment (.venv-oonidata, created on first
use; the test is skipped with the reason when PyPI cannot be reached).
"""

from __future__ import annotations

import json
import subprocess
import sys
import venv
from pathlib import Path

import pytest
from probe_net import Zone, reset_on_data
from test_probe_techniques import HOST, HTTPS, IP, World

from observatory.measurement import measurement_from_dict
from observatory.probe.net import static_hosts

ROOT = Path(__file__).parent.parent
VENV = ROOT / ".venv-oonidata"
PY = VENV / "bin" / "python"

LOADER = r"""
import json, sys
from oonidata.dataclient import load_measurement
from oonidata.models.nettests import WebConnectivity
out = []
for line in open(sys.argv[1]):
    msmt = load_measurement(msmt=json.loads(line))
    assert isinstance(msmt, WebConnectivity), type(msmt)
    tk = msmt.test_keys
    out.append({"uid": msmt.measurement_uid, "cc": msmt.probe_cc, "asn": msmt.probe_asn,
                "queries": len(tk.queries or []), "tcp": len(tk.tcp_connect or []),
                "tls": len(tk.tls_handshakes or []), "requests": len(tk.requests or []),
                "control": tk.control is not None,
                "tls_failures": [h.failure for h in tk.tls_handshakes or []],
                "http_failure": tk.requests[0].failure if tk.requests else None})
print(json.dumps(out))
"""


def oonidata_python() -> Path:
    if not PY.exists():
        venv.create(VENV, with_pip=True)
    ok = subprocess.run([str(PY), "-c", "import oonidata"], capture_output=True).returncode == 0
    if not ok:
        r = subprocess.run([str(PY), "-m", "pip", "install", "-q", "oonidata==0.3.0"], capture_output=True,
                           text=True, timeout=600)
        if r.returncode != 0:
            pytest.skip(f"cannot install oonidata==0.3.0 from PyPI: {r.stderr.strip()[-300:]}")
    return PY


def test_oonidata_loads_probe_measurements(tmp_path: Path) -> None:
    py = oonidata_python()
    world = World(tmp_path)
    try:
        censor = world.net.dns(Zone({HOST: "NXDOMAIN"}))
        docs = [
            world.measure(HTTPS, world.good),
            world.measure(HTTPS, world.probe(resolver=f"127.0.0.1:{censor}", system_resolve=static_hosts({}))),
            world.measure(HTTPS, world.probe(connect_map={f"{IP}:443": f"127.0.0.1:{world.net.serve(reset_on_data)}"})),
            world.measure(HTTPS, world.good, helper=False),
        ]
    finally:
        world.close()
    path = tmp_path / "probe.jsonl"
    path.write_text("".join(json.dumps(d) + "\n" for d in docs))
    for d in docs:  # and our own model, too
        measurement_from_dict(d)
    r = subprocess.run([str(py), "-c", LOADER, str(path)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    loaded = json.loads(r.stdout)
    assert [x["uid"] for x in loaded] == [d["measurement_uid"] for d in docs]
    assert all(x["cc"] == "PK" and x["asn"] == "AS17557" and x["queries"] == 2 for x in loaded)
    assert loaded[0]["tls_failures"] == [None] and loaded[0]["control"] is True
    assert loaded[1]["http_failure"] == "dns_nxdomain_error"
    assert loaded[2]["tls_failures"] == ["connection_reset"]
    assert loaded[3]["control"] is False


def test_sample_in_tests_data_loads(tmp_path: Path) -> None:
    py = oonidata_python()
    src = Path(__file__).parent / "data" / "probe" / "measurement.json"
    path = tmp_path / "one.jsonl"
    path.write_text(json.dumps(json.loads(src.read_text())) + "\n")
    r = subprocess.run([str(py), "-c", LOADER, str(path)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    # the models are strict: a wrong shape is refused, so the loads above mean something
    broken = json.loads(src.read_text())
    broken["test_keys"]["tcp_connect"][0]["status"] = "connected"
    path.write_text(json.dumps(broken) + "\n")
    r = subprocess.run([str(py), "-c", LOADER, str(path)], capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "InvalidFieldValue" in r.stderr


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__]))
