"""Episodes -> incidents: merge, confirm causally, attribute kind, scope, technique; then the assessment.

Anomalies that share a country, a time and a family are one incident across platforms and networks. The
platform's own outage is merged across countries (country null). A cluster is confirmed at the earliest time
the data taken up to then holds enough independent witnesses (distinct probe keys) from alarmed series.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from statistics import median
from typing import Any

from observatory.detect.assess import assess
from observatory.detect.config import DetectConfig
from observatory.detect.cusum import main_techniques
from observatory.detect.episodes import CONNECTIVITY, CONTROL, OUTAGE, RESTRICTION, THROTTLING, Episode
from observatory.detect.series import ALL_PLATFORMS, Obs, Tracks
from observatory.incident import Assessment, Incident
from observatory.vocab import IncidentKind, Scope, Status

KIND_OF_FAMILY = {
    RESTRICTION: IncidentKind.PLATFORM_RESTRICTION.value,
    THROTTLING: IncidentKind.THROTTLING.value,
    CONNECTIVITY: IncidentKind.CONNECTIVITY_LOSS.value,
    OUTAGE: IncidentKind.PLATFORM_OUTAGE.value,
}
# techniques that describe a restriction (unreachable is connectivity's, throttling its own kind)
_RESTRICTION_TECHNIQUES = frozenset({"dns_tampering", "tcp_reset", "tcp_blackhole", "tls_interference", "tls_mitm",
                                     "http_blockpage", "http_interference"})


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
                for tk in keys:
                    technique, key = tk.split(" ", 1)
                    items.append((t, technique, key))
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
            own = main_techniques(Counter(tk.split(" ", 1)[0] for _, keys in e.witnesses for tk in keys))
            last = max((t for t, keys in e.witnesses if any(tk.split(" ", 1)[0] in own for tk in keys)),
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
    return len({tk.split(" ", 1)[1] for _, keys in e.witnesses for tk in keys})


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
    end = outage.end
    return outage.start - cfg.sync_seconds <= c.start and (end is None or c.start < end)


def _overlap(a: Cluster, b: Cluster) -> bool:
    a_end, b_end = a.end, b.end
    return (a_end is None or b.start < a_end) and (b_end is None or a.start < b_end)


def confirmed_at(c: Cluster, cfg: DetectConfig, isolated: frozenset[str] = frozenset(),
                 where: dict[str, tuple[int, str]] | None = None) -> tuple[int | None, int]:
    """Earliest time at which alarmed series had shown `min_probes` distinct witnesses, and how many in all.

    For a restriction the witnesses must agree on the technique: censorship applies one method to everyone
    it targets, while random failures scatter over every kind of failure.

    For a connectivity loss, keys without a stable probe identity (a report id is new on every run) are
    counted as installations: one faulty installation that runs often fails every run, each under a new
    report id, exactly like a region losing its connection. Runs of one network and region count as only as
    many witnesses as ran at the same time (in one bucket), which only different installations can.
    """
    where = where or {}
    entries: list[tuple[int, int, frozenset[str]]] = []
    for e in c.episodes:
        for t, keys in e.witnesses:
            entries.append((max(t + cfg.bucket_seconds, e.alarm), t, keys))
    entries.sort(key=lambda x: (x[0], x[1]))
    per_technique = c.family == RESTRICTION
    seen: dict[str, set[str]] = {}
    everyone: set[str] = set()
    runs: dict[tuple[int, str], dict[int, set[str]]] = {}  # (asn, region) -> bucket -> unstable keys
    when: int | None = None
    for t, bucket, keys in entries:
        for tk in keys:
            technique, key = tk.split(" ", 1)
            if c.family == CONNECTIVITY and key in isolated:
                continue  # a probe that failed alone while its neighbours were fine vouches for nothing
            everyone.add(key)
            if c.family == CONNECTIVITY and key in where and not key.startswith("p:"):
                asn, region = where[key]
                runs.setdefault((asn, region), {}).setdefault(bucket, set()).add(key)
                key = f"installations:{asn}:{region}"
            seen.setdefault(technique if per_technique else "", set()).add(key)
        independent = {name: len(v) for name, v in seen.items()}
        if runs and "" in seen:
            groups = [k for k in seen[""] if k.startswith("installations:")]
            independent[""] += sum(max(len(v) for v in runs[_group(g)].values()) - 1 for g in groups)
        if when is None and any(n >= cfg.min_probes for n in independent.values()):
            when = t
    return when, len(everyone)


def _group(name: str) -> tuple[int, str]:
    _, asn, region = name.split(":", 2)
    return int(asn), region


def _ts(t: int | None) -> datetime | None:
    return None if t is None else datetime.fromtimestamp(t, UTC)


def _techniques(c: Cluster) -> list[str]:
    """Every technique seen, the union over networks (most used first): two ISPs blocking the same platforms,
    one by DNS and one by TLS, used two techniques, and a count over the whole incident would drown the
    smaller network's."""
    if c.family == CONNECTIVITY:
        return ["unreachable"]
    if c.family == THROTTLING:
        return ["throttling"]
    if c.family == OUTAGE:
        return []
    per = _techniques_by_network(c)
    counts: Counter[str] = Counter()
    for e in c.episodes:
        if e.platform != CONTROL:
            counts.update({t: n for t, n in e.techniques.items() if t in _RESTRICTION_TECHNIQUES})
    used = {t for ts in per.values() for t in ts}
    return sorted(used, key=lambda t: (-counts[t], t))


