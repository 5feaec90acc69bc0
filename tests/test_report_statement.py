"""The statement: every phrase checked against the incident's fields, for each kind and scope, and the
reference case (three Pakistan incidents built from the simulator's truth for the reference scenario)."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from report_world import incident, utc

from observatory.incident import Incident
from observatory.report import statement
from observatory.report.countries import local_time, zone_label
from observatory.report.history import history, span_phrase
from observatory.report.statement import statement_parts
from observatory.store.base import ContextEvent

ROOT = Path(__file__).resolve().parent.parent
SCENARIO = ROOT / "scenarios" / "pk-2023-12-2024-01.toml"


def test_national_restriction_names_platforms_scope_local_time_networks_and_technique() -> None:
    text = statement(incident(), networks_measured=6)  # as report/render.py counts them from the series
    assert text.startswith("Confirmed: metrics show a nation-scale disruption to social media platforms across "
                           "Pakistan, including X/Twitter, Facebook, Instagram and YouTube, since 19:05 PKT on "
                           "20 January 2024.")
    assert "The restriction is in effect on all 6 networks measured and is consistent with TLS-based filtering." in text


def test_platforms_are_named_in_catalog_order_whatever_the_detector_order() -> None:
    text = statement(incident(platforms=("youtube", "facebook", "twitter")))
    assert "including X/Twitter, Facebook and YouTube" in text


def test_regional_incident_names_its_regions() -> None:
    inc = incident(scope="regional", regions=("Punjab", "Sindh"), asns=(17557, 45669))
    text = statement(inc, networks_measured=6)
    assert "a regional disruption to social media platforms in Punjab and Sindh, Pakistan" in text
    assert "on 2 of 6 networks measured" in text
    assert "nation-scale" not in text and "across Pakistan" not in text


def test_single_network_incident_names_the_network_from_the_evidence() -> None:
    inc = incident(scope="network", asns=(17557,), platforms=("twitter",))
    text = statement(inc, networks_measured=6)
    assert "a network-level disruption to X/Twitter on PTCL (AS17557) in Pakistan since 19:05 PKT" in text
    assert "on 1 of 6 networks measured" in text


def test_suspected_is_not_called_confirmed() -> None:
    text = statement(incident(status="suspected", confirmed_at=None))
    assert text.startswith("Suspected: early metrics suggest")
    assert "Confirmed" not in text and "metrics show" not in text


def test_partial_when_few_of_the_affected_series_observations_failed() -> None:
    ev = replace(incident().evidence, probe_observations=1000, anomalous=300)
    assert "a partial nation-scale disruption" in statement(incident(evidence=ev))
    assert "partial" not in statement(incident(evidence=replace(ev, anomalous=900)))


def test_throttling_says_slowed_not_blocked() -> None:
    inc = incident(kind="throttling", platforms=("twitter",), techniques=("throttling",))
    text = statement(inc, networks_measured=6)
    assert "a nation-scale throttling of X/Twitter across Pakistan since 19:05 PKT" in text
    assert "reachable but slowed" in text
    assert "The throttling is in effect on all 6 networks measured." in text


def test_connectivity_loss_is_about_internet_connectivity_not_platforms() -> None:
    inc = incident(kind="connectivity_loss", platforms=(), techniques=("unreachable",))
    text = statement(inc)
    assert "a nation-scale disruption to internet connectivity across Pakistan" in text
    assert "X/Twitter" not in text
    assert "control sites included" in text


def test_platform_outage_is_global_and_in_utc() -> None:
    inc = incident(kind="platform_outage", country=None, platforms=("facebook", "instagram"), asns=(),
                   techniques=(), evidence={})
    text = statement(inc)
    assert text == ("Confirmed: metrics show a global outage of Facebook and Instagram, not specific to any "
                    "country, since 14:05 UTC on 20 January 2024.")


def test_ended_incident_is_a_restoration_notice_with_duration() -> None:
    inc = incident(end=utc(2024, 1, 20, 17, 10), status="ended")
    text = statement(inc, networks_measured=6)
    assert text.startswith("Restored: X/Twitter, Facebook, Instagram and YouTube are reachable again across "
                           "Pakistan as of 22:10 PKT on 20 January 2024, after a nation-scale disruption lasting "
                           "3 hours 5 minutes (from 19:05 PKT).")
    assert "was in effect on all 6 networks measured and was consistent with TLS-based filtering" in text


def test_restoration_on_another_local_day_names_the_start_day() -> None:
    inc = incident(start=utc(2023, 12, 17, 15, 0), end=utc(2023, 12, 17, 22, 0), status="ended")
    assert "lasting 7 hours (from 20:00 PKT on 17 December)" in statement(inc)
    assert "as of 03:00 PKT on 18 December 2023" in statement(inc)


def test_missing_evidence_is_left_out_not_guessed() -> None:
    inc = incident(evidence={})
    text = statement(inc)
    assert "on 6 networks and is consistent" in text  # affected networks known, measured ones not
    assert "measured" not in text
    assert "all 6" not in statement(incident(evidence={}, asns=()))


def test_caller_count_of_measured_networks_wins_and_never_undercounts_affected() -> None:
    assert "on 6 of 9 networks measured" in statement(incident(), networks_measured=9)
    assert "on all 6 networks measured" in statement(incident(), networks_measured=3)


@pytest.mark.parametrize(("days", "phrase"), [
    (1, "within a day"), (5, "in 5 days"), (21, "in three weeks"), (34, "in just over a month"),
    (30, "in about a month"), (55, "in just under two months"), (61, "in about two months"),
    (400, "in about a year"), (440, "in just over a year"), (620, "in just under two years"),
])
def test_span_phrases(days: float, phrase: str) -> None:
    assert span_phrase(days) == phrase


def test_history_counts_only_similar_incidents_in_the_same_country() -> None:
    this = incident(id="c")
    same = incident(id="a", start=utc(2023, 12, 17, 15), platforms=("facebook",))
    other_country = incident(id="x", country="IR", start=utc(2024, 1, 1))
    other_platforms = incident(id="y", start=utc(2024, 1, 2), platforms=("telegram",))
    shutdown = incident(id="z", start=utc(2024, 1, 3), kind="connectivity_loss", platforms=())
    later = incident(id="w", start=utc(2024, 2, 1))
    dismissed = incident(id="d", start=utc(2024, 1, 4), review={"state": "dismissed"})
    h = history(this, [same, other_country, other_platforms, shutdown, later, dismissed, this])
    assert [p.id for p in h.previous] == ["a"]
    assert h.ordinal == 2


def _reference_incidents() -> list[Incident]:
    """The three incidents of the reference scenario as the simulator's truth gives them."""
    from observatory.simulate.scenario import load_scenario
    from observatory.simulate.truth import truth

    return [Incident.from_json(d) for d in truth(load_scenario(SCENARIO))]


