"""Scope and technique per network (issue 19, item 4): a whole network is `network`, every network `national`,
some regions across networks `regional`; every technique of every network is reported.

Sparse data leave regions unseen while an event goes on: such a region is unknown, not normal, and must not
shrink a network-wide or national event to `regional`. Each test was checked to fail with its rule reverted
(see the report of the det-core branch).
"""

from __future__ import annotations

from datetime import timedelta

from detect_world import T0, Event, Net, World

from observatory.detect import detect_incidents
from observatory.series import SeriesCell

ONSET = T0 + timedelta(days=2, hours=13, minutes=50)
END = ONSET + timedelta(hours=5)
REGIONS = ("North", "South", "East", "West", "Centre")


def unseen_during_event(cells: list[SeriesCell], regions: set[str]) -> list[SeriesCell]:
    """The cells without those regions' data while the event lasts (their few volunteers did not run)."""
    return [c for c in cells if not (c.region in regions and ONSET - timedelta(minutes=30) <= c.bucket < END)]


def test_one_network_losing_everything_in_every_region_is_network_scope() -> None:
    w = World(countries={"PK": [Net(17557, regions=REGIONS, probes=20), Net(45669), Net(23674)]},
              events=[Event(kind="cut", start=ONSET, end=END, asns=(17557,))])
    incidents = detect_incidents(unseen_during_event(w.cells(), {"East", "West", "Centre"}))
    assert [(i.kind, i.scope, i.asns) for i in incidents] == [("connectivity_loss", "network", (17557,))]


def test_a_national_blackout_is_national_though_some_regions_went_unseen() -> None:
    # Venezuela, July 2019: every network down; three of five regions had no measurement meanwhile
    nets = [Net(asn, regions=REGIONS, probes=20) for asn in (8048, 21826, 27889)]
    w = World(countries={"VE": nets}, events=[Event(kind="cut", country="VE", start=ONSET, end=END)])
    incidents = detect_incidents(unseen_during_event(w.cells(), {"East", "West", "Centre"}))
    assert [(i.kind, i.scope, i.asns) for i in incidents] == [("connectivity_loss", "national",
                                                                (8048, 21826, 27889))]


def test_one_region_on_every_network_is_regional() -> None:
    nets = [Net(asn, regions=("North", "South", "Balochistan"), probes=18) for asn in (17557, 45669, 23674)]
    w = World(countries={"PK": nets}, events=[Event(kind="cut", start=ONSET, end=END, regions=("Balochistan",))])
    incidents = detect_incidents(w.cells())
    assert [(i.kind, i.scope, i.regions) for i in incidents] == [("connectivity_loss", "regional",
                                                                  ("Balochistan",))]


def test_two_isps_blocking_the_same_platforms_by_different_techniques_are_one_incident_per_network_techniques(
) -> None:
    # ACT by DNS, Jio by TLS (India), the third network untouched: one decision, carried out by each operator
    # its own way; the incident reports both techniques, each under its own network, and is not national
    events = [Event(kind="block", start=ONSET, end=END, asns=(17557,), technique="tls_interference"),
              Event(kind="block", start=ONSET, end=END, asns=(45669,), technique="dns_tampering")]
    [inc] = detect_incidents(World(events=events).cells())
    assert (inc.asns, inc.scope, set(inc.techniques), inc.platforms) == (
        (17557, 45669), "network", {"tls_interference", "dns_tampering"}, ("facebook", "twitter"))
    per_network = {n["asn"]: set(n["techniques"]) for n in inc.evidence["networks"]}
    assert per_network == {"AS17557": {"tls_interference"}, "AS45669": {"dns_tampering"}}


def test_every_technique_of_every_network_is_reported() -> None:
    # one decision (Twitter and Facebook by TLS on both networks) where the small network's filter answers
    # half of the queries with a forged DNS reply first: its DNS must not drown in the big network's counts
    big, small = Net(17557, probes=36), Net(45669, regions=("North",), probes=3)
    events = [Event(kind="block", start=ONSET, end=END, technique="tls_interference"),
              Event(kind="block", start=ONSET, end=END, asns=(45669,), technique="dns_tampering", coverage=0.5)]
    w = World(countries={"PK": [big, small, Net(23674)]}, events=events)
    [inc] = detect_incidents(w.cells())
    assert set(inc.techniques) == {"tls_interference", "dns_tampering"}
    per_network = {n["asn"]: set(n["techniques"]) for n in inc.evidence["networks"]}
    assert per_network == {"AS17557": {"tls_interference"}, "AS23674": {"tls_interference"},
                           "AS45669": {"tls_interference", "dns_tampering"}}


