"""A scenario, as the lab builds it: networks with regions and probes, platforms with addresses, timed events.

The scenario file is the simulator's TOML (docs/contracts.md), with times allowed as offsets from the lab's start
(`start = "+2m"`) and `interval_seconds` for the probes' cycle. This module turns it into a `LabPlan` and
gives every thing in the lab its address, from the documentation/benchmark ranges only:

    world <-> censor        192.0.2.0/30              (censor .1, world .2)
    world services          203.0.113.53 DNS, .80 control helper, .81 collector
    platform p (catalog)    198.18.p.10               all its domains resolve there
    censor block page       203.0.113.200             (on the censor's loopback)
    censor <-> ISP i        198.51.100.4i/30          (censor .4i+1, ISP .4i+2 = the ISP's resolver)
    ISP i, region r         198.19.(16i+r).0/24       (ISP .1, the region's probe host .2)
    its customers           198.19.(16i+r).16/28      .17-.26 answer (on the probe host), .27-.30 do not;
                                                      what the outside-in pinger probes from the world
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from observatory import catalog
from observatory.errors import ConfigError
from observatory.vocab import IncidentKind, Technique

WORLD_CENSOR_CENSOR = "192.0.2.1"
WORLD_CENSOR_WORLD = "192.0.2.2"
WORLD_DNS = "203.0.113.53"
HELPER_ADDR = "203.0.113.80"
COLLECTOR_ADDR = "203.0.113.81"
BLOCKPAGE_ADDR = "203.0.113.200"
SINKHOLE_ADDR = "198.18.254.254"  # a bogus DNS answer: nothing serves it
MAX_NETWORKS = 16
MAX_REGIONS = 15

_OFFSET = re.compile(r"^\+(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")
_TOP_KEYS = {"name", "seed", "start", "end", "interval_minutes", "interval_seconds", "targets", "noise",
             "country", "event", "description"}
_COUNTRY_KEYS = {"code", "timezone", "network", "name"}
_NETWORK_KEYS = {"asn", "name", "type", "probes", "regions"}
_EVENT_KEYS = {"kind", "country", "platforms", "technique", "start", "end", "asns", "regions", "coverage",
               "name", "description"}


def platform_address(platform_id: str) -> str:
    index = catalog.platform_ids().index(platform_id) + 1
    return f"198.18.{index}.10"


def isp_uplink(net_index: int) -> tuple[str, str]:
    """(censor side, ISP side) of the link between the censor and ISP `net_index`."""
    base = 4 * net_index
    return f"198.51.100.{base + 1}", f"198.51.100.{base + 2}"


def isp_block(net_index: int) -> str:
    """Every region subnet of ISP `net_index`: what the censor routes to it."""
    return f"198.19.{16 * net_index}.0/20"


def region_subnet(net_index: int, region_index: int) -> ipaddress.IPv4Network:
    return ipaddress.IPv4Network(f"198.19.{16 * net_index + region_index}.0/24")


CUSTOMERS_ANSWERING = 10  # of the 14 addresses of a customer block: a block is rarely all alive


def customer_block(net_index: int, region_index: int) -> ipaddress.IPv4Network:
    """A region's customers: the address block the outside-in pinger watches (inside the region's /24)."""
    return ipaddress.IPv4Network(f"198.19.{16 * net_index + region_index}.16/28")


def customer_hosts(net_index: int, region_index: int) -> list[str]:
    """The customer addresses that answer (assigned to the region's host namespace)."""
    return [str(a) for a in list(customer_block(net_index, region_index).hosts())[:CUSTOMERS_ANSWERING]]


@dataclass(frozen=True, slots=True, kw_only=True)
class LabNetwork:
    index: int
    country: str
    asn: int
    name: str
    type: str
    probes: int
    regions: tuple[str, ...]

    @property
    def resolver(self) -> str:
        return isp_uplink(self.index)[1]

    def probe_regions(self) -> list[str]:
        """The region of each probe: probes spread over the regions in turn."""
        return [self.regions[i % len(self.regions)] for i in range(self.probes)]


@dataclass(frozen=True, slots=True, kw_only=True)
class LabEvent:
    index: int
    kind: str
    country: str | None
    platforms: tuple[str, ...]
    technique: str | None
    start_s: float
    end_s: float
    asns: tuple[int, ...]
    regions: tuple[str, ...]

    def affects(self, net: LabNetwork) -> bool:
        if self.country is not None and net.country != self.country:
            return False
        return not self.asns or net.asn in self.asns

    def affected_regions(self, net: LabNetwork) -> list[int]:
        """Indexes of the regions of `net` this event hits (none when it does not hit the network)."""
        if not self.affects(net):
            return []
        return [i for i, r in enumerate(net.regions) if not self.regions or r in self.regions]


@dataclass(frozen=True, slots=True, kw_only=True)
class LabPlan:
    name: str
    interval_s: float
    duration_s: float
    targets: tuple[str, ...]
    networks: tuple[LabNetwork, ...]
    events: tuple[LabEvent, ...]
    source: str = ""

    @property
    def lab_id(self) -> str:
        """A short id for namespace names (`obs-<id>-w`): the scenario's name, sanitised."""
        name = re.sub(r"^lab[-_]", "", self.name.lower())
        return re.sub(r"[^a-z0-9]", "", name)[:10] or "lab"

    @property
    def countries(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(n.country for n in self.networks))


def parse_offset(value: Any, *, where: str, origin: datetime | None) -> float:
    """'+2m', '+4m30s', '+1h' -> seconds; an absolute time -> seconds after the scenario's start."""
    if isinstance(value, str):
        m = _OFFSET.match(value.strip())
        if m and any(m.groups()):
            h, mi, s = (int(g) if g else 0 for g in m.groups())
            return float(h * 3600 + mi * 60 + s)
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise ConfigError(f"{where}: {value!r} is neither an offset like '+2m' nor an ISO time") from None
    if isinstance(value, datetime):
        if origin is None:
            raise ConfigError(f"{where}: an absolute time needs an absolute scenario start")
        return (value - origin).total_seconds()
    raise ConfigError(f"{where}: expected a time, got {value!r}")


def _unknown(keys: set[str], allowed: set[str], where: str) -> None:
    extra = sorted(keys - allowed)
    if extra:
        raise ConfigError(f"{where}: unknown key {extra[0]!r} (allowed: {', '.join(sorted(allowed))})")


def load_plan(path: str | Path) -> LabPlan:
    """Reads a lab scenario; every error names the file and the key."""
    path = Path(path)
    if path.exists():
        _contract_check(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such scenario file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return plan_from_dict(raw, where=str(path))


def _contract_check(path: Path) -> None:
    """The contract's own validation first: the same messages as `observatory simulate` gives."""
    from observatory.simulate.scenario import load_scenario

    load_scenario(path, allow_offsets=True)


def plan_from_dict(raw: dict[str, Any], *, where: str) -> LabPlan:
    _unknown(set(raw), _TOP_KEYS, where)
    start_raw = raw.get("start", "+0s")
    origin = start_raw if isinstance(start_raw, datetime) else None
    if isinstance(start_raw, str) and not start_raw.startswith("+"):
        origin = datetime.fromisoformat(start_raw.replace("Z", "+00:00"))
    start = parse_offset(start_raw, where=f"{where}: start", origin=origin)
    end = parse_offset(raw.get("end"), where=f"{where}: end", origin=origin)
    if end <= start:
        raise ConfigError(f"{where}: end must be after start")
    if "interval_seconds" in raw:
        interval = float(raw["interval_seconds"])
    elif "interval_minutes" in raw:
        interval = float(raw["interval_minutes"]) * 60
    else:
        raise ConfigError(f"{where}: interval_seconds is required for a lab scenario")
    if interval <= 0:
        raise ConfigError(f"{where}: interval_seconds must be positive")
    known = set(catalog.platform_ids())
    targets = tuple(raw.get("targets") or catalog.platform_ids())
    for t in targets:
        if t not in known:
            raise ConfigError(f"{where}: targets: unknown platform {t!r}")
    networks: list[LabNetwork] = []
    for ci, c in enumerate(raw.get("country") or []):
        cw = f"{where}: country[{ci}]"
        _unknown(set(c), _COUNTRY_KEYS, cw)
        if "code" not in c:
            raise ConfigError(f"{cw}: code is required")
        for ni, n in enumerate(c.get("network") or []):
            nw = f"{cw}.network[{ni}]"
            _unknown(set(n), _NETWORK_KEYS, nw)
            regions = tuple(n.get("regions") or ["default"])
            if len(regions) > MAX_REGIONS:
                raise ConfigError(f"{nw}: at most {MAX_REGIONS} regions in the lab")
            probes = int(n.get("probes", len(regions)))
            if probes < 1:
                raise ConfigError(f"{nw}: probes must be at least 1")
            try:
                asn = int(str(n["asn"]).upper().removeprefix("AS"))
            except (KeyError, ValueError):
                raise ConfigError(f"{nw}: asn is required (a number)") from None
            networks.append(LabNetwork(index=len(networks), country=str(c["code"]).upper(), asn=asn,
                                       name=str(n.get("name", f"AS{asn}")), type=str(n.get("type", "fixed")),
                                       probes=probes, regions=regions))
    if not networks:
        raise ConfigError(f"{where}: at least one [[country.network]] is required")
    if len(networks) > MAX_NETWORKS:
        raise ConfigError(f"{where}: at most {MAX_NETWORKS} networks in the lab")
    events = [_event(i, e, where=f"{where}: event[{i}]", origin=origin, start=start, end=end,
                     networks=networks, known=known)
              for i, e in enumerate(raw.get("event") or [])]
    return LabPlan(name=str(raw.get("name", Path(where).stem)), interval_s=interval, duration_s=end - start,
                   targets=targets, networks=tuple(networks), events=tuple(events), source=where)


def _event(i: int, e: dict[str, Any], *, where: str, origin: datetime | None, start: float, end: float,
           networks: list[LabNetwork], known: set[str]) -> LabEvent:
    _unknown(set(e), _EVENT_KEYS, where)
    kind = e.get("kind")
    if kind not in {k.value for k in IncidentKind}:
        raise ConfigError(f"{where}: kind {kind!r} is not one of {', '.join(k.value for k in IncidentKind)}")
    technique = e.get("technique")
    if technique is not None and technique not in {t.value for t in Technique}:
        raise ConfigError(f"{where}: technique {technique!r} is unknown")
    if kind == IncidentKind.CONNECTIVITY_LOSS:
        technique = technique or Technique.UNREACHABLE.value
    elif kind == IncidentKind.THROTTLING:
        technique = technique or Technique.THROTTLING.value
    elif kind == IncidentKind.PLATFORM_RESTRICTION and technique is None:
        raise ConfigError(f"{where}: technique is required for a platform_restriction")
    platforms = tuple(e.get("platforms") or ())
    for p in platforms:
        if p not in known:
            raise ConfigError(f"{where}: platforms: unknown platform {p!r}")
    if kind != IncidentKind.CONNECTIVITY_LOSS and not platforms:
        raise ConfigError(f"{where}: platforms is required for {kind}")
    s = parse_offset(e.get("start"), where=f"{where}: start", origin=origin) - start
    t = parse_offset(e.get("end"), where=f"{where}: end", origin=origin) - start
    if not 0 <= s < t <= end - start:
        raise ConfigError(f"{where}: the event must lie inside the scenario and end after it starts")
    country = e.get("country")
    asns = tuple(int(str(a).upper().removeprefix("AS")) for a in e.get("asns") or ())
    regions = tuple(e.get("regions") or ())
    if kind != IncidentKind.PLATFORM_OUTAGE:
        if country is None:
            raise ConfigError(f"{where}: country is required for {kind}")
        mine = [n for n in networks if n.country == str(country).upper()]
        if not mine:
            raise ConfigError(f"{where}: country {country!r} has no network in the scenario")
        for a in asns:
            if a not in {n.asn for n in mine}:
                raise ConfigError(f"{where}: asns: AS{a} is not a network of {country}")
        for r in regions:
            if r not in {x for n in mine for x in n.regions}:
                raise ConfigError(f"{where}: regions: {r!r} is not a region of {country}")
    return LabEvent(index=i, kind=str(kind), country=str(country).upper() if country else None,
                    platforms=platforms, technique=technique, start_s=s, end_s=t, asns=asns, regions=regions)
