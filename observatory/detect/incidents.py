"""Clusters -> incidents: confirm causally, attribute kind, scope, technique; then the assessment.

Anomalies that share a country, a time and a family are one incident across platforms and networks (the
clustering is detect/cluster.py). The platform's own outage is merged across countries (country null). A
cluster is confirmed at the earliest time the data taken up to then holds enough independent witnesses
(distinct probe keys) from alarmed series.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from statistics import median
from typing import Any

from observatory.catalog import CONTROL
from observatory.detect.assess import assess
from observatory.detect.cluster import Cluster
from observatory.detect.config import DetectConfig
from observatory.detect.cusum import main_techniques
from observatory.detect.episodes import CONNECTIVITY, OUTAGE, RESTRICTION, THROTTLING, Episode
from observatory.detect.series import ALL_PLATFORMS, Obs, Tracks
from observatory.incident import Evidence, FlaggedProbe, Incident, NetworkEvidence
from observatory.series import Witness
from observatory.vocab import RESTRICTION_TECHNIQUES as _RESTRICTION_TECHNIQUES
from observatory.vocab import IncidentKind, Scope, Status

__all__ = ["Cluster", "KIND_OF_FAMILY", "confirmed_at", "incident_id", "scope_of", "to_incident"]

# (country, asn, region, bucket) -> whether the one probe that ran there completed some measurement
Connected = Callable[[str, int, str, int], bool]

KIND_OF_FAMILY = {
    RESTRICTION: IncidentKind.PLATFORM_RESTRICTION,
    THROTTLING: IncidentKind.THROTTLING,
    CONNECTIVITY: IncidentKind.CONNECTIVITY_LOSS,
    OUTAGE: IncidentKind.PLATFORM_OUTAGE,
}

def confirmed_at(c: Cluster, cfg: DetectConfig, isolated: frozenset[str] = frozenset(),
                 where: dict[str, tuple[int, str]] | None = None,
                 connected: Connected | None = None) -> tuple[int | None, int]:
    """Earliest time at which alarmed series had shown `min_probes` distinct witnesses, and how many in all.

    For a restriction the witnesses must agree on the technique: censorship applies one method to everyone
    it targets, while random failures scatter over every kind of failure.

    For a connectivity loss, keys without a stable probe identity (a report id is new on every run) are
    counted as installations: one faulty installation that runs often fails every run, each under a new
    report id, exactly like a region losing its connection. Runs of one network and region count as only as
    many witnesses as ran at the same time (in one bucket), which only different installations can.

    A cut is all or nothing for the probe it reaches: a probe whose run completed a measurement in the same
    bucket (`connected`: known where it ran alone in its network-region) had its connection, and its failure
    there (a flaky line, a stray timeout of the control) witnesses no cut.
    """
    where = where or {}
    entries: list[tuple[int, int, frozenset[Witness]]] = []
    for e in c.episodes:
        for t, keys in e.witnesses:
            if c.family == CONNECTIVITY and connected is not None and not e.silent:
                keys = frozenset(w for w in keys if w.probe not in where
                                 or not connected(e.country, *where[w.probe], t))
            entries.append((max(t + cfg.bucket_seconds, e.alarm), t, keys))
    entries.sort(key=lambda x: (x[0], x[1]))
    per_technique = c.family == RESTRICTION
    seen: dict[str, set[str]] = {}
    everyone: set[str] = set()
    runs: dict[tuple[int, str], dict[int, set[str]]] = {}  # (asn, region) -> bucket -> unstable keys
    when: int | None = None
    for t, bucket, keys in entries:
        for technique, key in keys:
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
    located = [tracks.where.get(w.probe) for _, keys in e.witnesses for w in keys]
    if not any(located):
        return set(e.regions)  # counts without probe keys (down, throughput): the share decides
    keys = {w.probe for _, ks in e.witnesses for w in ks}
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


def _network_evidence(c: Cluster, tracks: Tracks) -> list[NetworkEvidence]:
    rows: dict[int, dict[str, Any]] = {}
    for e in c.episodes:
        r = rows.setdefault(e.asn, {"name": tracks.names.get((c.country or e.country, e.asn), ""),
                                    "onset": e.start, "probe_observations": 0, "anomalous": 0,
                                    "platforms": set(), "silent": False})
        r["onset"] = min(r["onset"], e.start)
        r["probe_observations"] += e.probes
        r["anomalous"] += e.bad
        if e.platform and e.platform != ALL_PLATFORMS and "@" not in e.platform:
            r["platforms"].add(e.platform)
        r["silent"] = r["silent"] or e.silent
    per = _techniques_by_network(c) if c.family != OUTAGE else {}
    out = [NetworkEvidence(asn=asn, name=r["name"], onset=datetime.fromtimestamp(r["onset"], UTC),
                           probe_observations=r["probe_observations"], anomalous=r["anomalous"],
                           platforms=tuple(sorted(r["platforms"])), silent=r["silent"],
                           techniques=tuple(per.get(asn, [])))
           for asn, r in rows.items()]
    # by onset, then by the wire's "AS<n>" text (the order the stored evidence has always had)
    return sorted(out, key=lambda n: (n.onset or datetime.min.replace(tzinfo=UTC), f"AS{n.asn}"))


def incident_id(country: str | None, kind: str, start: int) -> str:
    """Readable and deterministic: the same onset gives the same id on every run."""
    return f"{country or 'WW'}-{datetime.fromtimestamp(start, UTC):%Y%m%d-%H%M}-{kind}"


def to_incident(c: Cluster, tracks: Tracks, cfg: DetectConfig, flagged: list[dict[str, Any]],
                isolated: frozenset[str] = frozenset(), connected: Connected | None = None) -> Incident | None:
    """A cluster as an incident; None when it never gathered the evidence to be more than noise."""
    when, witnesses = confirmed_at(c, cfg, isolated, tracks.where, connected)
    scope, asns, regions = scope_of(c, tracks, cfg, isolated)
    end = c.finish(cfg.bucket_seconds, set(regions))
    start = c.onset(cfg.bucket_seconds, set(regions))
    if when is None and (end is not None or witnesses < 2):
        return None  # a suspicion that ended, or one probe's word: not an incident
    kind = KIND_OF_FAMILY[c.family]
    if scope == Scope.NATIONAL.value and c.family != OUTAGE and len(asns) < cfg.min_networks_national:
        scope = Scope.NETWORK.value
    status = Status.SUSPECTED if when is None else (Status.ENDED if end is not None else Status.CONFIRMED)
    techniques = _techniques(c)
    networks = _network_evidence(c, tracks)
    assessment = assess(c, kind=kind, scope=Scope(scope), techniques=techniques, networks=networks, tracks=tracks)
    counts = Counter()  # type: Counter[str]
    for e in c.episodes:
        counts.update(e.techniques)
    evidence = Evidence(
        probes=witnesses,
        networks=tuple(networks),
        series=len(c.episodes),
        probe_observations=sum(e.probes for e in c.episodes),
        anomalous=sum(e.bad for e in c.episodes),
        by_technique=dict(sorted(counts.items())),
        affected_platforms=tuple(sorted({e.platform for e in c.episodes
                                         if e.platform and e.platform != ALL_PLATFORMS and "@" not in e.platform})),
        countries=tuple(sorted({e.country for e in c.episodes})),
        example_measurements=(),
        flagged_probes=tuple(FlaggedProbe.from_json(f) for f in flagged) if flagged else None,
    )
    confidence = min(0.99, 1 - 0.5 ** (witnesses / cfg.min_probes)) if when is not None else 0.3
    if len(asns) > 1:
        confidence = min(0.99, confidence + 0.05 * (len(asns) - 1))
    return Incident(
        id=incident_id(c.country, kind, start), country=c.country, kind=kind, scope=Scope(scope), asns=tuple(asns),
        regions=tuple(regions), platforms=tuple(c.platforms()) if c.family != CONNECTIVITY else (),
        techniques=tuple(techniques), start=_ts(start) or datetime.min, end=_ts(end), status=status,
        confirmed_at=_ts(when), confidence=confidence,
        assessment=assessment, evidence=evidence,
    )