def _techniques_by_network(c: Cluster) -> dict[int, list[str]]:
    """Per network, the techniques behind a tenth or more of its own anomalous observations (noise scatters
    over every kind; an operator applies its one or two methods)."""
    if c.family == CONNECTIVITY:
        return {e.asn: ["unreachable"] for e in c.episodes}
    if c.family == THROTTLING:
        return {e.asn: ["throttling"] for e in c.episodes}
    counts: dict[int, Counter[str]] = {}
    for e in c.episodes:
        if e.platform != CONTROL:
            counts.setdefault(e.asn, Counter()).update(
                {t: n for t, n in e.techniques.items() if t in _RESTRICTION_TECHNIQUES})
    return {asn: sorted(main_techniques(n), key=lambda t: (-n[t], t)) for asn, n in counts.items() if n}


def _measured_networks(c: Cluster, tracks: Tracks) -> dict[int, set[str]]:
    """The networks of the country that reported in the six hours before onset, with their regions."""
    lo = c.start - 6 * 3600
    out: dict[int, set[str]] = {}
    for (country, asn, _platform), obs in tracks.series.items():
        if country != c.country:
            continue
        for o in obs:
            if lo <= o.t < c.start + 3600 and o.n:
                out.setdefault(asn, set()).update(r for r in o.regions if r)
                break
    return out


def _witnessed_regions(e: Episode, tracks: Tracks, isolated: frozenset[str]) -> set[str] | None:
    """The episode's regions where a probe that is not isolated witnessed it; None when the episode's
    witnesses are all isolated probes (it says nothing about where the event was)."""
    if e.silent:
        return set(e.regions)
    located = [tracks.where.get(tk.split(" ", 1)[1]) for _, keys in e.witnesses for tk in keys]
    if not any(located):
        return set(e.regions)  # counts without probe keys (down, throughput): the share decides
    keys = {tk.split(" ", 1)[1] for _, ks in e.witnesses for tk in ks}
    where = {tracks.where[k][1] for k in keys if k in tracks.where and k not in isolated}
    if not where:
        return None
    return {r for r in e.regions if r in where}


