"""Lab scenarios -> plans, and the verification of incidents against events (pure: no root needed)."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from observatory.errors import ConfigError
from observatory.incident import Incident
from observatory.lab.plan import LabPlan, load_plan, parse_offset, plan_from_dict, region_subnet
from observatory.lab.verify import expected_incidents, render, verify

SCENARIOS = Path(__file__).parent.parent / "scenarios" / "lab"
T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(("text", "seconds"), [("+2m", 120), ("+4m30s", 270), ("+1h", 3600), ("+45s", 45)])
def test_offsets(text: str, seconds: int) -> None:
    assert parse_offset(text, where="x", origin=None) == seconds


def test_offset_garbage_names_the_key() -> None:
    with pytest.raises(ConfigError, match="event.start.*'soon'"):
        parse_offset("soon", where="event.start", origin=None)


@pytest.mark.parametrize("name", sorted(str(p.relative_to(SCENARIOS)) for p in SCENARIOS.rglob("*.toml")))
def test_shipped_lab_scenarios_load(name: str) -> None:
    plan = load_plan(SCENARIOS / name)
    assert plan.interval_s == 20
    for ev in plan.events:
        assert 0 <= ev.start_s < ev.end_s <= plan.duration_s


def test_there_is_a_lab_scenario_per_technique() -> None:
    from observatory.vocab import Technique

    covered = {load_plan(p).events[0].technique or "platform_outage" for p in (SCENARIOS / "one").glob("*.toml")}
    # http_interference has no censor mechanism of its own here (the block page and resets cover HTTP)
    assert covered >= {t.value for t in Technique} - {"http_interference"} | {"platform_outage"}


def _raw(**event: object) -> dict[str, object]:
    return {"name": "t", "start": "+0s", "end": "+5m", "interval_seconds": 20, "targets": ["facebook", "control"],
            "country": [{"code": "PK", "timezone": "Asia/Karachi", "network": [
                {"asn": 1, "name": "A", "probes": 2, "regions": ["North", "South"]},
                {"asn": 2, "name": "B", "probes": 2, "regions": ["North", "South"]}]}],
            "event": [event] if event else []}


@pytest.mark.parametrize(("event", "message"), [
    ({"kind": "platform_restriction", "country": "PK", "platforms": ["facebook"], "technique": "smoke",
      "start": "+1m", "end": "+2m"}, "technique 'smoke'"),
    ({"kind": "platform_restriction", "country": "PK", "platforms": ["myspace"], "technique": "tcp_reset",
      "start": "+1m", "end": "+2m"}, "myspace"),
    ({"kind": "platform_restriction", "country": "PK", "platforms": ["facebook"], "technique": "tcp_reset",
      "start": "+1m", "end": "+9m"}, "inside the scenario"),
    ({"kind": "platform_restriction", "country": "PK", "platforms": ["facebook"], "technique": "tcp_reset",
      "start": "+1m", "end": "+2m", "asns": [99]}, "AS99"),
    ({"kind": "platform_restriction", "country": "PK", "platforms": ["facebook"], "technique": "tcp_reset",
      "start": "+1m", "end": "+2m", "colour": "red"}, "unknown key 'colour'"),
])
def test_bad_events_are_rejected_with_where_and_what(event: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        plan_from_dict(_raw(**event), where="s.toml")


def test_regions_get_their_own_subnets_and_probes_spread_over_them() -> None:
    plan = plan_from_dict(_raw(), where="s.toml")
    a, b = plan.networks
    assert a.probe_regions() == ["North", "South"]
    subnets = {region_subnet(n.index, r) for n in (a, b) for r in range(2)}
    assert len(subnets) == 4
    # only the benchmark range (198.18.0.0/15) for the probes' hosts
    assert all(s.subnet_of(ipaddress.IPv4Network("198.18.0.0/15")) for s in subnets)


def _plan(**event: object) -> LabPlan:
    return plan_from_dict(_raw(**event), where="s.toml")


def _incident(**kw: object) -> Incident:
    base: dict[str, object] = dict(id="x", country="PK", kind="platform_restriction", scope="national", asns=(1, 2),
                                   regions=("North", "South"), platforms=("facebook",),
                                   techniques=("tls_interference",), start=T0 + timedelta(seconds=60),
                                   end=T0 + timedelta(seconds=120), status="ended", confirmed_at=None,
                                   confidence=0.9)
    base.update(kw)
    return Incident(**base)  # type: ignore[arg-type]


TLS = {"kind": "platform_restriction", "country": "PK", "platforms": ["facebook"], "technique": "tls_interference",
       "start": "+1m", "end": "+2m"}
TOL = timedelta(seconds=40)


def test_a_matching_incident_verifies() -> None:
    v = verify(expected_incidents(_plan(**TLS), T0), [_incident(start=T0 + timedelta(seconds=75))], TOL)
    assert v.ok, render(v, T0)
    assert "all events found" in render(v, T0)


@pytest.mark.parametrize(("change", "problem"), [
    ({"techniques": ("tcp_reset",)}, "technique"),
    ({"scope": "network", "asns": (1,)}, "scope"),
    ({"platforms": ("facebook", "twitter")}, "platforms"),
    ({"start": T0 + timedelta(seconds=150), "end": T0 + timedelta(seconds=200)}, "start"),
    ({"end": None}, "never ended"),
])
def test_a_wrong_incident_is_a_miss(change: dict[str, object], problem: str) -> None:
    v = verify(expected_incidents(_plan(**TLS), T0), [_incident(**change)], TOL)
    assert not v.ok
    assert problem in "; ".join(v.events[0].problems)


def test_nothing_found_is_a_miss_and_anything_else_is_an_extra() -> None:
    assert not verify(expected_incidents(_plan(**TLS), T0), [], TOL).ok
    v = verify(expected_incidents(_plan(), T0), [_incident()], TOL)
    assert not v.ok and len(v.extras) == 1
    assert "EXTRA" in render(v, T0)


def test_expected_scope_follows_the_events_networks_and_regions() -> None:
    regional = expected_incidents(_plan(kind="connectivity_loss", country="PK", regions=["North"], start="+1m",
                                        end="+2m"), T0)[0]
    assert (regional.scope, regional.regions, regional.asns) == ("regional", ("North",), (1, 2))
    network = expected_incidents(_plan(**{**TLS, "asns": [2]}), T0)[0]
    assert (network.scope, network.asns) == ("network", (2,))
    assert expected_incidents(_plan(**TLS), T0)[0].scope == "national"
