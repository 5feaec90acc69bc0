"""The pure detector on hand-made series cells (tests/detect_world.py): no store, no simulator, milliseconds."""

from __future__ import annotations

from datetime import timedelta

import pytest
from detect_world import T0, Event, Net, World

from observatory.detect import DetectConfig, detect_incidents, disagreeing_probes
from observatory.detect.series import fold

DAY2 = T0 + timedelta(days=2)
ONSET = DAY2 + timedelta(hours=13, minutes=50)
END = DAY2 + timedelta(hours=17)


def block(**kw: object) -> Event:
    args: dict[str, object] = {"kind": "block", "start": ONSET, "end": END}
    args.update(kw)
    return Event(**args)  # type: ignore[arg-type]


def minutes(a, b) -> float:  # type: ignore[no-untyped-def]
    return abs((a - b).total_seconds()) / 60


def test_constant_series_yields_no_incident() -> None:
    assert detect_incidents(World(noise=0.0).cells()) == []


@pytest.mark.parametrize("seed", [1, 2])
def test_noise_alone_yields_no_incident(seed: int) -> None:
    # 3% random failures on every target for a week, three networks: nothing to report
    assert detect_incidents(World(days=5, seed=seed, noise=0.03).cells()) == []


def test_national_restriction_is_one_incident_with_kind_scope_technique_and_timing() -> None:
    w = World(events=[block(platforms=("twitter", "facebook"), technique="tls_interference")])
    [inc] = detect_incidents(w.cells())
    assert inc.country == "PK" and inc.kind == "platform_restriction" and inc.scope == "national"
    assert set(inc.platforms) == {"twitter", "facebook"}
    assert inc.techniques == ("tls_interference",)
    assert set(inc.asns) == {17557, 45669, 23674}
    assert inc.status == "ended"
    assert minutes(inc.start, ONSET) <= 5 and inc.end is not None and minutes(inc.end, END) <= 15
    assert inc.confirmed_at is not None and ONSET < inc.confirmed_at <= ONSET + timedelta(minutes=10)
    assert inc.assessment.deliberate >= 0.8
    assert any("control sites normal" in r for r in inc.assessment.reasons)
    assert inc.evidence["probes"] >= 10


def test_shifting_the_series_in_time_shifts_the_incidents() -> None:
    w = World(events=[block()])
    base = detect_incidents(w.cells())
    shift = timedelta(hours=7, minutes=25)
    moved = detect_incidents(w.cells(shift=shift))
    assert len(base) == len(moved) == 1
    a, b = base[0], moved[0]
    assert b.start - a.start == shift
    assert a.end is not None and b.end is not None and b.end - a.end == shift
    assert a.confirmed_at is not None and b.confirmed_at is not None and b.confirmed_at - a.confirmed_at == shift
    assert (a.kind, a.scope, a.platforms, a.asns) == (b.kind, b.scope, b.platforms, b.asns)


def test_duplicate_cells_change_nothing() -> None:
    cells = World(events=[block()]).cells()
    once = [i.to_json() for i in detect_incidents(cells)]
    twice = [i.to_json() for i in detect_incidents(cells + cells[::3])]
    assert once == twice and len(once) == 1


def test_ongoing_incident_has_no_end_and_is_confirmed() -> None:
    w = World(days=2.65, events=[block(end=T0 + timedelta(days=30))])
    [inc] = detect_incidents(w.cells())
    assert inc.end is None and inc.status == "confirmed"


@pytest.mark.parametrize("probes", [3, 12])
def test_a_single_faulty_probe_is_never_an_incident_and_is_flagged(probes: int) -> None:
    w = World(countries={"PK": [Net(17557, probes=probes), Net(45669)]}, events=[
        Event(kind="faulty", start=DAY2 + timedelta(hours=3), end=DAY2 + timedelta(hours=9), asns=(17557,), probe=0),
    ])
    cells = w.cells()
    assert detect_incidents(cells) == []
    flagged = disagreeing_probes(fold(cells, 300))
    assert [f["probe"] for f in flagged] == ["p:17557-0"]


def test_platform_failing_from_the_control_too_in_many_countries_is_an_outage_not_censorship() -> None:
    countries = {"PK": [Net(17557), Net(45669)], "TR": [Net(9121), Net(15897)], "IR": [Net(44244)]}
    w = World(countries=countries, events=[Event(kind="down", start=ONSET, end=END, platforms=("facebook",))])
    incidents = detect_incidents(w.cells())
    assert [(i.kind, i.country, i.platforms) for i in incidents] == [("platform_outage", None, ("facebook",))]
    assert incidents[0].assessment.deliberate < 0.1


def test_probes_falling_silent_are_a_connectivity_loss() -> None:
    w = World(events=[Event(kind="silence", start=ONSET, end=END, asns=(45669,))])
    [inc] = detect_incidents(w.cells())
    assert inc.kind == "connectivity_loss" and inc.scope == "network" and inc.asns == (45669,)
    assert minutes(inc.start, ONSET) <= 5
    assert inc.confirmed_at is not None and inc.confirmed_at - ONSET <= timedelta(minutes=20)
    assert any("stopped reporting" in r for r in inc.assessment.reasons)


