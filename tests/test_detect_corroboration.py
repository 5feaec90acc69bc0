"""A country-wide decision is corroborated across networks (issue 19): the platform's test on the country's
pooled series alarms a network whose own failures had not yet reached its own alarm
(detect/corroborate.py).

Sparse volunteers (a run every three hours per probe, four probes per network) see a national TLS block as a
failing run on one network, then another on the next: each network's own test waits for three or four of its
own. The first test failed with `Corroboration` alarming nothing (confirmation 125-130 minutes).
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from detect_world import T0, Event, Net, World

from observatory.detect import detect_incidents

START = T0 + timedelta(days=2, hours=10)
ASNS = (17557, 45669, 23674, 59257)


def sparse_world(block: Event, seed: int) -> World:
    nets = [Net(asn, probes=4, regions=("North", "South")) for asn in ASNS]
    return World(countries={"PK": nets}, events=[block], stable_ids=False, every=36, seed=seed, days=3.5,
                 spread=True)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_national_block_seen_by_sparse_volunteers_is_confirmed_within_the_hour(seed: int) -> None:
    block = Event(kind="block", start=START, end=START + timedelta(hours=8), platforms=("twitter", "facebook"))
    [inc] = [i for i in detect_incidents(sparse_world(block, seed).cells()) if i.kind == "platform_restriction"]
    assert inc.scope == "national" and inc.asns == tuple(sorted(ASNS))
    assert inc.confirmed_at is not None and inc.confirmed_at - START <= timedelta(minutes=60)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_one_networks_block_stays_that_networks(seed: int) -> None:
    # the pooled test is diluted by the other networks' normal data: it corroborates nothing here, and the
    # other networks' stray failures meanwhile (noise 2%) do not join
    block = Event(kind="block", start=START, end=START + timedelta(hours=8), platforms=("twitter", "facebook"),
                  asns=(45669,))
    found = [i for i in detect_incidents(sparse_world(block, seed).cells()) if i.confirmed_at is not None]
    assert [(i.kind, i.scope, i.asns) for i in found] == [("platform_restriction", "network", (45669,))]


def test_a_platforms_outage_seen_by_sparse_volunteers_in_four_countries_is_confirmed_within_the_hour() -> None:
    # Facebook down everywhere: each country's one network sees it on a run now and then; pooled over the
    # world, the first three runs confirm it (145 minutes without the pooled test)
    nets = {cc: [Net(asn, probes=4, regions=("North", "South"))]
            for cc, asn in (("PK", 17557), ("IN", 55836), ("BR", 28573), ("DE", 3320))}
    down = Event(kind="down", start=START, end=START + timedelta(hours=6), platforms=("facebook",))
    w = World(countries=nets, events=[down], stable_ids=False, every=36, days=3.5, spread=True)
    [inc] = detect_incidents(w.cells())
    assert (inc.kind, inc.country, inc.platforms) == ("platform_outage", None, ("facebook",))
    assert inc.confirmed_at is not None and inc.confirmed_at - START <= timedelta(minutes=60)
