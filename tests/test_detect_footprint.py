"""What one event leaves on other tracks is not a second event, and a degraded network is not a cut (issue 19).

- A connectivity loss fails tests that have no control of their own in the run (OONI's telegram and
  whatsapp tests): their failures read as blocking, inside the loss (detect/footprint.py).
- A platform's own outage does the same to the IM tests of that platform, in every country: one outage.
- A network whose resolver fails or that is flaky for a while fails a share of everything while its probes
  keep completing measurements in the same runs: not a connectivity loss (detect/degraded.py).

Each test was checked to fail with its rule turned off.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

from detect_world import T0, Event, Net, World

from observatory.detect import detect_incidents
from observatory.series import SeriesCell, Witness

DAY2 = T0 + timedelta(days=2)
CUT = (DAY2 + timedelta(hours=11), DAY2 + timedelta(hours=17))


def im_test(cells: list[SeriesCell], platform: str, start: datetime, end: datetime, asns: set[int],
            technique: str = "tcp_blackhole") -> list[SeriesCell]:
    """The platform measured by an IM test, which has no control in its run and its own report id: every
    probe of `asns` whose connection is gone in [start, end) records the platform as blocked by `technique`,
    under a key the control's failures do not share (so they are not taken for connectivity evidence)."""
    out = []
    for c in cells:
        if c.platform != platform or c.asn not in asns or not start <= c.bucket < end:
            out.append(c)
            continue
        keys = tuple(sorted(f"r:im-{c.asn}-{c.region}-{int(c.bucket.timestamp())}-{i}" for i in range(c.probes)))
        out.append(replace(c, ok=0, down=0, down_probes=0, anomalous=c.total, anomalous_probes=c.probes,
                           anomalous_keys=keys, witnesses=tuple(Witness(technique, k) for k in keys),
                           by_technique={technique: c.total}, median_kbps=None))
    return out


def test_a_cut_seen_by_tests_without_a_control_is_one_connectivity_loss() -> None:
    # Iran's nightly mobile cuts, measured by OONI's telegram test too: its timeouts read as a TCP black hole
    cut_asns = {17557, 45669}
    w = World(events=[Event(kind="cut", start=CUT[0], end=CUT[1], asns=tuple(sorted(cut_asns)))])
    cells = im_test(w.cells(), "twitter", CUT[0], CUT[1], cut_asns)
    incidents = detect_incidents(cells)
    assert [(i.kind, i.asns) for i in incidents] == [("connectivity_loss", (17557, 45669))]


def test_a_block_that_began_before_the_cut_is_still_a_restriction() -> None:
    # the same cut on a network that was already blocking Twitter by TLS since the morning: two events
    cut_asns = {17557, 45669}
    block = Event(kind="block", start=CUT[0] - timedelta(hours=4), end=CUT[1] + timedelta(hours=3),
                  platforms=("twitter",), asns=tuple(sorted(cut_asns)))
    w = World(events=[block, Event(kind="cut", start=CUT[0], end=CUT[1], asns=tuple(sorted(cut_asns)))])
    cells = im_test(w.cells(), "twitter", CUT[0], CUT[1], cut_asns, technique="tls_interference")
    kinds = sorted(i.kind for i in detect_incidents(cells))
    assert kinds == ["connectivity_loss", "platform_restriction"]


def test_a_platforms_outage_seen_by_its_im_test_everywhere_is_one_outage() -> None:
    # Meta, October 2021: web measurements see Facebook down from the control's vantage too, while the
    # facebook IM test (no control) records blocking, in every country
    nets = {cc: [Net(asn)] for cc, asn in (("PK", 17557), ("IN", 55836), ("BR", 28573), ("DE", 3320))}
    w = World(countries=nets, events=[Event(kind="down", start=CUT[0], end=CUT[1], platforms=("facebook",))])
    cells = w.cells()
    for cc, (net,) in nets.items():
        half = [c for c in cells if c.country == cc and c.region == "North"]
        rest = [c for c in cells if not (c.country == cc and c.region == "North")]
        cells = rest + im_test(half, "facebook", CUT[0], CUT[1], {net.asn}, technique="http_interference")
    incidents = detect_incidents(cells)
    assert [(i.kind, i.country, i.platforms) for i in incidents] == [("platform_outage", None, ("facebook",))]