def test_throttling_scope_is_not_judged_by_verdicts() -> None:
    # a throttled measurement succeeds, slowly: its verdict is "ok". A region whose verdicts were fine while
    # a network's probes there were slow is not "seen normal"; with every network slow the scope is national
    # (volunteers' slow probes in one episode are seen in a few regions only: here, the North)
    from datetime import timedelta

    from detect_world import T0, Event, Net, World

    from observatory.detect import DetectConfig
    from observatory.detect.episodes import THROTTLING, find_episodes
    from observatory.detect.incidents import Cluster, scope_of
    from observatory.detect.series import fold

    onset = T0 + timedelta(days=2, hours=13)
    w = World(countries={"PK": [Net(17557), Net(45669)]},
              events=[Event(kind="slow", start=onset, end=onset + timedelta(hours=4), platforms=("twitter",))])
    cfg = DetectConfig()
    tracks = fold(w.cells(), cfg.bucket_seconds)
    slow = [e for e in find_episodes(tracks, cfg) if e.family == THROTTLING]
    assert {e.asn for e in slow} == {17557, 45669}
    for e in slow:
        e.regions = {"North"}
    scope, asns, _regions = scope_of(Cluster(family=THROTTLING, country="PK", episodes=slow), tracks, cfg)
    assert (scope, asns) == ("national", [17557, 45669])


def test_throttling_on_two_of_three_networks_is_not_national_when_the_third_kept_its_speed() -> None:
    # the guard of the rule above: the third network's throughput, measured at its usual level, is the
    # evidence against "national" that its (always fine) verdicts can no longer be
    from datetime import timedelta

    from detect_world import T0, Event, World

    from observatory.detect import detect_incidents

    onset = T0 + timedelta(days=2, hours=13)
    w = World(events=[Event(kind="slow", start=onset, end=onset + timedelta(hours=4), platforms=("twitter",),
                            asns=(17557, 45669))])
    [inc] = detect_incidents(w.cells())
    assert (inc.kind, inc.scope, inc.asns) == ("throttling", "network", (17557, 45669))


def test_a_network_with_one_platform_collapsed_is_not_seen_at_its_usual_speed() -> None:
    # a network outside a throttling incident (its own test lacked the data to alarm): twitter measured at
    # its usual speed, facebook collapsed to a thirtieth. The collapse is the throttling: no evidence that
    # the network kept its speed, so nothing against "national"; with both at their usual speed, there is
    from collections import Counter

    from observatory.detect import DetectConfig
    from observatory.detect.episodes import THROTTLING, Episode
    from observatory.detect.incidents import Cluster, _others_seen_normal
    from observatory.detect.series import Obs, Tracks

    cfg, day, onset = DetectConfig(), 86400, 3 * 86400

    def track(slow: bool) -> list[Obs]:
        out = []
        for t in range(onset - day, onset + 6 * 3600, 900):
            kbps = 20000.0 / (30 if slow and t >= onset else 1)
            out.append(Obs(t=t, n=2, probe_kbps=[(f"p:{i}", "web_connectivity", kbps) for i in range(2)]))
        return out

    def seen_normal(facebook_slow: bool) -> bool:
        tracks = Tracks(series={("PK", 3, "twitter"): track(False), ("PK", 3, "facebook"): track(facebook_slow)},
                        activity={}, names={}, regions={}, first=0, now=onset + 6 * 3600)
        ep = Episode(family=THROTTLING, country="PK", asn=1, platform="facebook", start=onset, alarm=onset + 300,
                     end=onset + 6 * 3600, techniques=Counter(), platforms={"twitter", "facebook"})
        return _others_seen_normal(Cluster(family=THROTTLING, country="PK", episodes=[ep]), tracks, {1}, cfg)

    assert seen_normal(facebook_slow=False)
    assert not seen_normal(facebook_slow=True)