def test_everything_unreachable_in_one_network_is_connectivity_loss_consistent_with_a_fault() -> None:
    w = World(events=[Event(kind="cut", start=ONSET, end=END, asns=(23674,))])
    [inc] = detect_incidents(w.cells())
    assert (inc.kind, inc.scope, inc.asns) == ("connectivity_loss", "network", (23674,))
    assert inc.assessment.deliberate < 0.5
    assert any("network fault" in r for r in inc.assessment.reasons)


def test_national_shutdown_on_every_network_is_deliberate() -> None:
    w = World(events=[Event(kind="cut", start=ONSET, end=END)])
    [inc] = detect_incidents(w.cells())
    assert (inc.kind, inc.scope) == ("connectivity_loss", "national")
    assert inc.assessment.deliberate >= 0.8


def test_scope_regional_when_one_region_is_affected() -> None:
    w = World(countries={"PK": [Net(17557, regions=("North", "South", "East"), probes=18), Net(45669)]},
              events=[Event(kind="cut", start=ONSET, end=END, asns=(17557,), regions=("East",))])
    [inc] = detect_incidents(w.cells())
    assert (inc.kind, inc.scope, inc.regions) == ("connectivity_loss", "regional", ("East",))


def test_scope_network_for_a_single_isp_block() -> None:
    w = World(events=[block(asns=(45669,), technique="dns_tampering", platforms=("twitter",))])
    [inc] = detect_incidents(w.cells())
    assert (inc.kind, inc.scope, inc.asns, inc.techniques) == (
        "platform_restriction", "network", (45669,), ("dns_tampering",))


def test_collapsed_throughput_with_working_connections_is_throttling() -> None:
    w = World(events=[Event(kind="slow", start=ONSET, end=END, platforms=("twitter",))])
    [inc] = detect_incidents(w.cells())
    assert (inc.kind, inc.platforms, inc.techniques, inc.scope) == (
        "throttling", ("twitter",), ("throttling",), "national")


def test_confirmation_is_causal_cutting_the_data_after_confirmation_keeps_it() -> None:
    cells = World(events=[block()]).cells()
    [full] = detect_incidents(cells)
    assert full.confirmed_at is not None
    cut = [c for c in cells if c.bucket < full.confirmed_at]
    [live] = detect_incidents(cut)
    assert live.confirmed_at == full.confirmed_at and live.start == full.start and live.id == full.id
    assert live.end is None


def test_config_min_probes_is_respected() -> None:
    w = World(countries={"PK": [Net(17557, probes=3, regions=("North",))]},
              events=[block(platforms=("twitter",))])
    assert detect_incidents(w.cells(), config=DetectConfig(min_probes=4)) == []


@pytest.mark.parametrize("coverage", [0.3, 0.5, 0.8])
@pytest.mark.parametrize("seed", [1, 3, 6])
def test_a_network_fault_failing_the_control_too_is_no_restriction(seed: int, coverage: float) -> None:
    # a resolver failing a share of every measurement for 2.5 hours, the control's too: the runs whose
    # control happened to work agree on dns_tampering on every platform, yet a censor leaves the control alone
    fault = Event(kind="fault", start=DAY2 + timedelta(hours=10), end=DAY2 + timedelta(hours=12, minutes=30),
                  asns=(17557,), technique="dns_tampering", coverage=coverage)
    incidents = detect_incidents(World(seed=seed, events=[fault]).cells())
    assert [i for i in incidents if i.kind == "platform_restriction"] == []


def test_a_block_that_outlasts_a_network_fault_is_still_found() -> None:
    # the same fault in the first hours of a block of the same network: the block's own window shows the
    # control at its usual rate, so the fault takes nothing from it
    fault = Event(kind="fault", start=ONSET - timedelta(minutes=30), end=ONSET + timedelta(hours=1),
                  asns=(17557,), technique="dns_tampering", coverage=0.5)
    w = World(events=[fault, block(asns=(17557,), technique="dns_tampering")])
    [inc] = [i for i in detect_incidents(w.cells()) if i.kind == "platform_restriction"]
    assert inc.asns == (17557,) and set(inc.platforms) == {"twitter", "facebook"}
    assert inc.techniques == ("dns_tampering",)


@pytest.mark.parametrize("seed", [2, 4, 5])
def test_a_flaky_hour_failing_the_platforms_more_than_the_control_is_no_restriction(seed: int) -> None:
    # a flaky line for an hour on a network of six probes: 40% of the platforms' measurements fail, each its
    # own way, and 20% of the small nearby control's; its few control measurements fall short of an alarm's
    # evidence but not of 100:1 odds (failed with `window_evidence` at the alarm's 10 nats)
    start = DAY2 + timedelta(hours=10)
    fault = Event(kind="fault", start=start, end=start + timedelta(hours=1), asns=(17557,), technique="mixed",
                  coverage=0.4, control_coverage=0.2)
    w = World(countries={"PK": [Net(17557, probes=6), Net(45669), Net(23674)]}, seed=seed, events=[fault])
    assert [i for i in detect_incidents(w.cells()) if i.kind == "platform_restriction"] == []