def test_a_flaky_network_whose_probes_keep_completing_measurements_is_not_a_cut() -> None:
    # a resolver failing for three hours: 70% of everything fails, the control too, on every probe of one
    # network; the same probes complete the rest of their runs
    nets = [Net(asn, probes=6) for asn in (17557, 45669, 23674)]
    flaky = Event(kind="flaky", start=CUT[0], end=CUT[0] + timedelta(hours=3), asns=(45669,), coverage=0.7)
    incidents = detect_incidents(World(countries={"PK": nets}, events=[flaky]).cells())
    assert [i for i in incidents if i.kind == "connectivity_loss"] == []


def test_a_cut_of_single_probe_runs_is_still_a_connectivity_loss() -> None:
    # the same network cut instead: nothing completes, and it is found
    nets = [Net(asn, probes=6) for asn in (17557, 45669, 23674)]
    cut = Event(kind="cut", start=CUT[0], end=CUT[0] + timedelta(hours=3), asns=(45669,))
    incidents = detect_incidents(World(countries={"PK": nets}, events=[cut]).cells())
    assert [(i.kind, i.asns) for i in incidents] == [("connectivity_loss", (45669,))]
    assert abs((incidents[0].start - cut.start).total_seconds()) <= 600


def test_a_flaky_networks_failures_on_tests_without_a_control_are_not_a_restriction() -> None:
    # the same failing resolver, with Twitter measured by a test without a control: its failures are the
    # degraded network's, not a block
    nets = [Net(asn, probes=6) for asn in (17557, 45669, 23674)]
    start, end = CUT[0], CUT[0] + timedelta(hours=3)
    flaky = Event(kind="flaky", start=start, end=end, asns=(45669,), coverage=0.7)
    cells = im_test(World(countries={"PK": nets}, events=[flaky]).cells(), "twitter", start, end, {45669})
    assert detect_incidents(cells) == []


def test_a_cuts_footprint_is_judged_by_its_failures_outside_the_cut_not_by_its_span() -> None:
    # the IM test is not run again until the next evening, and its first run then fails once at random: its
    # track stays alarmed from the cut to that stray failure, which alone confirms nothing
    cut_asns = {17557, 45669}
    w = World(days=3.5, events=[Event(kind="cut", start=CUT[0], end=CUT[1], asns=tuple(sorted(cut_asns)))])
    cells = im_test(w.cells(), "twitter", CUT[0], CUT[1], cut_asns)
    gap = (CUT[1], CUT[1] + timedelta(hours=10))
    cells = [c for c in cells if not (c.platform == "twitter" and c.asn in cut_asns and gap[0] <= c.bucket < gap[1])]
    stray = next(c for c in cells if c.platform == "twitter" and c.asn == 17557 and c.bucket >= gap[1])
    cells = [c for c in cells if c is not stray] + im_test([stray], "twitter", gap[1], gap[1] + timedelta(hours=1),
                                                           {17557})
    incidents = detect_incidents(cells)
    assert [(i.kind, i.asns) for i in incidents] == [("connectivity_loss", (17557, 45669))]



def test_a_flaky_networks_failures_do_not_confirm_a_silence_elsewhere() -> None:
    # a flaky network, and half an hour later one region of another network falls quiet for a day (its
    # probes unplugged): the flaky failures joined with the silence made a "regional shutdown" open for days
    nets = [Net(asn, probes=6) for asn in (17557, 45669, 23674)]
    start = CUT[0]
    flaky = Event(kind="flaky", start=start, end=start + timedelta(hours=3), asns=(45669,), coverage=0.7)
    quiet = Event(kind="silence", start=start + timedelta(minutes=30), end=start + timedelta(days=1),
                  asns=(17557,), regions=("North",))
    incidents = detect_incidents(World(countries={"PK": nets}, days=4, events=[flaky, quiet]).cells())
    assert [i for i in incidents if i.kind == "connectivity_loss" and i.confirmed_at is not None] == []


def test_a_platform_down_on_one_network_while_others_reach_it_is_no_outage() -> None:
    # a failing resolver on T-Mobile makes its probes see Twitter `down` for 40 minutes; every other network,
    # in the US and in Germany, reaches Twitter meanwhile: not Twitter's outage (failed without
    # `contradicted_outage`: a worldwide "Twitter outage" of one network)
    nets = {"US": [Net(21928, probes=4), Net(7922)], "DE": [Net(3320)]}
    start = CUT[0]
    down = Event(kind="down", start=start, end=start + timedelta(minutes=40), platforms=("twitter",),
                 asns=(21928,), country="US")
    assert [i.kind for i in detect_incidents(World(countries=nets, events=[down]).cells())] == []
    # the same on every network is the platform's outage
    everywhere = replace(down, asns=())
    found = detect_incidents(World(countries=nets, events=[everywhere]).cells())
    assert [(i.kind, i.country) for i in found] == [("platform_outage", None)]