def _reference_events() -> list[ContextEvent]:
    # one context event per incident, each starting a little after (or before) the disruption's onset
    return [
        ContextEvent(id="e1", country="PK", time=utc(2023, 12, 17, 14, 0), title="the PTI virtual jalsa"),
        ContextEvent(id="e2", country="PK", time=utc(2024, 1, 7, 14, 0), title="the PTI online fundraiser"),
        ContextEvent(id="e3", country="PK", time=utc(2024, 1, 20, 15, 0), title="the PTI virtual rally"),
        ContextEvent(id="far", country="PK", time=utc(2023, 11, 1, 12, 0), title="an unrelated conference"),
        ContextEvent(id="ir", country="IR", time=utc(2024, 1, 20, 15, 0), title="an Iranian event"),
    ]


@pytest.mark.skipif(not SCENARIO.exists(), reason="reference scenario not in the tree")
def test_reference_case_three_statements() -> None:
    incidents = _reference_incidents()
    events = _reference_events()
    assert [i.start.date().isoformat() for i in incidents] == ["2023-12-17", "2024-01-07", "2024-01-20"]
    texts = [statement(i, history=incidents, events=events) for i in incidents]
    for inc, text in zip(incidents, texts, strict=True):
        # right platforms, in display names; right scope; local start time from the incident's data
        assert "X/Twitter, Facebook, Instagram and YouTube" in text
        assert "across Pakistan" in text and "nation-scale" in text
        assert f"(from {local_time(inc.start, 'PK')}" in text and "PKT" in text
        assert f"as of {local_time(inc.end, 'PK')}" in text  # type: ignore[arg-type]
        assert f"all {len(inc.asns)} networks" in text or f"on {len(inc.asns)} networks" in text
        assert "TLS-based filtering" in text
        assert "unrelated conference" not in text and "Iranian" not in text
    assert "It began 1 hour after the PTI virtual jalsa (19:00 PKT)." in texts[0]
    assert "before the PTI online fundraiser (19:00 PKT)" in texts[1]
    assert "It began 1 hour 20 minutes before the PTI virtual rally (20:00 PKT)." in texts[2]
    assert "This is the" not in texts[0]
    assert "This is the second disruption in three weeks, after 17 December." in texts[1]
    assert "This is the third disruption in just over a month, after 17 December and 7 January." in texts[2]
    # each statement mentions only its own event
    assert "rally" not in texts[0] and "jalsa" not in texts[2]


@pytest.mark.skipif(not SCENARIO.exists(), reason="reference scenario not in the tree")
def test_reference_case_while_ongoing_says_since_and_confirmed() -> None:
    inc = _reference_incidents()[2]
    ongoing = inc.with_(end=None, status="confirmed", confirmed_at=inc.start + timedelta(minutes=10))
    parts = statement_parts(ongoing, history=_reference_incidents(), events=_reference_events(),
                            now=inc.start + timedelta(minutes=15))
    assert parts[0] == ("Confirmed: metrics show a nation-scale disruption to social media platforms across "
                        "Pakistan, including X/Twitter, Facebook, Instagram and YouTube, since 18:40 PKT on "
                        "20 January 2024.")
    assert any("third disruption in just over a month" in p for p in parts)
    assert any("PTI virtual rally (20:00 PKT)" in p for p in parts)


def test_event_window_is_configurable() -> None:
    inc = incident()
    ev = [ContextEvent(id="e", country="PK", time=inc.start - timedelta(hours=30), title="the court ruling")]
    assert "court ruling" in statement(inc, events=ev)  # default 48 h window
    assert "court ruling" not in statement(inc, events=ev, event_window=timedelta(hours=24))
    assert "It began 1 day 6 hours after the court ruling (13:05 PKT on 19 January)." in statement(inc, events=ev)


def test_zone_labels_come_from_data_when_the_tz_database_has_only_numbers() -> None:
    t = utc(2024, 1, 20, 12, 0)
    assert zone_label(t, "IR") == "IRST"  # Asia/Tehran is "+0330" in the tz database
    assert local_time(t, "IR") == "15:30 IRST"
    assert zone_label(t, "PK") == "PKT"
    assert zone_label(t, None) == "UTC"
    assert re.fullmatch(r"\d\d:\d\d UTC", local_time(t, "ZZ"))
