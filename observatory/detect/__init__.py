"""Detection: from stored verdicts to incidents. PURE: plain data in, plain data out; no clock, store or I/O.

    cells (5-min, per country x network x region x platform)
      -> tracks (series.fold)              per network x platform, and per network x region activity
      -> alarms (cusum, silence)           Bernoulli CUSUM on distinct probes; negative-binomial CUSUM on silence
      -> episodes (episodes.find_episodes) with a family: restriction, throttling, connectivity, outage
      -> clusters (cluster.cluster)        episodes of one event merged
      -> incidents (incidents.*)           causally confirmed, scoped, assessed

`detect_incidents(cells)` and `detect_measurements(rows)` are the library API; `observatory.service.run_detection`
is the one place that reads the store and writes incidents (`detect.run` holds its pure bookkeeping).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from observatory.detect.cluster import cluster
from observatory.detect.config import DetectConfig
from observatory.detect.degraded import Runs, degraded_networks, without_degraded
from observatory.detect.episodes import CONNECTIVITY, RESTRICTION, find_episodes
from observatory.detect.faults import drop_network_faults
from observatory.detect.footprint import Loss, contradicted_outage, outage_footprints, within_loss
from observatory.detect.incidents import to_incident
from observatory.detect.probes import disagreeing_probes, isolated_spans
from observatory.detect.series import build_series, fold
from observatory.incident import Incident, PreviousEpisodes
from observatory.series import SeriesCell
from observatory.store.base import Row
from observatory.vocab import IncidentKind

CONNECTIVITY_KIND = IncidentKind.CONNECTIVITY_LOSS.value

__all__ = ["DetectConfig", "build_series", "detect_incidents", "detect_measurements", "disagreeing_probes"]


def detect_incidents(cells: Iterable[SeriesCell], *, config: DetectConfig | None = None) -> list[Incident]:
    """Incidents in a set of series cells, ordered by start. Deterministic: same cells, same incidents."""
    cfg = config or DetectConfig()
    cells = list(cells)
    tracks = fold(cells, cfg.bucket_seconds)
    if not tracks.series:
        return []
    flagged = disagreeing_probes(tracks)
    isolated_at = isolated_spans(tracks)
    out: list[Incident] = []
    losses: list[Loss] = []
    # connectivity losses first: a restriction that a loss of its networks explains (a confirmed cut, or a
    # degraded network whose control failed too) is the loss's footprint on tests without a control of their
    # own (detect/footprint.py), not a second event
    # a restriction whose network's control failed with it is the network failing (detect/faults.py)
    episodes = drop_network_faults(find_episodes(tracks, cfg), tracks, cfg)
    clusters = sorted(outage_footprints(cluster(episodes, cfg), cfg.merge_gap_seconds),
                      key=lambda c: c.family != CONNECTIVITY)
    runs: Runs | None = None
    for c in clusters:
        if c.family == RESTRICTION and within_loss(c, losses, cfg.merge_gap_seconds, cfg.min_probes):
            continue
        if contradicted_outage(c, tracks, cfg.min_probes):
            continue  # one network's view of a platform that everyone else reached
        if c.family == CONNECTIVITY:
            runs = runs or Runs(cells)
            gone = degraded_networks(c, runs, cfg.bucket_seconds)
            if gone:
                # their probes kept completing measurements: a resolver or a flaky hour, not a cut; confirmed
                # or not, their control failed with everything else, so they explain the failures of tests
                # without a control inside it
                for asn in gone:
                    mine = [e for e in c.episodes if e.asn == asn and not e.silent]
                    ends = [e.end for e in mine]
                    losses.append(Loss(c.country, frozenset({asn}), min(e.start for e in mine),
                                       None if None in ends else max(e for e in ends if e is not None)))
                rest = without_degraded(c, gone)
                if rest is None:
                    continue
                c = rest
        witnesses = {w.probe for e in c.episodes for _, keys in e.witnesses for w in keys}
        near = [f for f in flagged if c.country in (None, f["country"]) and f["probe"] not in witnesses
                and f["asn"] in {f"AS{e.asn}" for e in c.episodes}]
        # probes that lost everything alone while this cluster's event went on (not on some other day): a
        # connectivity question only (a probe's stray failure of the control says nothing about a block)
        lo, hi = c.start - cfg.bucket_seconds, (c.end if c.end is not None else tracks.now)
        isolated = frozenset(k for k, spans in isolated_at.items() if any(a <= hi and b >= lo for a, b in spans)
                             ) if c.family == CONNECTIVITY else frozenset()
        inc = to_incident(c, tracks, cfg, near, isolated, runs.completed if runs is not None else None)
        if inc is None:
            continue
        if c.family == CONNECTIVITY and inc.confirmed_at is not None:
            losses.append(Loss(c.country, frozenset(inc.asns), int(inc.start.timestamp()),
                               None if inc.end is None else int(inc.end.timestamp())))
        out.append(inc)
    out.sort(key=lambda i: (i.start, i.country or "", i.kind, i.id))
    return link_series(_unique_ids(out))


SERIES_DAYS = 7  # earlier episodes of the same story this recent make a series ("the third evening in a row")


def link_series(incidents: list[Incident], *, days: int = SERIES_DAYS) -> list[Incident]:
    """Each incident with the earlier episodes of its story in its evidence: `previous_episodes` = the ids
    of the earlier incidents of the same country and story (both connectivity losses, or restrictions,
    throttling or outages sharing a platform) that began within `days` before it, oldest first, and their
    count. An interruption that was lifted is its own incident; the series is how they stay linked (the
    report's history counts them the same way)."""
    out: list[Incident] = []
    for inc in incidents:
        earlier = [p for p in out if p.start < inc.start and (inc.start - p.start).total_seconds() <= days * 86400
                   and _same_story(p, inc)]
        if not earlier:
            out.append(inc)
            continue
        previous = PreviousEpisodes(ids=tuple(p.id for p in earlier), count=len(earlier), days=days)
        out.append(inc.with_(evidence=replace(inc.evidence, previous_episodes=previous)))
    return out


def _same_story(a: Incident, b: Incident) -> bool:
    if a.country is None or a.country != b.country:
        return False
    if (a.kind == CONNECTIVITY_KIND) or (b.kind == CONNECTIVITY_KIND):
        return a.kind == b.kind
    return bool(set(a.platforms) & set(b.platforms))


def detect_measurements(rows: Iterable[Row], *, config: DetectConfig | None = None) -> list[Incident]:
    """The same on plain rows (measurement + verdict + kbps): builds the series, then detects."""
    cfg = config or DetectConfig()
    return detect_incidents(build_series(rows, bucket_seconds=cfg.bucket_seconds), config=cfg)


def _unique_ids(incidents: list[Incident]) -> list[Incident]:
    """Two incidents of one kind starting in the same minute in one country get -2, -3... (in start order)."""
    seen: dict[str, int] = {}
    out = []
    for inc in incidents:
        n = seen.get(inc.id, 0) + 1
        seen[inc.id] = n
        out.append(inc if n == 1 else inc.with_(id=f"{inc.id}-{n}"))
    return out
