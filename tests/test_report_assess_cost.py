"""Claim assessment from the series (selective, simultaneous, uniform, restored together vs the opposite) and
the cost estimate's arithmetic, range and stated inputs."""

from __future__ import annotations

from datetime import timedelta

import pytest
from report_world import cells, incident, utc

from observatory.errors import ConfigError
from observatory.report.assess import assess_claim, network_transitions
from observatory.report.cost import HOURS_PER_YEAR, cost_text, economy_of, estimate_cost, money
from observatory.report.render import build_report, control_share

START, END = utc(2024, 1, 20, 14, 0), utc(2024, 1, 20, 17, 0)


def _ended(**kw):  # type: ignore[no-untyped-def]
    return incident(start=START, end=END, status="ended", **kw)


def test_censorship_pattern_contradicts_technical_fault() -> None:
    inc = _ended(evidence={"by_technique": {"tls_interference": 980, "tcp_reset": 20}})
    series = cells(start=START - timedelta(hours=3), end=END + timedelta(hours=3), blocked=[(START, END)])
    r = build_report(inc, cells=series)
    a = r.assessment
    tests = {p.test for p in a.against}
    assert tests == {"targeting", "simultaneity", "technique", "restoration"}, a
    assert not a.supporting
    assert a.conclusion.startswith("The data contradicts a technical fault")
    assert "6 independent networks were affected in the same half-hour" in " ".join(p.text for p in a.against)


def test_fault_pattern_is_consistent_with_technical_fault() -> None:
    # everything failing, controls included, networks going down hours apart and coming back at different times
    inc = _ended(kind="connectivity_loss", platforms=(), techniques=("unreachable", "tcp_blackhole"),
                 evidence={"by_technique": {"unreachable": 500, "tcp_blackhole": 400}})
    series = cells(start=START - timedelta(hours=3), end=END + timedelta(hours=8), blocked=[(START, END)],
                   all_down=True, stagger=timedelta(hours=1))
    seen = network_transitions(inc, series)
    assert max(seen.onsets.values()) - min(seen.onsets.values()) >= timedelta(hours=4)
    a = build_report(inc, cells=series).assessment
    assert {p.test for p in a.supporting} == {"targeting", "simultaneity", "technique", "restoration"}, a
    assert not a.against
    assert "consistent with a technical fault" in a.conclusion


def test_transitions_match_the_generated_truth() -> None:
    inc = _ended()
    series = cells(start=START - timedelta(hours=2), end=END + timedelta(hours=2), blocked=[(START, END)],
                   block_share=1.0)
    seen = network_transitions(inc, series)
    assert set(seen.onsets) == set(inc.asns)
    assert all(t == START for t in seen.onsets.values())
    assert all(t == END for t in seen.restorations.values())


def test_control_share_uses_the_affected_networks_during_the_incident() -> None:
    inc = _ended()
    series = cells(start=START - timedelta(hours=1), end=END + timedelta(hours=1), blocked=[(START, END)])
    assert control_share(inc, series) == pytest.approx(0.98, abs=0.03)
    down = cells(start=START, end=END, blocked=[(START, END)], all_down=True)
    assert control_share(inc, down) < 0.2


def test_without_series_the_unknowns_are_said_so() -> None:
    a = assess_claim(incident(evidence={}))
    assert {p.test for p in a.unknown} >= {"targeting", "simultaneity", "restoration"}
    assert "inconclusive" in a.conclusion


def test_unknown_claim_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="technical_fault"):
        assess_claim(incident(), "solar_flare")


def test_cost_arithmetic_from_world_bank_figures() -> None:
    econ = economy_of("PK")
    assert econ is not None and econ.alpha3 == "PAK" and econ.gdp_usd > 1e11 and econ.population > 1e8
    c = estimate_cost(_ended(kind="connectivity_loss", platforms=()))
    assert c is not None and c.hours == 3
    per_hour = econ.gdp_usd / HOURS_PER_YEAR
    assert c.usd.low == pytest.approx(per_hour * 3 * 0.02)
    assert c.usd.high == pytest.approx(per_hour * 3 * 0.06)


def test_cost_follows_kind_scope_and_duration() -> None:
    full = estimate_cost(_ended(kind="connectivity_loss", platforms=()))
    platforms = estimate_cost(_ended())
    throttled = estimate_cost(_ended(kind="throttling"))
    one_network = estimate_cost(_ended(scope="network", asns=(17557,)))
    longer = estimate_cost(incident(start=START, end=START + timedelta(hours=6), status="ended"))
    assert full and platforms and throttled and one_network and longer
    assert full.usd.high > platforms.usd.high > throttled.usd.high
    assert one_network.usd.high < platforms.usd.high
    assert longer.usd.low == pytest.approx(2 * platforms.usd.low)
    for c in (full, platforms, throttled, one_network):
        assert c.usd.low < c.usd.high  # a range, not a point


