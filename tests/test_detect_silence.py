"""Silence judged at the time scale of the data (issue 19, item 1), on hand-made worlds with known truth.

Each test was checked to fail with its rule reverted (see the report of the det-core branch): the sparse
region with the old per-bucket minimum of expected activity; the single probe with every run counted as a
probe; the end of the data with silence judged up to the store's newest data; the churn without the rule
that activity just before a silence must have been usual.
"""

from __future__ import annotations

from datetime import timedelta

from detect_world import T0, Event, Net, World

from observatory.detect import detect_incidents

DAY3 = T0 + timedelta(days=3)


def test_a_sparse_region_falling_silent_is_a_regional_connectivity_loss() -> None:
    # Tigray, November 2020: the region's volunteers (a new report id per run, each running every six hours)
    # simply stop, on both networks; nothing fails, nothing is uploaded late. The other regions go on.
    onset, end = DAY3 + timedelta(hours=9, minutes=40), DAY3 + timedelta(hours=30)
    nets = [Net(24757, regions=("Tigray", "Amhara", "Oromia"), probes=108),
            Net(328988, regions=("Tigray", "Amhara", "Oromia"), probes=108)]
    w = World(countries={"ET": nets}, days=5, every=72, stable_ids=False, noise=0.01,
              events=[Event(kind="silence", country="ET", start=onset, end=end, regions=("Tigray",))])
    incidents = detect_incidents(w.cells())
    assert [(i.kind, i.scope, i.regions) for i in incidents] == [("connectivity_loss", "regional", ("Tigray",))]
    [inc] = incidents
    assert abs((inc.start - onset).total_seconds()) <= 30 * 60
    assert inc.end is not None and abs((inc.end - end).total_seconds()) <= 30 * 60
    assert inc.confirmed_at is not None and inc.confirmed_at - onset <= timedelta(hours=3)


def test_one_dedicated_probe_going_quiet_is_not_a_connectivity_loss() -> None:
    # the only probe of a region (probe 2 of AS17557, in "Remote") is unplugged for a day: it ran every five
    # minutes, so its silence is plain, but one probe is one witness however often it ran
    nets = [Net(17557, regions=("North", "South", "Remote"), probes=3), Net(45669), Net(23674)]
    w = World(countries={"PK": nets}, days=4, every=1, noise=0.0,
              events=[Event(kind="quiet", start=DAY3, end=DAY3 + timedelta(hours=20), asns=(17557,), probe=2,
                            regions=("Remote",))])
    assert [i for i in detect_incidents(w.cells()) if i.kind == "connectivity_loss"] == []


def test_the_end_of_a_countrys_data_is_not_silence() -> None:
    # PK's uploads are two hours behind TR's: at the store's newest data PK has not reported yet, which is
    # no sign of a shutdown on any of its networks
    countries = {"PK": [Net(17557), Net(45669), Net(23674)], "TR": [Net(9121), Net(15897)]}
    w = World(countries=countries, days=3, noise=0.0)
    cells = w.cells()
    last = max(c.bucket for c in cells)
    cells = [c for c in cells if c.country != "PK" or c.bucket <= last - timedelta(hours=2)]
    assert detect_incidents(cells) == []


def test_a_network_silent_while_the_rest_of_the_country_reports_is_still_seen() -> None:
    # the horizon is the rest of the country's data: a network that stops while the others go on, up to
    # the end of the data, is a silence (the counterpart of the test above)
    onset = DAY3 - timedelta(hours=3)
    w = World(days=3, noise=0.0, events=[Event(kind="silence", start=onset, end=DAY3 + timedelta(days=1),
                                               asns=(45669,))])
    [inc] = detect_incidents(w.cells())
    assert (inc.kind, inc.scope, inc.asns, inc.end) == ("connectivity_loss", "network", (45669,), None)
    assert abs((inc.start - onset).total_seconds()) <= 5 * 60


def test_volunteers_leaving_one_by_one_are_churn_not_a_cut() -> None:
    # the twelve volunteers of one region stop over eighteen hours, one every hour and a half, and come back
    # two days later: the region ends up silent, but nobody was cut off at once
    east = [i for i in range(36) if i % 3 == 2]
    leave = [Event(kind="quiet", start=DAY3 + timedelta(hours=1.5 * n), end=DAY3 + timedelta(days=2), probe=i,
                   asns=(17557,), regions=("East",)) for n, i in enumerate(east)]
    nets = [Net(17557, regions=("North", "South", "East"), probes=36), Net(45669), Net(23674)]
    w = World(countries={"PK": nets}, days=6, every=12, stable_ids=False, noise=0.01, events=leave)
    assert [i for i in detect_incidents(w.cells()) if i.kind == "connectivity_loss"] == []
