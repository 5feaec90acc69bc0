"""Where the probe says it is: flags over config file over an .mmdb lookup of the address the helper
reports; that address is never written. probe_id is random per installation and stays."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from mmdb_writer import MMDBWriter
from netaddr import IPSet
from test_probe_techniques import HTTPS, World

from observatory.errors import ConfigError
from observatory.probe.metadata import ProbeMetadata, from_config, from_mmdb, probe_id
from observatory.probe.runner import HelperClient, Runner


def write_mmdb(path: Path, network: str, record: dict) -> Path:
    w = MMDBWriter(ip_version=4, database_type="GeoLite2-ASN")
    w.insert_network(IPSet([network]), record)
    w.to_db_file(str(path))
    return path


PTCL = {"autonomous_system_number": 17557, "autonomous_system_organization": "PTCL",
        "country": {"iso_code": "PK"}, "subdivisions": [{"names": {"en": "Sindh"}}]}


def test_probe_id_is_random_and_persisted(tmp_path: Path) -> None:
    a = probe_id(tmp_path / "a")
    assert len(a) == 32 and probe_id(tmp_path / "a") == a
    assert probe_id(tmp_path / "b") != a


def test_config_file(tmp_path: Path) -> None:
    cfg = tmp_path / "probe.toml"
    cfg.write_text('[metadata]\ncc = "PK"\nasn = "AS45669"\nregion = "Punjab"\n'
                   '[probe]\nhelper = "http://h/"\n')
    meta, settings = from_config(cfg)
    assert (meta.cc, meta.asn, meta.region) == ("PK", 45669, "Punjab")
    assert settings == {"helper": "http://h/"}
    flags = ProbeMetadata(region="Sindh")
    merged = flags.merged(meta)
    assert (merged.region, merged.asn) == ("Sindh", 45669)  # flags win, the file fills the gaps


@pytest.mark.parametrize(("text", "message"), [
    ('[metadata]\ncountry = "PK"\n', "unknown keys ['country']"),
    ('[metadata]\nasn = "seventeen"\n', "asn"),
    ("[metadata\n", "probe.toml"),
])
def test_config_errors_say_what_and_where(tmp_path: Path, text: str, message: str) -> None:
    cfg = tmp_path / "probe.toml"
    cfg.write_text(text)
    with pytest.raises(ConfigError, match="probe.toml") as err:
        from_config(cfg)
    assert message in str(err.value)


def test_mmdb_lookup(tmp_path: Path) -> None:
    db = write_mmdb(tmp_path / "asn.mmdb", "203.0.113.0/24", PTCL)
    meta = from_mmdb([db], "203.0.113.9")
    assert (meta.cc, meta.asn, meta.network_name, meta.region) == ("PK", 17557, "PTCL", "Sindh")
    assert from_mmdb([db], "198.51.100.1") == ProbeMetadata()
    bad = tmp_path / "bad.mmdb"
    bad.write_bytes(b"not a database")
    with pytest.raises(ConfigError, match="bad.mmdb"):
        from_mmdb([bad], "203.0.113.9")


def test_metadata_from_helper_address_and_mmdb_never_written(tmp_path: Path) -> None:
    # the helper sees the probe coming from 127.0.0.1; the mmdb maps that network to PTCL in Sindh
    db = write_mmdb(tmp_path / "asn.mmdb", "127.0.0.0/8", PTCL)
    world = World(tmp_path)
    try:
        async def go() -> dict:
            client = HelperClient(world.helper.url + "/")
            runner = Runner(net=world.good, metadata=ProbeMetadata(region="Punjab"), probe_id="p",
                            helper=client, mmdb=[db])
            try:
                return await runner.measure(HTTPS)
            finally:
                await client.aclose()

        doc = asyncio.run(go())
    finally:
        world.close()
    assert (doc["probe_cc"], doc["probe_asn"], doc["probe_network_name"]) == ("PK", "AS17557", "PTCL")
    assert doc["annotations"]["region"] == "Punjab"  # the flag wins over the database
    text = json.dumps(doc)
    assert "x_client_address" not in text and "probe_ip" not in text
