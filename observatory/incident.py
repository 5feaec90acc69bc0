"""The incident: the observatory's conclusion, in the JSON shape of docs/contracts.md.

The records here are what the detector writes and what reports read, field by field, so the type checker sees
both sides. Times stay datetimes until the wire (`to_json`); reading (`from_json`) accepts what older stores
hold: a key this version does not know is kept, untouched, in `extra` and written back as it was.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime
from typing import Any

from observatory.vocab import IncidentKind, Scope, Status


def iso(t: datetime | None) -> str | None:
    if t is None:
        return None
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso(s: str | None) -> datetime | None:
    if s is None:
        return None
    t = datetime.fromisoformat(s.replace("Z", "+00:00"))
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def asn_text(asn: int) -> str:
    return f"AS{asn}"


def parse_asn(value: object) -> int:
    """17557 from "AS17557", "as17557" or 17557; ValueError otherwise."""
    return int(str(value).upper().removeprefix("AS"))


def _time(value: object) -> datetime | None:
    """A wire time, or None when it is missing or not one (an older or hand-made record)."""
    if not isinstance(value, str):
        return None
    try:
        return parse_iso(value)
    except ValueError:
        return None


def _int(value: object, default: int = 0) -> int:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else default


def _strs(value: object) -> tuple[str, ...]:
    return tuple(str(v) for v in value) if isinstance(value, list | tuple) else ()


def _extra(d: Mapping[str, Any], known: tuple[str, ...]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if k not in known}


def _unread(d: Mapping[str, Any], known: tuple[str, ...]) -> dict[str, Any]:
    """The keys a record does not know, and the known ones of a shape it cannot read: kept as they came, so
    reading and writing back loses nothing."""
    mappings = ("by_technique", "previous_episodes")
    return {k: v for k, v in d.items() if k not in known or (k in mappings and not isinstance(v, Mapping))}


@dataclass(frozen=True, slots=True, kw_only=True)
class Assessment:
    deliberate: float
    reasons: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"deliberate": round(self.deliberate, 3), "reasons": list(self.reasons)}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Assessment:
        return cls(deliberate=float(d.get("deliberate", 0.0)), reasons=tuple(d.get("reasons") or ()))


@dataclass(frozen=True, slots=True, kw_only=True)
class NetworkEvidence:
    """One affected network, as the detector saw it: its first anomalous time and its own counts."""

    asn: int
    name: str = ""
    onset: datetime | None = None
    probe_observations: int = 0
    anomalous: int = 0
    platforms: tuple[str, ...] = ()
    silent: bool = False
    techniques: tuple[str, ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"asn": asn_text(self.asn), "name": self.name, "onset": iso(self.onset),
                "probe_observations": self.probe_observations, "anomalous": self.anomalous,
                "platforms": list(self.platforms), "silent": self.silent, "techniques": list(self.techniques),
                **self.extra}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> NetworkEvidence:
        known = ("asn", "name", "onset", "probe_observations", "anomalous", "platforms", "silent", "techniques")
        return cls(asn=parse_asn(d.get("asn")), name=str(d.get("name") or ""), onset=_time(d.get("onset")),
                   probe_observations=_int(d.get("probe_observations")), anomalous=_int(d.get("anomalous")),
                   platforms=_strs(d.get("platforms")), silent=bool(d.get("silent", False)),
                   techniques=_strs(d.get("techniques")), extra=_extra(d, known))


@dataclass(frozen=True, slots=True, kw_only=True)
class FlaggedProbe:
    """A probe failing several targets at once while the rest of its network was fine (detect/probes.py)."""

    probe: str
    country: str
    asn: int
    first: datetime | None
    last: datetime | None
    anomalous_buckets: int
    targets: tuple[str, ...]
    others_anomalous_share: float

    def to_json(self) -> dict[str, Any]:
        return {"probe": self.probe, "country": self.country, "asn": asn_text(self.asn), "first": iso(self.first),
                "last": iso(self.last), "anomalous_buckets": self.anomalous_buckets, "targets": list(self.targets),
                "others_anomalous_share": self.others_anomalous_share}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> FlaggedProbe:
        return cls(probe=str(d.get("probe", "")), country=str(d.get("country", "")), asn=parse_asn(d.get("asn")),
                   first=_time(d.get("first")), last=_time(d.get("last")),
                   anomalous_buckets=_int(d.get("anomalous_buckets")), targets=_strs(d.get("targets")),
                   others_anomalous_share=float(d.get("others_anomalous_share") or 0.0))


@dataclass(frozen=True, slots=True, kw_only=True)
class SignalEvidence:
    """One outside-in series that dropped (detect/outside.py): which, where, when, how deep."""

    source: str
    signal: str
    region: str | None
    asn: int | None
    start: datetime | None
    end: datetime | None
    min_ratio: float

    def to_json(self) -> dict[str, Any]:
        return {"source": self.source, "signal": self.signal, "region": self.region,
                "asn": asn_text(self.asn) if self.asn else None, "start": iso(self.start), "end": iso(self.end),
                "min_ratio": self.min_ratio}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> SignalEvidence:
        asn = d.get("asn")
        return cls(source=str(d.get("source", "")), signal=str(d.get("signal", "")), region=d.get("region") or None,
                   asn=parse_asn(asn) if asn else None, start=_time(d.get("start")), end=_time(d.get("end")),
                   min_ratio=float(d.get("min_ratio") or 0.0))


@dataclass(frozen=True, slots=True, kw_only=True)
class PreviousEpisodes:
    """The earlier incidents of the same story (detect.link_series): "the third evening in a row"."""

    ids: tuple[str, ...]
    count: int
    days: int

    def to_json(self) -> dict[str, Any]:
        return {"ids": list(self.ids), "count": self.count, "days": self.days}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> PreviousEpisodes:
        ids = _strs(d.get("ids"))
        return cls(ids=ids, count=_int(d.get("count"), len(ids)), days=_int(d.get("days")))


@dataclass(frozen=True, slots=True, kw_only=True)
class Evidence:
    """What the detector saw. A field is None where the incident's source does not write it (an incident seen
    only by outside-in signals has `signals` alone; one the simulator wrote as truth has only `extra`): the
    wire leaves such a key out, as it always has.

    `probes`: distinct probe keys that witnessed it; `series`: how many series alarmed; `probe_observations`
    and `anomalous`: counts over those series; `by_technique`: anomalous observations per verdict;
    `affected_platforms`, `countries`; `example_measurements`: ids an analyst opens first (detect/run.py).
    """

    probes: int | None = None
    networks: tuple[NetworkEvidence, ...] | None = None
    series: int | None = None
    probe_observations: int | None = None
    anomalous: int | None = None
    by_technique: Mapping[str, int] | None = None
    affected_platforms: tuple[str, ...] | None = None
    countries: tuple[str, ...] | None = None
    example_measurements: tuple[str, ...] | None = None
    flagged_probes: tuple[FlaggedProbe, ...] | None = None
    signals: tuple[SignalEvidence, ...] | None = None
    previous_episodes: PreviousEpisodes | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "extra" or value is None:
                continue
            out[f.name] = _wire(value)
        out.update(self.extra)
        return out

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Evidence:
        def rows(key: str) -> list[Mapping[str, Any]]:
            value = d.get(key)
            return [r for r in value if isinstance(r, Mapping)] if isinstance(value, list | tuple) else []

        def opt_int(key: str) -> int | None:
            return _int(d[key]) if key in d else None

        def opt_strs(key: str) -> tuple[str, ...] | None:
            return _strs(d[key]) if key in d else None

        by_technique = d.get("by_technique")
        previous = d.get("previous_episodes")
        return cls(
            probes=opt_int("probes"),
            networks=tuple(_networks(rows("networks"))) if "networks" in d else None,
            series=opt_int("series"),
            probe_observations=opt_int("probe_observations"),
            anomalous=opt_int("anomalous"),
            by_technique=({str(k): _int(v) for k, v in by_technique.items()} if isinstance(by_technique, Mapping)
                          else None),
            affected_platforms=opt_strs("affected_platforms"),
            countries=opt_strs("countries"),
            example_measurements=opt_strs("example_measurements"),
            flagged_probes=tuple(FlaggedProbe.from_json(r) for r in rows("flagged_probes"))
            if "flagged_probes" in d else None,
            signals=tuple(SignalEvidence.from_json(r) for r in rows("signals")) if "signals" in d else None,
            previous_episodes=PreviousEpisodes.from_json(previous) if isinstance(previous, Mapping) else None,
            extra=_unread(d, tuple(f.name for f in fields(cls) if f.name != "extra")),
        )

    # The wire view, for callers written against the old dict (tests, scripts): new code reads the fields.
    def __getitem__(self, key: str) -> Any:
        return self.to_json()[key]

    def __contains__(self, key: object) -> bool:
        return key in self.to_json()

    def get(self, key: str, default: Any = None) -> Any:
        return self.to_json().get(key, default)


def _networks(rows: list[Mapping[str, Any]]) -> list[NetworkEvidence]:
    """The rows that name a network; one whose ASN cannot be read says nothing a report can use."""
    out = []
    for r in rows:
        try:
            out.append(NetworkEvidence.from_json(r))
        except ValueError:
            continue
    return out


def _wire(value: Any) -> Any:
    if hasattr(value, "to_json"):
        return value.to_json()
    if isinstance(value, tuple):
        return [_wire(v) for v in value]
    if isinstance(value, Mapping):
        return dict(value)
    return value


@dataclass(frozen=True, slots=True, kw_only=True)
class Incident:
    id: str
    country: str | None
    kind: IncidentKind
    scope: Scope
    asns: tuple[int, ...]
    regions: tuple[str, ...]
    platforms: tuple[str, ...]
    techniques: tuple[str, ...]
    start: datetime
    end: datetime | None
    status: Status
    confirmed_at: datetime | None
    confidence: float
    assessment: Assessment = field(default_factory=lambda: Assessment(deliberate=0.0))
    evidence: Evidence = field(default_factory=Evidence)
    # analysts' review (Dashboard): None, "reviewed" or "dismissed", with a note
    review: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        # the vocabularies checked once, here: a plain string becomes its member (or a clear ValueError)
        object.__setattr__(self, "kind", IncidentKind(self.kind))
        object.__setattr__(self, "scope", Scope(self.scope))
        object.__setattr__(self, "status", Status(self.status))
        if isinstance(self.evidence, Mapping):  # callers written against the old dict
            object.__setattr__(self, "evidence", Evidence.from_json(self.evidence))

    def with_(self, **changes: Any) -> Incident:
        return replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "country": self.country,
            "kind": self.kind.value,
            "scope": self.scope.value,
            "asns": [asn_text(a) for a in self.asns],
            "regions": list(self.regions),
            "platforms": list(self.platforms),
            "techniques": list(self.techniques),
            "start": iso(self.start),
            "end": iso(self.end),
            "status": self.status.value,
            "confirmed_at": iso(self.confirmed_at),
            "confidence": round(self.confidence, 3),
            "assessment": self.assessment.to_json(),
            "evidence": self.evidence.to_json(),
        }
        if self.review is not None:
            out["review"] = self.review
        return out

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Incident:
        start = parse_iso(d["start"])
        assert start is not None
        return cls(
            id=str(d["id"]),
            country=d.get("country"),
            kind=IncidentKind(d["kind"]),
            scope=Scope(d.get("scope", Scope.NATIONAL)),
            asns=tuple(parse_asn(x) for x in d.get("asns") or ()),
            regions=tuple(d.get("regions") or ()),
            platforms=tuple(d.get("platforms") or ()),
            techniques=tuple(d.get("techniques") or ()),
            start=start,
            end=parse_iso(d.get("end")),
            status=Status(d.get("status", Status.ENDED if d.get("end") else Status.CONFIRMED)),
            confirmed_at=parse_iso(d.get("confirmed_at")),
            confidence=float(d.get("confidence", 1.0)),
            assessment=Assessment.from_json(d.get("assessment") or {}),
            evidence=Evidence.from_json(d.get("evidence") or {}),
            review=d.get("review"),
        )
