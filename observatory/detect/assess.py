"""The assessment of intent: how deliberate an incident looks, with the reasons, in data.

Each rule looks at one fact the evidence shows and moves the score: a restriction confined to social platforms
while control sites stay normal in the same networks, a synchronized onset across networks, one technique
everywhere, block pages, point towards a deliberate act; one network losing everything points to a fault.
Whether the onsets were synchronized and the control sites normal is decided by the one judge the reports use
too (observatory/intent.py).
"""

from __future__ import annotations

from collections.abc import Sequence

from observatory import catalog
from observatory.catalog import CONTROL
from observatory.detect.cluster import Cluster
from observatory.detect.series import Tracks
from observatory.incident import Assessment, NetworkEvidence
from observatory.intent import signs_of_intent
from observatory.vocab import IncidentKind, Scope, Technique


def _control_share(c: Cluster, tracks: Tracks) -> float | None:
    """Share of anomalous probe-observations on the control sites of the affected networks, during the incident."""
    end = c.end
    n = k = 0
    for asn in {e.asn for e in c.episodes}:
        for o in tracks.series.get((c.country or "", asn, CONTROL), ()):
            if o.t >= c.start and (end is None or o.t < end):
                n += o.n
                k += o.k + o.down
    return k / n if n else None


def _minutes(networks: Sequence[NetworkEvidence]) -> int:
    """Minutes between the first and last network onsets (for the reasons' text)."""
    onsets = [n.onset for n in networks if n.onset is not None]
    return int((max(onsets) - min(onsets)).total_seconds() // 60) if onsets else 0


def _social(platforms: list[str]) -> bool:
    known = catalog.platforms()
    return bool(platforms) and all(
        p in known and {"social", "messaging", "video"} & set(known[p].categories) for p in platforms
    )


def assess(c: Cluster, *, kind: IncidentKind, scope: Scope, techniques: list[str],
           networks: Sequence[NetworkEvidence], tracks: Tracks) -> Assessment:
    score, reasons = _score(c, kind=kind, scope=scope, techniques=techniques, networks=networks, tracks=tracks)
    return Assessment(deliberate=score, reasons=tuple(reasons))


def _score(c: Cluster, *, kind: IncidentKind, scope: Scope, techniques: list[str],
           networks: Sequence[NetworkEvidence], tracks: Tracks) -> tuple[float, list[str]]:
    reasons: list[str] = []
    share = _control_share(c, tracks) if kind not in (IncidentKind.PLATFORM_OUTAGE, IncidentKind.CONNECTIVITY_LOSS) \
        else None
    signs = signs_of_intent([n.onset for n in networks if n.onset is not None],
                            None if share is None else 1 - share)
    spread, n_networks = _minutes(networks), signs.networks
    measured = len({asn for (cc, asn, _p) in tracks.series if cc == c.country})
    if kind == IncidentKind.PLATFORM_OUTAGE:
        countries = sorted({e.country for e in c.episodes})
        reasons.append("the platform fails from the control vantage too (verdict down): its own outage")
        if len(countries) > 1:
            reasons.append(f"seen in {len(countries)} countries at once: {', '.join(countries)}")
        return 0.02, reasons
    if kind == IncidentKind.CONNECTIVITY_LOSS:
        if n_networks <= 1:
            reasons.append("a single network losing everything: consistent with a network fault")
            score = 0.25 if scope == Scope.NETWORK else 0.5
        else:
            reasons.append(f"onset within {spread} minutes on {n_networks} of {measured} networks")
            score = 0.85 if signs.synchronized else 0.6
        regions = sorted({r for e in c.episodes for r in e.regions})
        if scope == Scope.REGIONAL and regions:
            reasons.append("confined to " + ", ".join(regions))
        if any(e.silent for e in c.episodes):
            reasons.append("probes stopped reporting at once, against their usual activity")
        if any(not e.silent for e in c.episodes):  # silence alone shows nothing failing, only nobody reporting
            reasons.append("control sites fail too: everything is unreachable, not one platform")
        return score, reasons
    score = 0.35
    platforms = c.platforms()
    if signs.selective:
        what = "only social platforms" if _social(platforms) else "only " + ", ".join(platforms)
        reasons.append(f"{what} affected, control sites normal in the same networks")
        score += 0.25
    if n_networks >= 2:
        reasons.append(f"onset within {spread} minutes on {n_networks} of {measured} networks")
        if signs.synchronized:
            score += 0.2
    if len(techniques) == 1:
        reasons.append(f"same technique everywhere ({techniques[0]})")
        score += 0.1
    if Technique.HTTP_BLOCKPAGE in techniques:
        reasons.append("block pages served in place of the platform")
        score += 0.2
    if kind == IncidentKind.THROTTLING:
        reasons.append("connections succeed but throughput collapsed against the network's own baseline")
        score += 0.1
    if n_networks == 1 and scope == Scope.NETWORK:
        reasons.append("a single network: a decision of that operator, or a fault of its equipment")
    return min(0.98, score), reasons
