"""Where the probe is: country, network, region, and its pseudonymous identity.

Sources, first wins: command-line flags, then a TOML config file, then an optional `.mmdb` (MaxMind or DB-IP
format) lookup of the public address the control helper reports. That address is used for the lookup in
memory and never written anywhere. `probe_id` is random per installation and persisted in the state dir.
"""

from __future__ import annotations

import os
import secrets
import tomllib
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from observatory.errors import ConfigError
from observatory.measurement import format_asn, parse_asn

UNKNOWN_CC = "ZZ"


@dataclass(frozen=True, slots=True, kw_only=True)
class ProbeMetadata:
    cc: str | None = None
    asn: int | None = None
    network_name: str | None = None
    region: str | None = None
    resolver_ip: str | None = None
    resolver_asn: int | None = None
    resolver_network_name: str | None = None

    def merged(self, other: ProbeMetadata) -> ProbeMetadata:
        """Self, with gaps filled from `other` (self wins)."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        return replace(self, **{k: getattr(other, k) for k, v in values.items() if v in (None, "")})

    def envelope(self) -> dict[str, Any]:
        """The envelope fields this metadata fills (OONI names and formats)."""
        asn = self.asn or 0
        return {
            "probe_cc": (self.cc or UNKNOWN_CC).upper(),
            "probe_asn": format_asn(asn),
            "probe_network_name": self.network_name or "",
            "resolver_asn": format_asn(self.resolver_asn if self.resolver_asn is not None else asn),
            "resolver_ip": self.resolver_ip or "",
            "resolver_network_name": self.resolver_network_name or self.network_name or "",
        }


_CONFIG_KEYS = {"cc", "asn", "network_name", "region", "resolver_ip", "resolver_asn", "resolver_network_name"}


def from_config(path: Path) -> tuple[ProbeMetadata, dict[str, Any]]:
    """Metadata and the other settings (`[probe]` table) of a TOML config file. Unknown metadata keys are errors."""
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    meta_raw = data.pop("metadata", {})
    unknown = set(meta_raw) - _CONFIG_KEYS
    if unknown:
        raise ConfigError(f"{path}: [metadata] has unknown keys {sorted(unknown)}; known: {sorted(_CONFIG_KEYS)}")
    meta = dict(meta_raw)
    for key in ("asn", "resolver_asn"):
        if key in meta:
            try:
                meta[key] = parse_asn(meta[key], where=f"{path}: [metadata] {key}")
            except Exception as exc:
                raise ConfigError(str(exc)) from None
    return ProbeMetadata(**meta), data.get("probe", {})


def from_mmdb(paths: list[Path], address: str | None) -> ProbeMetadata:
    """Country / ASN / network / region of `address` from MaxMind-format databases (ASN, Country, City)."""
    if not address or not paths:
        return ProbeMetadata()
    import maxminddb

    found: dict[str, Any] = {}
    for path in paths:
        try:
            with maxminddb.open_database(str(path)) as reader:
                record = reader.get(address)
        except (OSError, ValueError, maxminddb.InvalidDatabaseError) as exc:
            raise ConfigError(f"{path}: not a readable .mmdb database: {exc}") from None
        if isinstance(record, dict):
            found.update(_mmdb_fields(record))
    return ProbeMetadata(**{k: v for k, v in found.items() if v})


def _mmdb_fields(record: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    country = record.get("country") or record.get("registered_country")
    if isinstance(country, dict) and country.get("iso_code"):
        out["cc"] = str(country["iso_code"]).upper()
    if isinstance(record.get("country_code"), str):  # DB-IP lite / iptoasn layouts
        out["cc"] = record["country_code"].upper()
    asn = record.get("autonomous_system_number") or record.get("asn")
    if asn:
        out["asn"] = parse_asn(asn if isinstance(asn, int) else str(asn))
    org = record.get("autonomous_system_organization") or record.get("as_organization") or record.get("as_name")
    if org:
        out["network_name"] = str(org)
    subs = record.get("subdivisions")
    if isinstance(subs, list) and subs and isinstance(subs[0], dict):
        names = subs[0].get("names") or {}
        if names.get("en"):
            out["region"] = names["en"]
    return out


def probe_id(state_dir: Path) -> str:
    """This installation's pseudonymous id: random, created once, kept in `state_dir/probe_id`."""
    path = state_dir / "probe_id"
    try:
        existing = path.read_text().strip()
    except FileNotFoundError:
        existing = ""
    if existing:
        return existing
    state_dir.mkdir(parents=True, exist_ok=True)
    new = secrets.token_hex(16)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w") as fh:
        fh.write(new + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return new
