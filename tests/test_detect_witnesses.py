"""Who may witness a connectivity loss (issue 19): a probe that completed a measurement in the same run had its
connection, so its failures there are no cut's witness (detect/incidents.py `confirmed_at`, fed by
detect/degraded.py `Runs.completed`).

On randomized worlds, one installation failing everything for hours in a region of its own (its report id new
on every run, so counted as one installation) was confirmed as a regional loss once two stray runs elsewhere
on its network had failed the control and one platform while completing the rest: three "installations".
The test below failed with `Runs.completed` always False.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

from detect_world import T0, Event, Net, World

from observatory.detect import detect_incidents
from observatory.series import SeriesCell, Witness

START = T0 + timedelta(days=2, hours=11)
NETS = [Net(asn, probes=4, regions=("A", "B", "C", "D")) for asn in (12389, 8359, 3216)]


def stray_run(cells: list[SeriesCell], asn: int, region: str, at: datetime,
              failed: tuple[str, ...] = ("control", "twitter")) -> list[SeriesCell]:
    """The first run of `asn` in `region` from `at` on fails `failed` (the control among them) while its
    other measurements complete: a flaky moment, not a lost connection."""
    bucket = min(c.bucket for c in cells if c.asn == asn and c.region == region and c.bucket >= at)
    key = f"r:stray-{asn}-{region}-{int(bucket.timestamp())}"
    out = []
    for c in cells:
        if c.asn == asn and c.region == region and c.bucket == bucket and c.platform in failed:
            c = replace(c, ok=0, anomalous=c.total, anomalous_probes=c.probes, anomalous_keys=(key,),
                        witnesses=(Witness("http_interference", key),), by_technique={"http_interference": c.total},
                        median_kbps=None)
        out.append(c)
    return out


def test_runs_that_completed_measurements_do_not_witness_one_installations_failure() -> None:
    # region A's only probe on AS12389 fails everything for four hours (a broken home router); two runs in
    # regions B and C fail their control and Twitter once each but complete Facebook and YouTube
    for seed in (1, 2, 3):
        lone = Event(kind="cut", start=START, end=START + timedelta(hours=4), asns=(12389,), regions=("A",))
        w = World(countries={"PK": NETS}, events=[lone], stable_ids=False, every=3, seed=seed, noise=0.02)
        cells = stray_run(stray_run(w.cells(), 12389, "B", START + timedelta(hours=1)),
                          12389, "C", START + timedelta(hours=2))
        confirmed = [i for i in detect_incidents(cells) if i.confirmed_at is not None]
        assert confirmed == [], f"seed {seed}: {[(i.kind, i.regions) for i in confirmed]}"


def test_a_network_cut_seen_by_report_ids_is_still_confirmed() -> None:
    # the same population, the whole network cut: every run fails everything, and it is found
    cut = Event(kind="cut", start=START, end=START + timedelta(hours=4), asns=(12389,))
    w = World(countries={"PK": NETS}, events=[cut], stable_ids=False, every=3, seed=1, noise=0.02)
    found = [(i.kind, i.asns) for i in detect_incidents(w.cells()) if i.confirmed_at is not None]
    assert found == [("connectivity_loss", (12389,))]
