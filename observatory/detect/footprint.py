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

Only a restriction wholly inside the loss is its footprint: every one of its networks lost its connection
then, and it began no earlier and ended no later than the loss (within a small slack for the edges of two
differently paced tests). A block that began before the shutdown, or goes on after it, or on a network that
kept its connection, is kept.

PURE: clusters in, clusters out.
"""

from __future__ import annotations

from dataclasses import dataclass

from observatory.detect.episodes import OUTAGE, RESTRICTION
from observatory.detect.incidents import Cluster


@dataclass(frozen=True, slots=True)
class Loss:
    """A connectivity loss as detected: its country, networks and span (end None: still going on)."""

    country: str | None
    asns: frozenset[int]
    start: int
    end: int | None


def within_loss(c: Cluster, losses: list[Loss], slack: int) -> bool:
    """Whether every network of the cluster was in a connectivity loss of its country from (about) the
    cluster's start to its end."""
    start, end = c.start, c.end
    for asn in {e.asn for e in c.episodes}:
        if not any(loss.country == c.country and asn in loss.asns and loss.start - slack <= start
                   and (loss.end is None or (end is not None and end <= loss.end + slack)) for loss in losses):
            return False
    return True


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
