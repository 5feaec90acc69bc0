"""Events are episodes (issue 19, item 2): what is lifted ends, onsets far apart are not chained, and two
decisions that start together on different platforms with different techniques stay two incidents.

Each test was checked to fail with its rule reverted (see the report of the det-core branch).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from detect_world import T0, Event, Net, World

from observatory.detect import detect_incidents
from observatory.incident import Incident

DAY2 = T0 + timedelta(days=2)


def minutes(a: datetime, b: datetime) -> float:
    return abs((a - b).total_seconds()) / 60


def test_a_one_isp_dns_block_and_a_national_tls_block_a_minute_later_are_two_incidents() -> None:
    # the kernel lab's case: YouTube by DNS on one ISP, and a minute later Twitter by TLS everywhere
    onset = DAY2 + timedelta(hours=13, minutes=50)
    youtube = Event(kind="block", start=onset, end=onset + timedelta(hours=3), platforms=("youtube",),
                    technique="dns_tampering", asns=(45669,))
    twitter = Event(kind="block", start=onset + timedelta(minutes=1), end=onset + timedelta(hours=4),
                    platforms=("twitter",), technique="tls_interference")
    incidents = detect_incidents(World(events=[youtube, twitter]).cells())
    got = sorted((i.platforms, i.techniques, i.scope, i.asns) for i in incidents)
    assert got == [(("twitter",), ("tls_interference",), "national", (17557, 23674, 45669)),
                   (("youtube",), ("dns_tampering",), "network", (45669,))]
    for inc, truth in ((i, youtube if i.platforms == ("youtube",) else twitter) for i in incidents):
        assert minutes(inc.start, truth.start) <= 5 and inc.end is not None and minutes(inc.end, truth.end) <= 15


def test_onsets_hours_apart_are_not_chained_into_one_event() -> None:
    # three networks losing everything at 10:00, 13:00 and 15:30, each still down when the next one starts:
    # three faults, not a national shutdown that took five hours to spread
    starts = [(17557, 10.0, 16.0), (45669, 13.0, 18.0), (23674, 15.5, 20.0)]
    events = [Event(kind="cut", start=DAY2 + timedelta(hours=a), end=DAY2 + timedelta(hours=b), asns=(asn,))
              for asn, a, b in starts]
    incidents = detect_incidents(World(events=events).cells())
    assert sorted((i.kind, i.scope, i.asns) for i in incidents) == sorted(
        ("connectivity_loss", "network", (asn,)) for asn, _a, _b in starts)
    for inc in incidents:
        asn, a, _b = next(s for s in starts if (s[0],) == inc.asns)
        assert minutes(inc.start, DAY2 + timedelta(hours=a)) <= 5


def test_nightly_shutdowns_are_separate_incidents_linked_as_a_series() -> None:
    # Iran, September 2022: mobile networks cut every evening and restored by morning, three nights running
    nights = [(T0 + timedelta(days=d, hours=18), T0 + timedelta(days=d + 1, hours=2)) for d in (2, 3, 4)]
    w = World(days=5.5, events=[Event(kind="cut", start=a, end=b) for a, b in nights])
    incidents = [i for i in detect_incidents(w.cells()) if i.kind == "connectivity_loss"]
    assert len(incidents) == 3
    for inc, (a, b) in zip(incidents, nights, strict=True):
        assert inc.scope == "national"
        assert minutes(inc.start, a) <= 10 and inc.end is not None and minutes(inc.end, b) <= 15
    assert [_previous(i) for i in incidents] == [[], [incidents[0].id], [incidents[0].id, incidents[1].id]]


def test_a_series_links_only_the_same_story() -> None:
    # a Twitter block and, the next day, a connectivity loss: two stories, neither the other's "second"
    a = Event(kind="block", start=DAY2 + timedelta(hours=9), end=DAY2 + timedelta(hours=12),
              platforms=("twitter",))
    b = Event(kind="cut", start=DAY2 + timedelta(hours=20), end=DAY2 + timedelta(hours=22))
    incidents = detect_incidents(World(days=3, events=[a, b]).cells())
    assert [i.kind for i in incidents] == ["platform_restriction", "connectivity_loss"]
    assert [_previous(i) for i in incidents] == [[], []]


def test_four_platforms_blocked_on_every_network_at_once_is_one_incident() -> None:
    # Pakistan, February 2024: one decision, one method, four platforms on every network
    onset = DAY2 + timedelta(hours=13, minutes=50)
    w = World(countries={"PK": [Net(17557), Net(45669), Net(23674), Net(24499)]},
              platforms=("twitter", "facebook", "youtube", "tiktok", "control"),
              events=[Event(kind="block", start=onset, end=onset + timedelta(hours=6),
                            platforms=("twitter", "facebook", "youtube", "tiktok"), technique="tls_interference")])
    [inc] = detect_incidents(w.cells())
    assert inc.platforms == ("facebook", "tiktok", "twitter", "youtube") and inc.scope == "national"
    assert inc.techniques == ("tls_interference",)


def _previous(inc: Incident) -> list[str]:
    return list(inc.evidence.get("previous_episodes", {}).get("ids", []))


def test_nightly_shutdowns_seen_by_sparse_volunteers_are_still_separate() -> None:
    # the same nights seen by volunteers who run once an hour; those of the East measure only in the evening
    # (from 18:00, when the network is cut): their own track never shows it fine, but the network was seen
    # normal all day, and what was lifted is over
    nights = [(T0 + timedelta(days=d, hours=18), T0 + timedelta(days=d + 1, hours=2)) for d in (2, 3, 4)]
    nets = [Net(asn, regions=("North", "South", "East", "West"), probes=24) for asn in (17557, 45669, 23674)]
    w = World(countries={"PK": nets}, days=5.5, every=12, stable_ids=False,
              events=[Event(kind="cut", start=a, end=b) for a, b in nights])
    cells = [c for c in w.cells() if c.region != "East" or c.bucket.hour >= 18]
    incidents = [i for i in detect_incidents(cells) if i.kind == "connectivity_loss"]
    assert len(incidents) == 3
    for inc, (a, b) in zip(incidents, nights, strict=True):
        assert minutes(inc.start, a) <= 30 and inc.end is not None and minutes(inc.end, b) <= 30