def scope_of(c: Cluster, tracks: Tracks, cfg: DetectConfig,
             isolated: frozenset[str] = frozenset()) -> tuple[str, list[int], list[str]]:
    """National, regional or network, with the networks and regions. A region counts only where a probe that
    is not isolated (failing alone while its neighbours were fine) saw the event: one faulty installation
    elsewhere in an affected network does not widen the event to its region."""
    affected: dict[int, set[str]] = {}
    for e in c.episodes:
        witnessed = _witnessed_regions(e, tracks, isolated)
        if witnessed is not None:
            affected.setdefault(e.asn, set()).update(r for r in witnessed if r)
    # over the whole incident, not one episode: a region whose measurements were mostly fine all along
    # (a short run of failures in one series of a long event) is not part of it
    lo, hi = c.start, c.end
    normal: dict[int, set[str]] = {}  # per network, the regions seen normal during the incident
    for asn, where in affected.items():
        totals: dict[str, list[int]] = {}
        silent: set[str] = set()
        for e in c.episodes:
            if e.asn != asn:
                continue
            if e.silent:
                silent |= e.regions
                continue
            for o in tracks.series.get((c.country or e.country, asn, e.platform or ""), ()):
                if o.t >= lo and (hi is None or o.t < hi):
                    for region, (n, k) in o.regions.items():
                        acc = totals.setdefault(region, [0, 0])
                        acc[0] += n
                        acc[1] += k
        if c.family == THROTTLING:
            # a throttled measurement succeeds (slowly): its verdict says nothing of speed, so no region is
            # "seen normal" by verdicts; the regions are where slow probes were seen
            normal[asn] = set()
            continue
        mostly = {r for r, (n, k) in totals.items() if n and 2 * k >= n} | silent
        if where & mostly:
            affected[asn] = where & mostly
        fine = {r for r, (n, k) in totals.items() if n and 2 * k < n}
        if silent:  # a network's region that kept reporting through its silence was not cut
            fine |= {r for r in tracks.regions.get((c.country or "", asn), set()) if r and r not in silent
                     and _active(tracks, (c.country or "", asn, r), lo, hi)}
        normal[asn] = {r for r in fine if r} - affected[asn]
    if not affected:
        for e in c.episodes:
            affected.setdefault(e.asn, set()).update(r for r in e.regions if r)
    asns = sorted(affected)
    regions = sorted({r for rs in affected.values() for r in rs})
    if c.family == OUTAGE:
        return Scope.NATIONAL.value, asns, regions
    measured = _measured_networks(c, tracks)
    for asn in asns:
        measured.setdefault(asn, set()).update(tracks.regions.get((c.country or "", asn), set()) - {""})
    # a network is wholly affected unless one of its regions was seen normal while the event went on (a
    # region with no data then is unknown, not normal: sparse volunteers leave many regions unseen for hours)
    wholly = [a for a in asns if not normal.get(a)]
    if (len(wholly) >= cfg.min_networks_national and len(wholly) >= cfg.national_share * len(measured)
            and not _others_seen_normal(c, tracks, set(asns), cfg)):
        return Scope.NATIONAL.value, asns, regions
    if len(wholly) < len(asns):
        return Scope.REGIONAL.value, asns, regions
    return Scope.NETWORK.value, asns, regions


def _others_seen_normal(c: Cluster, tracks: Tracks, asns: set[int], cfg: DetectConfig) -> bool:
    """Whether a network outside the incident was seen normal while it went on: its measurements of the
    incident's platforms (all of them, for a connectivity loss) mostly succeeded. National means every network
    measured; one that worked throughout is measured evidence against it (one not measured then says nothing)."""
    platforms = set(c.platforms()) if c.family != CONNECTIVITY else None
    lo, hi = c.start, c.end
    speeds: dict[int, set[bool]] = {}  # throttling: per network, its platforms' speeds usual (True) or not
    for (country, asn, platform), obs in tracks.series.items():
        if country != c.country or asn in asns or platform == ALL_PLATFORMS:
            continue
        if platforms is not None and platform not in platforms:
            continue
        if c.family == THROTTLING:
            speed = _usual_speed(obs, lo, hi, cfg)
            if speed is not None:
                speeds.setdefault(asn, set()).add(speed)
            continue
        n = k = 0
        for o in obs:
            if o.t >= lo and (hi is None or o.t < hi):
                n += o.n
                k += o.k + o.down
        if n >= 2 and 2 * k < n:
            return True
    # a network is seen at its usual speed when some of the incident's platforms were and none collapsed: a
    # collapse on one platform is the throttling itself, where the network's own test lacked the data to alarm
    return any(seen == {True} for seen in speeds.values())


def _usual_speed(obs: list[Obs], lo: int, hi: int | None, cfg: DetectConfig) -> bool | None:
    """Whether a track's throughput was seen at its usual level in [lo, hi) (True), collapsed (False), or
    not known (None): speed, not verdicts (a throttled measurement succeeds). Per test, the median of its
    probes' figures meanwhile, from two probes at least, against the median of the trailing baseline window
    before, collapsed when below it by the throttling ratio. A track whose speed was not measured then, or
    had no baseline, says nothing (its own test could not alarm)."""
    before: dict[str, list[float]] = {}
    during: dict[str, dict[str, list[float]]] = {}
    for o in obs:
        # cells without per-probe figures: each cell's median as one anonymous value
        values = o.probe_kbps or [(f"cell:{o.t}:{i}", "", v) for i, v in enumerate(o.kbps)]
        if lo - cfg.baseline_seconds <= o.t < lo:
            for _key, test, v in values:
                before.setdefault(test, []).append(v)
        elif o.t >= lo and (hi is None or o.t < hi):
            for key, test, v in values:
                during.setdefault(test, {}).setdefault(key, []).append(v)
    seen: bool | None = None
    for test, per_probe in during.items():
        usual = before.get(test, [])
        if len(per_probe) < 2 or len(usual) < 2:
            continue
        now = median(x for vs in per_probe.values() for x in vs)
        if now * cfg.throttle_ratio < median(usual):
            return False
        seen = True
    return seen


