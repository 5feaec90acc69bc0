"""The incident: the observatory's conclusion, in the JSON shape of CONTRACTS.md."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any


def iso(t: datetime | None) -> str | None:
    if t is None:
        return None
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso(s: str | None) -> datetime | None:
    if s is None:
        return None
    t = datetime.fromisoformat(s.replace("Z", "+00:00"))
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


@dataclass(frozen=True, slots=True, kw_only=True)
class Assessment:
    deliberate: float
    reasons: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Incident:
    id: str
    country: str | None
    kind: str
    scope: str
    asns: tuple[int, ...]
    regions: tuple[str, ...]
    platforms: tuple[str, ...]
    techniques: tuple[str, ...]
    start: datetime
    end: datetime | None
    status: str
    confirmed_at: datetime | None
    confidence: float
    assessment: Assessment = field(default_factory=lambda: Assessment(deliberate=0.0))
    evidence: dict[str, Any] = field(default_factory=dict)
    # analysts' review (Dashboard): None, "reviewed" or "dismissed", with a note
    review: dict[str, Any] | None = None

    def with_(self, **changes: Any) -> Incident:
        return replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "country": self.country,
            "kind": self.kind,
            "scope": self.scope,
            "asns": [f"AS{a}" for a in self.asns],
            "regions": list(self.regions),
            "platforms": list(self.platforms),
            "techniques": list(self.techniques),
            "start": iso(self.start),
            "end": iso(self.end),
            "status": self.status,
            "confirmed_at": iso(self.confirmed_at),
            "confidence": round(self.confidence, 3),
            "assessment": {"deliberate": round(self.assessment.deliberate, 3),
                           "reasons": list(self.assessment.reasons)},
            "evidence": self.evidence,
        }
        if self.review is not None:
            out["review"] = self.review
        return out

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Incident:
        a = d.get("assessment") or {}
        start = parse_iso(d["start"])
        assert start is not None
        return cls(
            id=str(d["id"]),
            country=d.get("country"),
            kind=d["kind"],
            scope=d.get("scope", "national"),
            asns=tuple(int(str(x).upper().removeprefix("AS")) for x in d.get("asns") or ()),
            regions=tuple(d.get("regions") or ()),
            platforms=tuple(d.get("platforms") or ()),
            techniques=tuple(d.get("techniques") or ()),
            start=start,
            end=parse_iso(d.get("end")),
            status=d.get("status", "ended" if d.get("end") else "confirmed"),
            confirmed_at=parse_iso(d.get("confirmed_at")),
            confidence=float(d.get("confidence", 1.0)),
            assessment=Assessment(deliberate=float(a.get("deliberate", 0.0)),
                                  reasons=tuple(a.get("reasons") or ())),
            evidence=dict(d.get("evidence") or {}),
            review=d.get("review"),
        )
