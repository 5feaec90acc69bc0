"""The real commands, as a volunteer or the lab runs them: `observatory probe` against a local site (named
`localhost`, so even the system resolver stays on this machine), with a helper, to a file and to a collector;
`observatory probes add|list|revoke`."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner as _ClickRunner
from collector_app import make_app
from probe_net import LocalNet, UvicornThread, Zone, http_handler, page

from observatory.errors import ConfigError
from observatory.measurement import measurement_from_dict
from observatory.probe.helper import make_helper_app
from observatory.probe.net import NetConfig
from observatory.store.duckdb import DuckDBStore

with warnings.catch_warnings():  # typer imports a name click deprecates; not ours to fix
    warnings.simplefilter("ignore", DeprecationWarning)
    from typer.main import get_command

    from observatory.cli import app

BIN = [sys.executable, "-m", "observatory"]


class CliRunner(_ClickRunner):
    """click's runner over the Typer app (typer.testing imports a deprecated click name)."""

    def invoke(self, app_: object, args: list[str], **kw: object) -> object:  # type: ignore[override]
        return super().invoke(get_command(app_), args, **kw)  # type: ignore[arg-type]


def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    r = subprocess.run([*BIN, *args], capture_output=True, text=True, timeout=120)
    if check:
        assert r.returncode == 0, r.stderr[-2000:]
    return r


class Site:
    def __init__(self, tmp: Path) -> None:
        self.net = LocalNet()
        self.ca = self.net.write_ca(str(tmp / "ca.pem"))
        self.port = self.net.serve(http_handler(page()), tls=self.net.server_context(["localhost"]))
        self.dns = self.net.dns(Zone({"localhost": ["127.0.0.1"]}))
        self.helper = UvicornThread(make_helper_app(NetConfig(ca_file=self.ca)))
        self.targets = tmp / "targets.txt"
        self.targets.write_text(f"# a local site\nhttps://localhost:{self.port}/\n")

    def probe_args(self, tmp: Path) -> list[str]:
        return ["probe", "--targets", str(self.targets), "--once", "--resolver", f"127.0.0.1:{self.dns}",
                "--ca-file", self.ca, "--helper", self.helper.url + "/", "--cc", "PK", "--asn", "17557",
                "--network-name", "PTCL", "--region", "Punjab", "--state-dir", str(tmp / "state"),
                "--timeout", "2", "--quiet"]

    def close(self) -> None:
        self.helper.stop()
        self.net.close()


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    s = Site(tmp_path)
    yield s
    s.close()


def test_probe_to_file(site: Site, tmp_path: Path) -> None:
    out = tmp_path / "m.jsonl"
    run(*site.probe_args(tmp_path), "--out", str(out))
    docs = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(docs) == 1
    doc = docs[0]
    m = measurement_from_dict(doc)
    assert (m.probe_cc, m.probe_asn, m.region, m.network_name) == ("PK", 17557, "Punjab", "PTCL")
    assert doc["annotations"]["probe_id"] == (tmp_path / "state" / "probe_id").read_text().strip()
    tk = doc["test_keys"]
    assert tk["requests"][0]["response"]["code"] == 200
    assert tk["control"]["http_request"]["status_code"] == 200
    assert tk["queries"][1]["resolver_address"] == f"127.0.0.1:{site.dns}"
    assert "probe_ip" not in doc


def test_probe_to_collector(site: Site, tmp_path: Path) -> None:
    db = tmp_path / "c.duckdb"
    cred = json.loads(CliRunner().invoke(app, ["probes", "add", "lahore-1", "--db", str(db)]).output)
    assert set(cred) == {"token", "secret"}
    listed = json.loads(CliRunner().invoke(app, ["probes", "list", "--db", str(db), "--format", "json"]).output)
    assert [p["name"] for p in listed] == ["lahore-1"] and cred["token"] not in json.dumps(listed)
    store = DuckDBStore(str(db))
    collector = UvicornThread(make_app(store))
    try:
        spool = tmp_path / "spool"
        run(*site.probe_args(tmp_path), "--collector", collector.url + "/", "--token", cred["token"],
            "--secret", cred["secret"], "--spool", str(spool))
        assert store.count() == 1
        assert not list(spool.glob("*.json"))  # acknowledged, so removed
    finally:
        collector.stop()
        store.close()
    assert CliRunner().invoke(app, ["probes", "revoke", "lahore-1", "--db", str(db)]).exit_code == 0
    listed = json.loads(CliRunner().invoke(app, ["probes", "list", "--db", str(db), "--format", "json"]).output)
    assert listed[0]["revoked"] is True
    r = CliRunner().invoke(app, ["probes", "revoke", "nobody", "--db", str(db)])
    assert isinstance(r.exception, ConfigError) and "no probe named 'nobody'" in str(r.exception)


@pytest.mark.parametrize(("args", "message"), [
    (["--targets", "nonsense"], "--targets 'nonsense'"),
    (["--every", "soon"], "--every 'soon'"),
    (["--collector", "http://127.0.0.1:9/"], "needs --token and --secret"),
    (["--resolver", "8.8.8.8"], "IP:PORT"),
    (["--cc", "Pakistan"], "--cc"),
])
def test_bad_flags_are_clear_errors(args: list[str], message: str, tmp_path: Path) -> None:
    # in process (the subprocess path is exercised above): the ConfigError main() prints as "error: ..."
    r = CliRunner().invoke(app, ["probe", "--state-dir", str(tmp_path), *args])
    assert isinstance(r.exception, ConfigError) and message in str(r.exception), r.output


def test_every_command_help_ends_with_an_example() -> None:
    for cmd in (["probe"], ["helper"], ["probes", "add"], ["probes", "list"], ["probes", "revoke"]):
        r = CliRunner().invoke(app, [*cmd, "--help"], terminal_width=200)
        assert r.exit_code == 0
        assert "Example: observatory " + cmd[0] in " ".join(r.output.split()), r.output