def _active(tracks: Tracks, key: tuple[str, int, str], lo: int, hi: int | None) -> bool:
    """Whether the network-region reported at all in [lo, hi)."""
    return any(lo <= t and (hi is None or t < hi) for t in tracks.activity.get(key, {}))


def _network_evidence(c: Cluster, tracks: Tracks) -> list[dict[str, Any]]:
    rows: dict[int, dict[str, Any]] = {}
    for e in c.episodes:
        r = rows.setdefault(e.asn, {"asn": f"AS{e.asn}", "name": tracks.names.get((c.country or e.country, e.asn), ""),
                                    "onset": e.start, "probe_observations": 0, "anomalous": 0,
                                    "platforms": set(), "silent": False})
        r["onset"] = min(r["onset"], e.start)
        r["probe_observations"] += e.probes
        r["anomalous"] += e.bad
        if e.platform and e.platform != ALL_PLATFORMS and "@" not in e.platform:
            r["platforms"].add(e.platform)
        r["silent"] = r["silent"] or e.silent
    per = _techniques_by_network(c) if c.family != OUTAGE else {}
    for asn, r in rows.items():
        r["techniques"] = per.get(asn, [])
    out = []
    for r in sorted(rows.values(), key=lambda r: (r["onset"], r["asn"])):
        r["onset"] = datetime.fromtimestamp(r["onset"], UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        r["platforms"] = sorted(r["platforms"])
        out.append(r)
    return out


def incident_id(country: str | None, kind: str, start: int) -> str:
    """Readable and deterministic: the same onset gives the same id on every run."""
    return f"{country or 'WW'}-{datetime.fromtimestamp(start, UTC):%Y%m%d-%H%M}-{kind}"


def to_incident(c: Cluster, tracks: Tracks, cfg: DetectConfig, flagged: list[dict[str, Any]],
                isolated: frozenset[str] = frozenset()) -> Incident | None:
    """A cluster as an incident; None when it never gathered the evidence to be more than noise."""
    when, witnesses = confirmed_at(c, cfg, isolated, tracks.where)
    scope, asns, regions = scope_of(c, tracks, cfg, isolated)
    end = c.finish(cfg.bucket_seconds, set(regions))
    start = c.onset(cfg.bucket_seconds, set(regions))
    if when is None and (end is not None or witnesses < 2):
        return None  # a suspicion that ended, or one probe's word: not an incident
    kind = KIND_OF_FAMILY[c.family]
    if scope == Scope.NATIONAL.value and c.family != OUTAGE and len(asns) < cfg.min_networks_national:
        scope = Scope.NETWORK.value
    status = Status.SUSPECTED.value if when is None else (Status.ENDED.value if end is not None else
                                                          Status.CONFIRMED.value)
    techniques = _techniques(c)
    networks = _network_evidence(c, tracks)
    assessment = assess(c, kind=kind, scope=scope, techniques=techniques, networks=networks, tracks=tracks)
    counts = Counter()  # type: Counter[str]
    for e in c.episodes:
        counts.update(e.techniques)
    evidence: dict[str, Any] = {
        "probes": witnesses,
        "networks": networks,
        "series": len(c.episodes),
        "probe_observations": sum(e.probes for e in c.episodes),
        "anomalous": sum(e.bad for e in c.episodes),
        "by_technique": dict(sorted(counts.items())),
        "affected_platforms": sorted({e.platform for e in c.episodes
                                      if e.platform and e.platform != ALL_PLATFORMS and "@" not in e.platform}),
        "countries": sorted({e.country for e in c.episodes}),
        "example_measurements": [],
    }
    if flagged:
        evidence["flagged_probes"] = flagged
    confidence = min(0.99, 1 - 0.5 ** (witnesses / cfg.min_probes)) if when is not None else 0.3
    if len(asns) > 1:
        confidence = min(0.99, confidence + 0.05 * (len(asns) - 1))
    return Incident(
        id=incident_id(c.country, kind, start), country=c.country, kind=kind, scope=scope, asns=tuple(asns),
        regions=tuple(regions), platforms=tuple(c.platforms()) if c.family != CONNECTIVITY else (),
        techniques=tuple(techniques), start=_ts(start) or datetime.min, end=_ts(end), status=status,
        confirmed_at=_ts(when), confidence=confidence,
        assessment=Assessment(deliberate=assessment[0], reasons=tuple(assessment[1])), evidence=evidence,
    )
