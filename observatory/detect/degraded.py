"""A connectivity loss is all or nothing for the probes it reaches; a degraded network is not.

A probe that has lost its connection completes nothing: every measurement of its run fails (and most never
reach us until it is back). A network whose resolver fails for a few hours, or that is flaky for an hour,
fails a share of everything instead, and the same probe, in the same run, keeps completing some of its
measurements: it had its connection. Measured by content the two look alike (a resolver that does not answer
and a cut both give DNS timeouts, for the control too); by what else the same runs did they do not.

So a network's failures are taken out of a connectivity loss (and the loss dropped when nothing is left)
when its failing runs kept succeeding: over the runs of one probe (a network-region's bucket where the counts show
a single probe) on its networks inside the incident (its first and last buckets left out: a run may
straddle the onset or the end), in which most measurements failed, the share that succeeded is more than a
cut leaves (MAX_OK_SHARE, an allowance for a clock a few minutes off at an edge), and that is more than a
stray success (MIN_OK). Buckets shared by several probes are left out: there a success may be a
neighbour's that the cut did not reach (a partial cut), so they say nothing either way. Where no run of a
single probe failed, the rule abstains. A silence has no runs and stays: what is left must be confirmed on
its own (a region's two probes gone quiet while a flaky network failed elsewhere is no cut).

Measured on randomized worlds (flaky hours, resolver faults): the true cuts' failing runs had no success at
all; the faults' 13% to 44%.

PURE: cells in, a judgement out.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from observatory.detect.cluster import Cluster
from observatory.series import SeriesCell
from observatory.vocab import Technique

MAX_OK_SHARE = 0.05
MIN_OK = 2
THROTTLING = Technique.THROTTLING.value

RunKey = tuple[str, int, str, int]  # country, asn, region, bucket


class Runs:
    """Per network-region and bucket where one probe ran (as far as the counts show): measurements that
    succeeded and that failed, over every platform and the control."""

    def __init__(self, cells: Iterable[SeriesCell]) -> None:
        # ok, anomalous, most probes in a cell, throttled (a slow transfer is a completed one)
        counts: dict[RunKey, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
        for c in cells:
            acc = counts[(c.country, c.asn, c.region or "", int(c.bucket.timestamp()))]
            acc[0] += c.ok
            acc[1] += c.anomalous
            acc[2] = max(acc[2], c.probes)
            acc[3] += c.by_technique.get(THROTTLING, 0)
        self.by_network: dict[tuple[str, int], list[tuple[int, int, int]]] = defaultdict(list)
        # the single-probe runs that completed a measurement: the probe had its connection then
        self.connected: set[RunKey] = set()
        for key, (ok, bad, probes, slow) in counts.items():
            country, asn, _region, t = key
            if probes == 1 and ok + slow:
                self.connected.add(key)
            if probes == 1 and bad and 2 * bad > ok + bad:
                self.by_network[(country, asn)].append((t, ok, bad))

    def completed(self, country: str, asn: int, region: str, bucket: int) -> bool:
        """Whether the one probe that ran in this network-region and bucket completed some measurement
        (False where several ran: a success may be a neighbour's)."""
        return (country, asn, region, bucket) in self.connected

    def failing(self, country: str, asns: Iterable[int], lo: int, hi: int | None) -> tuple[int, int]:
        """Measurements that succeeded and that failed in the single-probe runs that mostly failed, in
        [lo, hi) on these networks."""
        ok = bad = 0
        for asn in asns:
            for t, o, b in self.by_network.get((country, asn), ()):
                if lo <= t and (hi is None or t < hi):
                    ok += o
                    bad += b
        return ok, bad


def degraded_networks(c: Cluster, runs: Runs, step: int) -> set[int]:
    """The networks of a connectivity loss whose failing single-probe runs kept completing measurements:
    judged network by network, over the span of its own failing episodes (a flaky network whose failures
    began within the hour of another network's silence or cut is not part of it; that silence may keep the
    cluster open for days), on its failures only (a silence has no runs)."""
    if c.country is None:
        return set()
    out: set[int] = set()
    for asn in sorted({e.asn for e in c.episodes if not e.silent}):
        mine = [e for e in c.episodes if e.asn == asn and not e.silent]
        ends = [e.end for e in mine]
        end = None if any(x is None for x in ends) else max(x for x in ends if x is not None)
        start = min(e.start for e in mine)
        ok, bad = runs.failing(c.country, (asn,), start + step, None if end is None else end - step)
        if ok >= MIN_OK and ok > MAX_OK_SHARE * (ok + bad):
            out.add(asn)
    return out


def degraded(c: Cluster, runs: Runs, step: int) -> bool:
    """Whether a connectivity loss is only degraded networks' failures (nothing left once they are out)."""
    gone = degraded_networks(c, runs, step)
    return bool(gone) and all(e.silent is False and e.asn in gone for e in c.episodes)


def without_degraded(c: Cluster, gone: set[int]) -> Cluster | None:
    """The cluster without the failures of its degraded networks (their silences stay: a silence is no
    failing run); None when nothing is left."""
    kept = [e for e in c.episodes if e.silent or e.asn not in gone]
    return Cluster(family=c.family, country=c.country, episodes=kept) if kept else None