def test_cost_text_prints_method_inputs_assumptions_and_attribution() -> None:
    c = estimate_cost(_ended())
    assert c is not None
    text = cost_text(c)
    assert text.startswith(f"Estimated cost: {money(c.usd.low)} to {money(c.usd.high)} over 3 hours.")
    for part in ("Method:", "GDP", "population", "World Bank WDI, CC BY 4.0", "Assumptions:", "national"):
        assert part in text


def test_cost_of_ongoing_incident_needs_now_and_says_so_far() -> None:
    inc = incident(start=START)
    assert estimate_cost(inc) is None
    c = estimate_cost(inc, now=START + timedelta(hours=2))
    assert c is not None and c.ongoing and "so far" in cost_text(c)


def test_no_cost_for_worldwide_outage_or_unknown_country() -> None:
    assert estimate_cost(_ended(kind="platform_outage", country=None)) is None
    assert estimate_cost(_ended(country="ZZ")) is None


@pytest.mark.parametrize(("x", "text"), [(1_234_567, "US$1.2 million"), (987_654, "US$990,000"),
                                          (2.345e9, "US$2.3 billion")])
def test_money_two_significant_figures(x: float, text: str) -> None:
    assert money(x) == text


# --- each kind of incident has its own tests ----------------------------------------------------------------


def test_platform_outage_supports_a_fault_and_simultaneity_is_not_held_against_it() -> None:
    # the worldwide Facebook outage: every network loses the platforms at once, the control stays up
    inc = _ended(kind="platform_outage", country=None, scope="national", platforms=("facebook", "instagram"),
                 techniques=("down",), evidence={"countries": ["DE", "US", "IN", "BR"],
                                                 "by_technique": {"down": 900}})
    series = cells(start=START - timedelta(hours=3), end=END + timedelta(hours=3), blocked=[(START, END)],
                   platforms=("facebook", "instagram"))
    a = build_report(inc, cells=series).assessment
    assert a.case == "platform_outage"
    assert a.verdict == "supported", a
    assert not a.against
    assert {p.test for p in a.supporting} >= {"reach", "simultaneity"}


def test_one_network_losing_everything_while_the_others_work_supports_a_fault() -> None:
    inc = _ended(kind="connectivity_loss", scope="network", asns=(17557,), platforms=(),
                 techniques=("unreachable",), evidence={"by_technique": {"unreachable": 300}})
    series = cells(start=START - timedelta(hours=3), end=END + timedelta(hours=3), blocked=[(START, END)],
                   blocked_asns=[17557], all_down=True)
    a = build_report(inc, cells=series).assessment
    assert a.case == "one_network"
    assert a.verdict == "supported", a
    assert "the other 5 measured networks stayed up" in " ".join(p.text for p in a.supporting)


def test_a_national_cut_at_one_moment_is_not_called_deliberate_on_simultaneity_alone() -> None:
    # several networks losing everything together: an order, or a power/transit failure; the data cannot say
    inc = _ended(kind="connectivity_loss", platforms=(), techniques=("unreachable",),
                 evidence={"by_technique": {"unreachable": 900}})
    series = cells(start=START - timedelta(hours=3), end=END + timedelta(hours=3), blocked=[(START, END)],
                   all_down=True)
    a = build_report(inc, cells=series).assessment
    assert a.case == "shared_loss"
    assert a.verdict != "contradicted" and not a.against, a


def test_the_same_hour_again_and_again_contradicts_a_fault() -> None:
    # Iran's nightly mobile shutdowns: the third evening at the same hour
    kw = dict(kind="connectivity_loss", platforms=(), techniques=("unreachable",),
              evidence={"by_technique": {"unreachable": 900}})
    earlier = [_ended(id=f"PK-{d}", **kw).with_(start=START - timedelta(days=d), end=END - timedelta(days=d))
               for d in (1, 2)]
    inc = _ended(**kw)
    series = cells(start=START - timedelta(hours=3), end=END + timedelta(hours=3), blocked=[(START, END)],
                   all_down=True)
    a = build_report(inc, cells=series, history_candidates=earlier).assessment
    assert "recurrence" in {p.test for p in a.against}, a
    assert "third" in " ".join(p.text for p in a.against)
    alone = build_report(inc, cells=series).assessment
    assert "recurrence" not in {p.test for p in alone.against}


def test_targeted_restriction_verdict_is_contradicted_in_json() -> None:
    inc = _ended(evidence={"by_technique": {"tls_interference": 980, "tcp_reset": 20}})
    series = cells(start=START - timedelta(hours=3), end=END + timedelta(hours=3), blocked=[(START, END)])
    j = build_report(inc, cells=series).assessment.to_json()
    assert j["verdict"] == "contradicted" and j["case"] == "targeted"
