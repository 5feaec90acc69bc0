"""A connectivity loss's footprint on the platform tracks: failures that the loss itself explains.

When a network loses its connection, every measurement made on it fails, and a test without a control of
its own in the same run (OONI's telegram, whatsapp and signal tests; a probe whose control was not measured
together with the platform) records that failure as the platform's: timeouts to Telegram's data centres read
as a TCP black hole, WhatsApp's endpoints as interference. Those are not a second event. A restriction can
only be told apart where the connection works; inside a loss of the same network nothing distinguishes a
block from the loss, so such a restriction says nothing the connectivity loss does not already say (on
randomized worlds with the IM tests, every nightly cut in Iran produced two such false restrictions).

The same holds for a platform's own outage (seen `down` from the control's vantage too): while Facebook's
name servers were gone in October 2021, OONI's whatsapp test, which has no control, recorded its failures
as blocking in every country. A platform is down once, everywhere: outages that overlap and share a
platform are one outage, and a restriction of only the outage's platforms, wholly inside it, is its footprint.

The converse holds too: a platform that is down is down from every network that reaches for it. An "outage"
seen on one network while other networks measured the same platform meanwhile and mostly reached it
(`contradicted_outage`) is that network's trouble (a failing resolver made T-Mobile's probes see Twitter
down, and nobody else, for half an hour: a worldwide "Twitter outage"), not the platform's.

Only a restriction that the loss explains is its footprint: without its failures inside a loss of their own
network (within a small slack for the edges of two differently paced tests), fewer probes than confirmation
needs remain. A block that began before the shutdown, or goes on after it, or on a network that
kept its connection, is kept.

PURE: clusters in, clusters out.
"""

from __future__ import annotations

from dataclasses import dataclass

from observatory.detect.cluster import Cluster
from observatory.detect.episodes import OUTAGE, RESTRICTION
from observatory.detect.series import Tracks


@dataclass(frozen=True, slots=True)
class Loss:
    """A connectivity loss as detected: its country, networks and span (end None: still going on)."""

    country: str | None
    asns: frozenset[int]
    start: int
    end: int | None


def within_loss(c: Cluster, losses: list[Loss], slack: int, min_probes: int) -> bool:
    """Whether the cluster is the footprint of connectivity losses: its failures that fell outside every loss
    of their own network and country (within `slack`) come from fewer than `min_probes` distinct probes, so
    that without the loss's failures nothing would confirm it.

    Its failures, not its estimated span: a sparse series (volunteers measuring in the evening) stays alarmed
    until it is seen normal again, hours after the loss was lifted, and a stray failure then is not a block."""
    outside: set[str] = set()
    for e in c.episodes:
        mine = [loss for loss in losses if loss.country == c.country and e.asn in loss.asns]
        for t, keys in e.witnesses:
            if not any(loss.start - slack <= t and (loss.end is None or t < loss.end + slack) for loss in mine):
                outside |= {w.probe for w in keys}
    return len(outside) < min_probes


def _inside(c: Cluster, start: int, end: int | None, slack: int) -> bool:
    return start - slack <= c.start and (end is None or (c.end is not None and c.end <= end + slack))


def outage_footprints(clusters: list[Cluster], slack: int) -> list[Cluster]:
    """Platform outages that overlap in time and share a platform merged into one (the earliest); restrictions
    of only an outage's platforms, wholly inside it, dropped as its footprint."""
    outages: list[Cluster] = []
    rest: list[Cluster] = []
    for c in sorted(clusters, key=lambda c: (c.family != OUTAGE, c.start)):
        if c.family != OUTAGE:
            rest.append(c)
            continue
        home = next((o for o in outages if set(o.platforms()) & set(c.platforms()) and _meet(o, c)), None)
        if home is None:
            outages.append(Cluster(family=OUTAGE, country=None, episodes=list(c.episodes)))
        else:
            home.episodes.extend(c.episodes)
    kept = [c for c in rest if not (c.family == RESTRICTION and c.platforms() and any(
        set(c.platforms()) <= set(o.platforms()) and _inside(c, o.start, o.end, slack) for o in outages))]
    return kept + outages


def _meet(a: Cluster, b: Cluster) -> bool:
    return (a.end is None or b.start < a.end) and (b.end is None or a.start < b.end)


def contradicted_outage(c: Cluster, tracks: Tracks, min_probes: int) -> bool:
    """Whether a platform outage seen on a single network is refuted by the others: over its span, other
    networks (any country) measured its platforms with at least `min_probes` probes reaching them, and most
    of their probes did. Seen on two networks or more, or with nobody else measuring, it stands."""
    if c.family != OUTAGE:
        return False
    mine = {(e.country, e.asn) for e in c.episodes}
    if len(mine) > 1:
        return False
    platforms = set(c.platforms())
    hi = c.end if c.end is not None else tracks.now
    reached = measured = 0
    for (country, asn, platform), obs in tracks.series.items():
        if platform not in platforms or (country, asn) in mine:
            continue
        for o in obs:
            if c.start <= o.t < hi:
                measured += o.n
                reached += o.n - o.k - o.down
    return reached >= min_probes and 2 * reached > measured
