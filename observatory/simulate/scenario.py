"""Scenario files: the TOML contract shared by the simulator and the lab (see docs/contracts.md).

`load_scenario(path)` reads and validates a scenario and returns frozen, typed records. Every mistake is a
`ConfigError` naming the file, the key (`event[2].technique`, indices from 0) and what is wrong, so whoever
wrote the file can fix it without reading this code.

Lab scenarios (`allow_offsets=True`) may give times as offsets from the start ("+2m", "+4m30s") and use
`interval_seconds`; their start may be omitted or "now". Such a scenario is resolved to absolute times with
`Scenario.resolve(start)` once the run starts.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from observatory import catalog
from observatory.errors import ConfigError
from observatory.simulate.tomltable import TableReader
from observatory.vocab import IncidentKind, Technique

NETWORK_TYPES = ("fixed", "mobile")
# Techniques a platform_restriction may use (throttling has its own kind; unreachable is connectivity_loss).
RESTRICTION_TECHNIQUES = tuple(
    t.value for t in Technique if t not in (Technique.THROTTLING, Technique.UNREACHABLE)
)
TECHNIQUE_OF_KIND = {
    IncidentKind.THROTTLING.value: Technique.THROTTLING.value,
    IncidentKind.CONNECTIVITY_LOSS.value: Technique.UNREACHABLE.value,
}

Time = datetime | timedelta  # absolute, or an offset from the scenario's start (lab scenarios only)

_OFFSET = re.compile(r"^\+(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


@dataclass(frozen=True, slots=True, kw_only=True)
class Noise:
    failure_rate: float = 0.02  # share of measurements failing at random, any target
    probe_fault_rate: float = 0.002  # per probe-hour: the probe fails everything for 1-6 hours
    late_share: float = 0.05  # share uploaded 1-24 h after being taken
    duplicate_share: float = 0.01  # share uploaded twice


@dataclass(frozen=True, slots=True, kw_only=True)
class Network:
    asn: int
    name: str
    type: str  # fixed | mobile
    probes: int
    regions: tuple[str, ...]

    @property
    def is_mobile(self) -> bool:
        return self.type == "mobile"


@dataclass(frozen=True, slots=True, kw_only=True)
class Country:
    code: str
    timezone: str
    networks: tuple[Network, ...]

    @property
    def regions(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(r for n in self.networks for r in n.regions))

    @property
    def asns(self) -> tuple[int, ...]:
        return tuple(n.asn for n in self.networks)


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    kind: str
    country: str | None  # None for a worldwide platform_outage
    platforms: tuple[str, ...]  # empty for connectivity_loss (everything)
    technique: str | None  # None for platform_outage (the platform itself is down)
    start: Time
    end: Time
    asns: tuple[int, ...] = ()  # empty: every network of the country
    regions: tuple[str, ...] = ()  # empty: every region
    coverage: float = 1.0  # share of affected measurements that show the interference


@dataclass(frozen=True, slots=True, kw_only=True)
class Scenario:
    name: str
    seed: int
    start: Time  # timedelta(0) when a lab scenario starts "now"
    end: Time
    interval: timedelta
    targets: tuple[str, ...]
    noise: Noise
    countries: tuple[Country, ...]
    events: tuple[Event, ...]
    path: str = field(default="", compare=False)

    @property
    def is_resolved(self) -> bool:
        return isinstance(self.start, datetime)

    def resolve(self, start: datetime) -> Scenario:
        """The scenario with every offset turned into an absolute time counted from `start` (UTC)."""
        start = start.astimezone(UTC)

        def at(t: Time) -> datetime:
            if isinstance(t, datetime):
                return t
            base = self.start if isinstance(self.start, datetime) else start
            return base + t

        events = tuple(replace(e, start=at(e.start), end=at(e.end)) for e in self.events)
        return replace(self, start=at(self.start), end=at(self.end), events=events)

    def country(self, code: str) -> Country:
        for c in self.countries:
            if c.code == code:
                return c
        raise KeyError(code)


# --- loading and validation -------------------------------------------------------------------------------


def _parse_time(r: TableReader, name: str, value: Any, allow_offsets: bool) -> Time:
    if isinstance(value, datetime):  # a TOML datetime literal
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if not isinstance(value, str):
        r.fail(name, f'expected a time like "2024-01-20T13:45:00Z", got {value!r}')
    text = value.strip()
    if text.startswith("+"):
        m = _OFFSET.match(text)
        if not allow_offsets:
            r.fail(name, f"offset {text!r} is only allowed in lab scenarios; give an ISO 8601 UTC time")
        if not m or not any(m.groups()):
            r.fail(name, f'{text!r} is not an offset like "+2m", "+4m30s" or "+1h"')
        assert m is not None
        h, mi, s = (int(g or 0) for g in m.groups())
        return timedelta(hours=h, minutes=mi, seconds=s)
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        r.fail(name, f'{text!r} is not a time like "2024-01-20T13:45:00Z"')
        raise  # unreachable: fail() raised
    if t.tzinfo is None:
        r.fail(name, f"{text!r} has no time zone; write UTC times with a final Z")
    return t.astimezone(UTC)


TOP_KEYS = (
    "name",
    "seed",
    "start",
    "end",
    "interval_minutes",
    "interval_seconds",
    "targets",
    "noise",
    "country",
    "event",
)
NOISE_KEYS = ("failure_rate", "probe_fault_rate", "late_share", "duplicate_share")
COUNTRY_KEYS = ("code", "timezone", "network")
NETWORK_KEYS = ("asn", "name", "type", "probes", "regions")
EVENT_KEYS = ("kind", "country", "platforms", "technique", "start", "end", "asns", "regions", "coverage")


def load_scenario(path: str | Path, *, allow_offsets: bool = False) -> Scenario:
    """Reads and validates a scenario file. Raises ConfigError naming the file, the key and the problem."""
    p = str(path)
    try:
        raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{p}: no such scenario file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: cannot read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: not valid TOML: {exc}") from None
    return scenario_from_dict(raw, path=p, allow_offsets=allow_offsets)


def scenario_from_dict(
    raw: dict[str, Any], *, path: str = "<scenario>", allow_offsets: bool = False
) -> Scenario:
    r = TableReader(path, raw, "", TOP_KEYS)
    name = r.get("name", str)
    seed = r.get("seed", int, 0)
    start = _read_start(r, allow_offsets)
    end = _anchor(r, "end", start, _parse_time(r, "end", r.get("end", (str, datetime)), allow_offsets))
    if _later_or_equal(start, end):
        r.fail("end", f"{_show(end)} is not after start {_show(start)}")
    interval = _read_interval(r, allow_offsets)
    targets = r.strings("targets")
    if not targets:
        r.fail("targets", "empty: give at least one platform id")
    for i, t in enumerate(targets):
        if t not in catalog.platforms():
            r.fail(f"targets[{i}]", f"unknown platform {t!r} (known: {', '.join(catalog.platform_ids())})")
    if len(set(targets)) != len(targets):
        r.fail("targets", "a platform is listed twice")

    noise_table = r.get("noise", dict, {})
    nr = TableReader(path, noise_table, "noise.", NOISE_KEYS)
    noise = Noise(**{k: nr.number(k, getattr(Noise(), k), 0.0, 1.0) for k in NOISE_KEYS})

    countries = tuple(_read_country(path, i, c) for i, c in enumerate(r.tables("country")))
    if not countries:
        r.fail("country", "no [[country]]: a scenario needs at least one country with networks")
    _check_unique(r, countries)
    events = tuple(
        _read_event(path, i, e, targets, countries, start, end, allow_offsets)
        for i, e in enumerate(r.tables("event"))
    )
    return Scenario(
        name=name,
        seed=seed,
        start=start,
        end=end,
        interval=interval,
        targets=targets,
        noise=noise,
        countries=countries,
        events=events,
        path=path,
    )


def _read_start(r: TableReader, allow_offsets: bool) -> Time:
    value = r.table.get("start")
    if allow_offsets and (value is None or value == "now"):
        return timedelta(0)
    return _parse_time(r, "start", r.get("start", (str, datetime)), allow_offsets)


def _read_interval(r: TableReader, allow_offsets: bool) -> timedelta:
    has_min, has_sec = "interval_minutes" in r.table, "interval_seconds" in r.table
    if has_min and has_sec:
        r.fail("interval_seconds", "give interval_minutes or interval_seconds, not both")
    if has_sec:
        seconds = r.number("interval_seconds", 0, 1, 7 * 86400)
    else:
        seconds = r.number("interval_minutes", 15, 1 / 60, 7 * 1440) * 60
    if seconds < 1:
        r.fail("interval_minutes", "must be at least one second")
    return timedelta(seconds=seconds)


def _anchor(r: TableReader, name: str, start: Time, t: Time) -> Time:
    """An offset counted from an absolute start becomes absolute; an absolute time needs an absolute start."""
    if isinstance(t, timedelta) and isinstance(start, datetime):
        return start + t
    if isinstance(t, datetime) and isinstance(start, timedelta):
        r.fail(name, 'an absolute time in a scenario that starts "now": give offsets such as "+2m"')
    return t


def _later_or_equal(a: Time, b: Time) -> bool:
    """a >= b, when both are comparable (both absolute or both offsets)."""
    if type(a) is not type(b):
        return False
    return a >= b  # type: ignore[operator]


def _show(t: Time) -> str:
    if isinstance(t, datetime):
        return t.strftime("%Y-%m-%dT%H:%M:%SZ")
    return f"+{int(t.total_seconds())}s"


def _read_country(path: str, i: int, table: dict[str, Any]) -> Country:
    r = TableReader(path, table, f"country[{i}].", COUNTRY_KEYS)
    code = r.get("code", str)
    if len(code) != 2 or not code.isalpha() or not code.isupper():
        r.fail("code", f'{code!r} is not an ISO 3166-1 alpha-2 code such as "PK"')
    tz = r.get("timezone", str)
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        r.fail("timezone", f'unknown time zone {tz!r} (use an IANA name such as "Asia/Karachi")')
    networks = tuple(
        _read_network(path, f"country[{i}].network[{j}].", n) for j, n in enumerate(r.tables("network"))
    )
    if not networks:
        r.fail("network", "no [[country.network]]: a country needs at least one network")
    return Country(code=code, timezone=tz, networks=networks)


def _read_network(path: str, prefix: str, table: dict[str, Any]) -> Network:
    r = TableReader(path, table, prefix, NETWORK_KEYS)
    asn = r.get("asn", int)
    if not 0 < asn < 2**32:
        r.fail("asn", f"{asn} is not an AS number")
    ntype = r.get("type", str, "fixed")
    if ntype not in NETWORK_TYPES:
        r.fail("type", f"{ntype!r}: choose one of {', '.join(NETWORK_TYPES)}")
    probes = r.get("probes", int)
    if not 1 <= probes <= 100_000:
        r.fail("probes", f"{probes} is outside [1, 100000]")
    regions = r.strings("regions")
    if not regions:
        r.fail("regions", "empty: give at least one region")
    return Network(asn=asn, name=r.get("name", str), type=ntype, probes=probes, regions=regions)


def _check_unique(r: TableReader, countries: tuple[Country, ...]) -> None:
    seen_cc: set[str] = set()
    seen_asn: set[int] = set()
    for i, c in enumerate(countries):
        if c.code in seen_cc:
            r.fail(f"country[{i}].code", f"country {c.code} is defined twice")
        seen_cc.add(c.code)
        for j, n in enumerate(c.networks):
            if n.asn in seen_asn:
                r.fail(f"country[{i}].network[{j}].asn", f"AS{n.asn} is defined twice")
            seen_asn.add(n.asn)


def _read_event(
    path: str,
    i: int,
    table: dict[str, Any],
    targets: tuple[str, ...],
    countries: tuple[Country, ...],
    start: Time,
    end: Time,
    allow_offsets: bool,
) -> Event:
    r = TableReader(path, table, f"event[{i}].", EVENT_KEYS)
    kinds = tuple(k.value for k in IncidentKind)
    kind = r.get("kind", str)
    if kind not in kinds:
        r.fail("kind", f"unknown kind {kind!r} (known: {', '.join(kinds)})")

    country: Country | None = None
    if kind == IncidentKind.PLATFORM_OUTAGE:
        if "country" in table:
            r.fail("country", "a platform_outage is worldwide: omit country")
    else:
        code = r.get("country", str)
        matches = [c for c in countries if c.code == code]
        if not matches:
            r.fail(
                "country",
                f"{code!r} is not one of the scenario's countries ({', '.join(c.code for c in countries)})",
            )
        country = matches[0]

    platforms = _read_event_platforms(r, kind, targets)
    technique = _read_technique(r, kind)

    ev_start = _anchor(
        r, "start", start, _parse_time(r, "start", r.get("start", (str, datetime)), allow_offsets)
    )
    ev_end = _anchor(r, "end", start, _parse_time(r, "end", r.get("end", (str, datetime)), allow_offsets))
    if _later_or_equal(ev_start, ev_end):
        r.fail("end", f"{_show(ev_end)} is not after the event's start {_show(ev_start)}")
    if not _within(start, ev_start) or not _within(ev_start, end):
        r.fail("start", f"{_show(ev_start)} is outside the scenario ({_show(start)} to {_show(end)})")
    if not _within(ev_end, end) or not _within(start, ev_end):
        r.fail("end", f"{_show(ev_end)} is outside the scenario ({_show(start)} to {_show(end)})")

    asns = tuple(r.get("asns", list, [], what="a list of AS numbers"))
    regions = r.strings("regions", ())
    if country is None and (asns or regions):
        r.fail("asns" if asns else "regions", "a worldwide platform_outage cannot name networks or regions")
    if country is not None:
        for j, a in enumerate(asns):
            if isinstance(a, bool) or not isinstance(a, int):
                r.fail(f"asns[{j}]", f"expected an AS number such as 17557, got {a!r}")
            if a not in country.asns:
                r.fail(
                    f"asns[{j}]",
                    f"AS{a} is not a network of {country.code} ({', '.join(f'AS{x}' for x in country.asns)})",
                )
        chosen = [n for n in country.networks if not asns or n.asn in asns]
        available = {reg for n in chosen for reg in n.regions}
        for j, reg in enumerate(regions):
            if reg not in available:
                r.fail(
                    f"regions[{j}]",
                    f"{reg!r} is not a region of the event's networks in {country.code} "
                    f"({', '.join(sorted(available))})",
                )
    coverage = r.number("coverage", 1.0, 0.0, 1.0)
    if coverage == 0:
        r.fail("coverage", "0 means nothing happens; give a share in (0, 1]")
    return Event(
        kind=kind,
        country=country.code if country else None,
        platforms=platforms,
        technique=technique,
        start=ev_start,
        end=ev_end,
        asns=asns,
        regions=regions,
        coverage=coverage,
    )


def _read_event_platforms(r: TableReader, kind: str, targets: tuple[str, ...]) -> tuple[str, ...]:
    if kind == IncidentKind.CONNECTIVITY_LOSS:
        if r.table.get("platforms"):
            r.fail("platforms", "a connectivity_loss affects everything: omit platforms")
        return ()
    platforms = r.strings("platforms")
    if not platforms:
        r.fail("platforms", f"a {kind} needs at least one platform")
    for j, p in enumerate(platforms):
        if p not in catalog.platforms():
            r.fail(f"platforms[{j}]", f"unknown platform {p!r} (known: {', '.join(catalog.platform_ids())})")
        if p not in targets:
            r.fail(f"platforms[{j}]", f"{p!r} is not among the scenario's targets ({', '.join(targets)})")
    return platforms


def _read_technique(r: TableReader, kind: str) -> str | None:
    known = tuple(t.value for t in Technique)
    value: str | None = r.get("technique", str, None)
    if value is not None and value not in known:
        r.fail("technique", f"unknown technique {value!r} (known: {', '.join(known)})")
    if kind == IncidentKind.PLATFORM_RESTRICTION:
        if value is None:
            r.fail("technique", f"a platform_restriction needs one of {', '.join(RESTRICTION_TECHNIQUES)}")
        if value not in RESTRICTION_TECHNIQUES:
            r.fail(
                "technique",
                f"{value!r} is not a restriction technique "
                f"(use kind throttling or connectivity_loss instead)",
            )
        return value
    if kind == IncidentKind.PLATFORM_OUTAGE:
        if value is not None:
            r.fail("technique", "a platform_outage is the platform's own failure: omit technique")
        return None
    implied = TECHNIQUE_OF_KIND[kind]
    if value is not None and value != implied:
        r.fail("technique", f"a {kind} can only be {implied!r}, got {value!r}")
    return implied


def _within(a: Time, b: Time) -> bool:
    """a <= b when comparable; an absolute time and an offset cannot be compared until resolved."""
    if type(a) is not type(b):
        return True
    return a <= b  # type: ignore[operator]
