"""The simulator's ground truth: a scenario's events as incidents in the contract's JSON shape (docs/contracts.md),
what detection is scored against."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

from observatory.simulate.scenario import Event, Scenario
from observatory.vocab import IncidentKind, Scope, Status


def truth(scenario: Scenario) -> list[dict[str, Any]]:
    """The scenario's events as incidents in the contract's JSON shape: exactly what happened."""
    out = []
    for i, e in enumerate(scenario.events):
        assert isinstance(e.start, datetime) and isinstance(e.end, datetime)
        asns: list[int] = []
        regions: list[str] = []
        scope = Scope.NATIONAL.value
        if e.country is not None:
            country = scenario.country(e.country)
            nets = [n for n in country.networks if not e.asns or n.asn in e.asns]
            asns = sorted(n.asn for n in nets)
            covered = {r for n in nets for r in n.regions}
            regions = sorted(covered & set(e.regions)) if e.regions else sorted(covered)
            if e.regions and not set(country.regions) <= set(e.regions):
                scope = Scope.REGIONAL.value
            elif len(nets) < len(country.networks):
                scope = Scope.NETWORK.value
        techniques = [e.technique] if e.technique else []
        # an event that lasts to the end of the scenario is still going on when the data ends: no end is known
        ongoing = isinstance(scenario.end, datetime) and e.end >= scenario.end
        out.append(
            {
                "id": _truth_id(scenario, i),
                "country": e.country,
                "kind": e.kind,
                "scope": scope,
                "asns": [f"AS{a}" for a in asns],
                "regions": regions,
                "platforms": list(e.platforms),
                "techniques": techniques,
                "start": _iso(e.start),
                "end": None if ongoing else _iso(e.end),
                "status": Status.CONFIRMED.value if ongoing else Status.ENDED.value,
                "confirmed_at": None,
                "confidence": 1.0,
                "assessment": {"deliberate": _deliberate(e), "reasons": []},
                "evidence": {"source": "simulator ground truth", "coverage": e.coverage},
            }
        )
    return _one_decision(scenario, out)


def _one_decision(scenario: Scenario, incidents: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Events that block the same platforms of one country over the same span, each on its own networks and
    by its own technique (DNS on one ISP, TLS on another), are one decision carried out by several operators:
    one incident, its networks and techniques the union, its scope over them all."""
    merged: dict[tuple[Any, ...], dict[str, Any]] = {}
    out: list[dict[str, Any]] = []
    for inc in incidents:
        key = (inc["country"], inc["kind"], tuple(sorted(inc["platforms"])), inc["start"], inc["end"])
        first = merged.get(key)
        if first is None or inc["kind"] == IncidentKind.PLATFORM_OUTAGE or inc["country"] is None:
            merged.setdefault(key, inc)
            out.append(inc)
            continue
        first["asns"] = sorted(set(first["asns"]) | set(inc["asns"]), key=lambda a: int(a[2:]))
        first["regions"] = sorted(set(first["regions"]) | set(inc["regions"]))
        first["techniques"] = sorted(set(first["techniques"]) | set(inc["techniques"]))
        networks = scenario.country(inc["country"]).networks
        if len(first["asns"]) == len(networks) and first["scope"] == Scope.NETWORK.value:
            first["scope"] = Scope.NATIONAL.value
    return out


def _truth_id(scenario: Scenario, i: int) -> str:
    return "truth-" + hashlib.sha256(f"{scenario.name}/{i}".encode()).hexdigest()[:12]


def _deliberate(e: Event) -> float:
    return 0.0 if e.kind == IncidentKind.PLATFORM_OUTAGE else 1.0


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
