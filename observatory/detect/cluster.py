"""Episodes -> clusters: which alarms of single series are one event (see `cluster`).

A cluster is the raw material of an incident: the episodes of one country and family (restriction,
throttling, connectivity, outage) that began together, with the onset and end estimates drawn from their
witnesses and normal data. detect/incidents.py turns a cluster into an incident, detect/assess.py weighs it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from observatory.catalog import CONTROL
from observatory.detect.config import DetectConfig
from observatory.detect.cusum import main_techniques
from observatory.detect.episodes import CONNECTIVITY, OUTAGE, RESTRICTION, THROTTLING, Episode
from observatory.detect.series import ALL_PLATFORMS
from observatory.vocab import RESTRICTION_TECHNIQUES as _RESTRICTION_TECHNIQUES


@dataclass(slots=True)
class Cluster:
    family: str
    country: str | None
    episodes: list[Episode] = field(default_factory=list)

    @property
    def start(self) -> int:
        return min(e.start for e in self.episodes)

    @property
    def end(self) -> int | None:
        ends = [e.end for e in self.episodes]
        return None if any(x is None for x in ends) else max(x for x in ends if x is not None)

    def platforms(self) -> list[str]:
        return sorted({p for e in self.episodes for p in e.platforms})

    def _witnessed(self, step: int) -> list[tuple[int, str]]:
        """(bucket, probe key) of the anomalous observations across the cluster's series, in time order; a
        silence episode's own bounds count as two witnesses (its test runs on a dense grid of counts, not on
        probes). The edges are drawn by the incident's own techniques only: failures of another kind before
        or after it (random noise scatters over every technique) say nothing about when it began or ended."""
        out: set[tuple[int, str]] = set()
        items: list[tuple[int, str, str]] = []
        for i, e in enumerate(self.episodes):
            if e.silent:
                out |= {(e.start, f"silence:{i}:a"), (e.start, f"silence:{i}:b")}
                if e.end is not None:
                    out |= {(e.end - step, f"silence:{i}:a"), (e.end - step, f"silence:{i}:b")}
                continue
            for t, keys in e.witnesses:
                items.extend((t, w.technique, w.probe) for w in keys)
        own = main_techniques(Counter(technique for _, technique, _ in items))
        out |= {(t, key) for t, technique, key in items if technique in own}
        return sorted(out)

    def onset(self, step: int, regions: set[str] | None = None) -> int:
        """The onset estimate. One probe never defines an edge: the first anomalous bucket is the one where a
        second probe had failed (a stray failure or a faulty probe just before the event, in a sparse series,
        would otherwise pull the whole incident early). The change happened after the last
        bucket any of the cluster's series was seen normal before it: the estimate is the middle of that gap
        (with dense data the two are adjacent and this is the first anomalous bucket; with sparse data,
        volunteers or night hours, the middle halves the worst error)."""
        witnessed = self._witnessed(step)
        ev = [t for t, _ in witnessed]
        firsts = sorted({key: t for t, key in reversed(witnessed)}.values())  # each probe's first failure
        first = firsts[1] if len(firsts) >= 2 else self.start
        first = max(first, self.start)
        normal = [t for t in self._normal(regions) if t < first]
        if normal:
            lo = max(normal) + step  # the latest normal data before it: the tightest bound
            # the first anomalous observation since that normal data starts the incident: a failure that
            # nothing normal followed before the second one is the event's first word, not a stray (one in
            # the same bucket as the normal data may be: a partial block leaves some probes unaffected)
            first = min((t for t in ev if t >= lo - step), default=first)
            if first < lo:
                return first
        else:  # no normal data kept (episodes built by hand): the series' last data before its own start
            before = [e.before for e in self.episodes if e.before is not None and e.before < first
                      and e.start <= first]
            if not before:
                return first
            lo = min(before) + step
        return first - min((first - lo) // (2 * step) * step, self._spacing(step))

    def finish(self, step: int, regions: set[str] | None = None) -> int | None:
        """The end estimate, likewise: after the bucket of the last probe's last failure (the second-to-last
        probe's when a series was seen normal again in between), midway to the first bucket any of the
        cluster's series was seen normal at or after it."""
        end = self.end if self.end is not None else self._settled_end(step)
        if end is None:
            return None
        lasts = sorted({key: t for t, key in self._witnessed(step)}.values())  # each probe's last failure
        if len(lasts) >= 2:
            # the last probe alone extends the end only if no series of the incident was seen normal again
            # before its last failure (a faulty probe or a stray failure after the event, versus a sparse
            # series' last word)
            last, second = lasts[-1] + step, lasts[-2] + step
            seen_normal = any(e.after is not None and second <= e.after < last - step for e in self._judges())
            end = min(end, second if seen_normal else last)
        normal = [t for t in self._normal(regions) if t >= end - step]
        if normal:
            hi = min(normal)
        else:
            after = [e.after for e in self.episodes if e.after is not None and e.after >= end
                     and e.end is not None and e.end >= end]
            if not after:
                return end
            hi = max(after)
        if hi <= end:
            return end
        return end + min((hi - end) // (2 * step) * step, self._spacing(step))

    def _settled_end(self, step: int) -> int | None:
        """The end of an incident some of whose series are still alarmed, when the data say it is over: the
        others have ended, and each still-alarmed series either failed last (by the incident's techniques)
        before they had, or has been seen normal since its last failure. A sparse series (a few volunteers,
        at night) may need many hours to gather enough evidence to end on its own, and one with no data since
        its last failure says nothing either way; together with the rest of the incident neither holds it
        open. A network gone silent does: its silence is its own episode."""
        closed = [e.end for e in self.episodes if e.end is not None]
        if not closed:
            return None
        others = max(closed)
        settled = others
        for e in self.episodes:
            if e.end is not None:
                continue
            own = main_techniques(Counter(w.technique for _, keys in e.witnesses for w in keys))
            last = max((t for t, keys in e.witnesses if any(w.technique in own for w in keys)),
                       default=e.start)
            if last + step > others and not any(t > last for t, _ in e.normal):
                return None  # failing after the others had ended, and not seen normal since
            settled = max(settled, last + step)
        return settled

    def _normal(self, regions: set[str] | None = None) -> list[int]:
        """Buckets where the incident's series were seen normal in its regions (those of its scope when
        given, else those where its episodes were seen): a region the event did not reach stays normal. A
        network's all-platforms track is left out when a platform's own track is there (a probe that measured
        other platforms only says nothing about the one that was blocked)."""
        if regions is None:
            regions = {r for e in self.episodes for r in e.regions}
        return [t for e in self._judges() for t, r in e.normal if not r or not regions or r in regions]

    def _judges(self) -> list[Episode]:
        """The episodes whose data can say the incident's platforms were fine: a platform's own track when
        there is one, not the network's all-platforms track (a probe that measured other platforms only)."""
        own = [e for e in self.episodes if e.platform != ALL_PLATFORMS and not e.silent]
        return own or self.episodes

    def _spacing(self, step: int) -> int:
        """How far an edge may move into a gap: the usual time between data in the cluster's series. A gap
        much longer than that is missing data (probes silenced, uploads late), not a sampling interval, and
        says nothing about when the change happened inside it."""
        gaps = sorted(e.spacing for e in self.episodes if e.spacing)
        return gaps[len(gaps) // 2] if gaps else step


def cluster(episodes: list[Episode], cfg: DetectConfig) -> list[Cluster]:
    """Greedy merge by (country, family) of episodes that overlap in time, within a small gap, and began
    close to the incident's own onset (see `_joins`). A network's all-platforms track comes after the
    platforms' own tracks: it sums every platform, so it goes to the incident whose platforms it shares
    most rather than bridging two events of different platforms; where the network's own platform tracks
    alarmed at the same time it adds nothing and is left out (its sum mixes their techniques)."""
    groups: dict[tuple[str | None, str], list[Episode]] = {}
    for e in episodes:
        if not e.silent and e.family != CONNECTIVITY and _distinct_keys(e) < 2:
            continue  # one probe's word (a faulty installation, a local firewall): never an incident
        country = None if e.family == OUTAGE else e.country
        groups.setdefault((country, e.family), []).append(e)
    out: list[Cluster] = []
    for (country, family), eps in sorted(groups.items(), key=lambda kv: (kv[0][0] or "", kv[0][1])):
        eps.sort(key=lambda e: (e.start, e.asn, e.platform or ""))
        later = family in (RESTRICTION, THROTTLING)
        mine: list[Cluster] = []
        for e in [e for e in eps if not (later and e.platform == ALL_PLATFORMS)]:
            # an incident that already holds this network comes first: a network's next episode of the same
            # event must not go to a fault elsewhere that began in the meantime
            home = next((c for c in reversed(mine) if _joins(c, e, cfg) and any(x.asn == e.asn for x in c.episodes)),
                        None) or next((c for c in reversed(mine) if _joins(c, e, cfg)), None)
            if home is not None:
                home.episodes.append(e)
            else:
                mine.append(Cluster(family=family, country=country, episodes=[e]))
        if family == RESTRICTION:
            mine = _merge_late_joiners(mine, cfg)
        for e in [e for e in eps if later and e.platform == ALL_PLATFORMS]:
            if any(x.asn == e.asn and x.platform != ALL_PLATFORMS and x.overlaps(e.start, e.end)
                   for c in mine for x in c.episodes):
                continue  # the network's platforms tell it themselves, each to its own incident
            fits = [c for c in mine if _joins(c, e, cfg)]
            if fits:
                max(fits, key=lambda c: (len(e.platforms & set(c.platforms())),
                                         any(x.asn == e.asn for x in c.episodes), -c.start)).episodes.append(e)
            else:
                mine.append(Cluster(family=family, country=country, episodes=[e]))
        out.extend(mine if family != CONNECTIVITY else [c for c in mine if _whole_network(c)])
    return _worldwide_outages(out, cfg)


def _merge_late_joiners(clusters: list[Cluster], cfg: DetectConfig) -> list[Cluster]:
    """Restriction incidents whose first episode joins an earlier incident as that one finally stands. The
    greedy pass judges an episode against the incident as it was when the episode came: ACT's DNS block of
    TikTok, first seen an hour after Jio's TLS block of Telegram, shared neither platform nor technique with
    it yet; Jio's TikTok, a little later, made it the same story (one decision, two operators)."""
    out: list[Cluster] = []
    for c in clusters:
        first = min(c.episodes, key=lambda e: e.start)
        home = next((x for x in out if x.start <= c.start and _joins(x, first, cfg)), None)
        if home is None:
            out.append(c)
        else:
            home.episodes.extend(c.episodes)
    return out


def _whole_network(c: Cluster) -> bool:
    """A connectivity loss takes everything: its probes fell silent, or the control failed, or most of the
    platforms measured did (at least three quarters, and two). One platform failing at every step while the
    control worked is not one, nor is one company's family of platforms failing together (Facebook,
    Instagram and WhatsApp down for hours in October 2021: their outage, not the network's)."""
    return any(e.silent or (e.platform or "").startswith(CONTROL) or _most_platforms(e) for e in c.episodes)


def _most_platforms(e: Episode) -> bool:
    return e.platform == ALL_PLATFORMS and len(e.platforms) >= 2 and 4 * len(e.platforms) >= 3 * e.measured_platforms


def _joins(c: Cluster, e: Episode, cfg: DetectConfig) -> bool:
    """Whether an episode belongs to an incident.

    In time: it overlaps the incident (within a small gap). Then either it continues one of the incident's
    own series (see `_continues`) where that series' episode left off, or it began close to the
    incident's onset: a cut or a block starts at once on every network it touches, while faults and churn
    start whenever. The onset is the incident's first episode's, never
    its latest member's, so onsets hours apart are not chained neighbour to neighbour into one event. A
    series' onset is bounded by its last data before its first failure: sparse volunteers see late.
    For a restriction, the episode must also concern what the incident concerns (`_same_story`): one ISP's
    YouTube DNS block and, a minute later, a national Twitter TLS block are two decisions; four platforms
    blocked with one method on six networks at once are one.
    """
    end = c.end
    if end is not None and e.start > end + cfg.merge_gap_seconds:
        return False
    if e.end is not None and c.start > e.end + cfg.merge_gap_seconds:
        return False  # over before the incident began (a network's all-platforms track is placed last)
    if c.family == OUTAGE:
        return True
    if c.family == RESTRICTION and not _same_story(c, e):
        return False
    if c.family == RESTRICTION and _same_block(c, e):
        return True  # the same platforms blocked the same way: a sparse network may see the block late
    if c.family == THROTTLING and e.platforms & set(c.platforms()):
        return True  # likewise a platform throttled (throughput collapses need many samples to show)
    if any(_continues(x, e, cfg) for x in c.episodes):
        return True
    earliest = e.start if e.before is None else min(e.start, e.before + cfg.bucket_seconds)
    return earliest - c.start <= cfg.sync_seconds


def _continues(x: Episode, e: Episode, cfg: DetectConfig) -> bool:
    """`e` is the same series' event going on: same network (and platform, for a restriction), both
    silences or both failures, overlapping `x` or starting within the merge gap of its end. A silence does
    not continue into failures or back: a region of a network silent since yesterday (a probe gone) does
    not make today's cut of that whole network part of its story."""
    if x.asn != e.asn or x.silent != e.silent or (x.platform != e.platform and x.family != CONNECTIVITY):
        return False
    return x.overlaps(e.start, e.end, cfg.merge_gap_seconds)


def _same_story(c: Cluster, e: Episode) -> bool:
    """A restriction episode (starting near the incident's onset) concerns the incident: a platform in common
    (one decision, which each operator carries out its own way: DNS on one ISP, TLS on another, each reported
    per network), or a main technique in common (one decision applied by one method to several platforms).
    A one-ISP YouTube DNS block and a national Twitter TLS block a minute later share neither: two incidents."""
    if e.platforms & set(c.platforms()):
        return True
    mine = main_techniques(Counter({t: n for t, n in e.techniques.items() if t in _RESTRICTION_TECHNIQUES}))
    theirs: set[str] = set()
    for x in c.episodes:
        theirs |= main_techniques(Counter({t: n for t, n in x.techniques.items() if t in _RESTRICTION_TECHNIQUES}))
    return bool(mine & theirs)


def _same_block(c: Cluster, e: Episode) -> bool:
    """A restriction episode blocking one of the incident's platforms with one of its techniques."""
    if not e.platforms & set(c.platforms()):
        return False
    mine = main_techniques(Counter({t: n for t, n in e.techniques.items() if t in _RESTRICTION_TECHNIQUES}))
    return any(mine & main_techniques(Counter({t: n for t, n in x.techniques.items() if t in _RESTRICTION_TECHNIQUES}))
               for x in c.episodes if x.platforms & e.platforms)


def _distinct_keys(e: Episode) -> int:
    return len({w.probe for _, keys in e.witnesses for w in keys})


def _worldwide_outages(clusters: list[Cluster], cfg: DetectConfig) -> list[Cluster]:
    """One platform failing at once in many countries is that platform's outage, not many restrictions."""
    restrictions = [c for c in clusters if c.family == RESTRICTION]
    taken: set[int] = set()  # indexes into `restrictions`
    merged: list[Cluster] = []
    for i, c in enumerate(restrictions):
        if i in taken:
            continue
        group = [i]
        for j in range(i + 1, len(restrictions)):
            d = restrictions[j]
            if j in taken or d.country == c.country:
                continue
            if set(d.platforms()) & set(c.platforms()) and _overlap(c, d):
                group.append(j)
        if len({restrictions[g].country for g in group}) >= cfg.outage_min_countries:
            taken.update(group)
            merged.append(Cluster(family=OUTAGE, country=None,
                                  episodes=[e for g in group for e in restrictions[g].episodes]))
    gone = {id(restrictions[i]) for i in taken}
    kept = [c for c in clusters if id(c) not in gone]
    return _within_outages(kept + merged, cfg)


def _within_outages(clusters: list[Cluster], cfg: DetectConfig) -> list[Cluster]:
    """A platform's failures while that platform is down for everyone are its outage: a restriction (or an
    outage pieced together from restrictions) of the outage's platforms only, beginning while it goes on, joins
    it. The IM tests and OONI's older web tests have no control of their own, so a platform's own outage
    reads there as interference; the measurements that do have one already showed it down."""
    outages = sorted((c for c in clusters if c.family == OUTAGE), key=lambda c: -len(c.episodes))
    out: list[Cluster] = []
    for c in clusters:
        home = next((o for o in outages if o is not c and _during(c, o, cfg)
                     and set(c.platforms()) <= set(o.platforms())
                     and (c.family == RESTRICTION or len(o.episodes) > len(c.episodes))), None)
        if c.family in (RESTRICTION, OUTAGE) and c.platforms() and home is not None:
            home.episodes.extend(c.episodes)
        else:
            out.append(c)
    return out


def _during(c: Cluster, outage: Cluster, cfg: DetectConfig) -> bool:
    """Whether the cluster's failures fall in the outage: it begins while the outage goes on (or within the
    gap that merges one event's anomalies, for the outage's own onset is known only that well) and is not over
    before the outage began. A restriction of the same platform an hour earlier, lifted before the outage, is
    another event (the lab's Facebook reset, then Facebook's outage)."""
    end = outage.end
    begins = outage.start - cfg.merge_gap_seconds <= c.start and (end is None or c.start < end)
    return begins and (c.end is None or c.end > outage.start)


def _overlap(a: Cluster, b: Cluster) -> bool:
    a_end, b_end = a.end, b.end
    return (a_end is None or b.start < a_end) and (b_end is None or a.start < b_end)
