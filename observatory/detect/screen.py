"""The cheap first pass: which countries deserve the fine, 5-minute look at all.

At scale almost every network is quiet almost all the time, but not free of failures: probes break, lose
their line, see a stray reset. The screen asks of hourly counts per (country, network, platform) what the fine
look asks before it reports: could its CUSUM have alarmed in that hour, and are the witnesses there that
confirmation needs (probes agreeing on a technique; probes that lost their whole connection, three of them or
two networks in one region). A platform seen `down` is checked in 5-minute buckets (`down_alarms`). Silence
and throughput keep loose hourly rules. A candidate costs a fine look, a miss costs an incident.

Known gaps: the fine look's all-platforms track (`*`) can alarm on a block of many platforms seen by sparse
probes when no single platform can; the screen judges platforms one by one (a sum over platforms counts the
same stray failures of one probe many times and lets quiet countries through). Likewise the fine look's
pooled test across a country's networks (detect/corroborate.py) can alarm on a national block that no single
network's hours show; pooled hours, judged like one network's (failures packed into few buckets), passed all
168 countries of the 10 M benchmark store, so the screen does not pool: at scale such a block is looked at
once one network's own hours stand out.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime
from statistics import median
from typing import Any

from observatory.catalog import CONTROL
from observatory.detect.config import DetectConfig
from observatory.series import SeriesCell
from observatory.store.base import FailingProbe, TechniqueProbes


def candidate_countries(cells: Iterable[SeriesCell], **kw: Any) -> set[str]:
    """Countries whose hourly counts could hold an incident of the fine look (see `screen`); a platform seen
    down in a standing-out hour makes its country a candidate without a finer look."""
    countries, down_hours = screen(cells, **kw)
    return countries | {country for country, _asn, _platform, _t in down_hours}


def screen(cells: Iterable[SeriesCell], *, failing: Iterable[FailingProbe] | None = None,
                        techniques: Iterable[TechniqueProbes] | None = None,
                        bucket_seconds: int = 3600, config: DetectConfig | None = None, min_share: float = 0.06,
                        quiet_share: float = 0.3, throttle_ratio: float = 5.0, control_share: float = 0.15,
                        ongoing_hours: int = 2) -> tuple[set[str], list[tuple[str, int, str, int]]]:
    """Countries whose hourly counts could hold an incident of the fine look, and the hours of series where a
    platform was seen down often enough that only a finer look can tell (`down_alarms`): (country, network,
    platform, hour start).

    `failing` (the probes whose control failed in an hour, per target) lets the screen do what the fine look
    does with them: take a probe that lost its whole connection out of the platform counts, and count it as a
    connectivity witness only when it failed most of its targets; without it the control is judged by counts.
    `techniques` (distinct probes per technique) lets it ask what confirmation asks of a restriction: enough
    probes agreeing on one technique, where random failures scatter over every kind of failure.
    """
    cfg = config or DetectConfig()
    min_probes = cfg.min_probes
    candidates: set[str] = set()
    activity: dict[tuple[str, int], dict[int, int]] = defaultdict(dict)
    kbps: dict[tuple[str, int, str], list[tuple[int, float]]] = defaultdict(list)
    lost, stray = _lost_probes(failing) if failing is not None else ({}, {})
    # per (country, network, platform, hour): judged, anomalous, down, probes failing, probes seeing it down;
    # the anomalous counts without the probes that lost their whole connection (the fine look's rule)
    sums: dict[tuple[str, int, str, int], list[int]] = {}
    for c in cells:
        t = int(c.bucket.timestamp())
        net = activity[(c.country, c.asn)]
        net[t] = max(net.get(t, 0), c.probes)
        bad, bad_probes = c.anomalous, c.anomalous_probes
        if failing is not None:
            if c.platform == CONTROL:
                mine = lost.get((c.country, c.asn, t), {})
                bad, bad_probes = sum(n for n, _region in mine.values()), len(mine)
            else:
                cut = stray.get((c.country, c.asn, t, c.platform))
                if cut:
                    bad, bad_probes = max(0, bad - cut[0]), max(0, bad_probes - cut[1])
        sums[(c.country, c.asn, c.platform, t)] = [c.ok + c.anomalous + c.down, bad, c.down, bad_probes,
                                                  c.down_probes]
        if c.median_kbps is not None:
            kbps[(c.country, c.asn, c.platform)].append((t, c.median_kbps))
    last = max((t for (_c, _a, _p, t) in sums), default=0)
    # restrictions and outages: an hour that stands out against its series' usual share AND holds enough
    # failures for the fine CUSUM to have alarmed; then as many probes as confirmation needs, nearby in time
    by_technique: dict[tuple[str, int, str, int], dict[str, int]] = defaultdict(dict)
    for tp in techniques or ():
        t = int(tp.bucket.timestamp())
        by_technique[(tp.country, tp.asn, tp.platform, t)][tp.technique] = tp.probes
    # (country, hour, technique) -> network -> failing probes in standing-out hours ("" when techniques unknown)
    witnesses: dict[tuple[str, int, str], dict[int, int]] = defaultdict(dict)
    alarmed: dict[tuple[str, int], int] = defaultdict(int)  # (country, hour) -> failing probes, any technique
    down_hours: list[tuple[str, int, str, int]] = []
    for key, hours in _by_series(sums).items():
        country, asn, platform = key
        if platform == CONTROL and failing is not None:
            continue  # judged below from the probes that lost everything
        for t, probes in _hot_hours(hours, 1, 3, cfg, bucket_seconds, min_share):
            alarmed[(country, t)] += probes
            seen = by_technique.get((country, asn, platform, t)) if techniques is not None else {"": probes}
            for technique, n in (seen or {}).items():
                w = witnesses[(country, t, technique)]
                w[asn] = max(w.get(asn, 0), n)
        # the platform seen down: each bucket of it is a witness, so an alarm is an incident
        down_hours.extend((country, asn, platform, t) for t, _n in _hot_hours(hours, 2, 4, cfg, bucket_seconds,
                                                                                min_share))
    for (country, t, technique) in witnesses:
        # per network, no more probes than it had at work in those hours (a probe counts once across the
        # platforms and hours it failed on)
        per_net: dict[int, int] = defaultdict(int)
        active: dict[int, int] = defaultdict(int)
        for d in (-1, 0, 1):
            for asn, n in witnesses.get((country, t + d * bucket_seconds, technique), {}).items():
                per_net[asn] += n
                active[asn] = max(active[asn], activity[(country, asn)].get(t + d * bucket_seconds, 0))
        if sum(min(n, active[asn]) for asn, n in per_net.items()) >= min_probes:
            candidates.add(country)
    for (country, t), probes in alarmed.items():
        if t >= last - ongoing_hours * bucket_seconds and probes >= 2:
            candidates.add(country)  # an alarm still open needs only two probes to be a suspicion
    if failing is not None:
        candidates.update(_connectivity(lost, min_probes=min_probes, last=last, bucket_seconds=bucket_seconds,
                                        ongoing_hours=ongoing_hours))
    else:
        # the control failing in two networks of a country in the same hour: a region's few probes losing
        # everything (each network alone has too few probes for the rule above)
        control_nets: dict[tuple[str, int], int] = defaultdict(int)
        for (country, _asn, platform, t), (judged, bad, _down, bad_probes, _dp) in sums.items():
            if platform == CONTROL and judged and bad_probes and bad >= control_share * judged:
                control_nets[(country, t)] += 1
        candidates.update(country for (country, _t), nets in control_nets.items() if nets >= 2)
    for (country, _asn, _platform), values in kbps.items():
        if country in candidates or len(values) < 6:
            continue
        level = median(v for _, v in values)
        if any(v * throttle_ratio < level for _, v in values):
            candidates.add(country)
    for (country, _asn), active in activity.items():
        if country in candidates or len(active) < 6:
            continue
        usual = median(active.values())
        first, end = min(active), max(active)
        if usual >= min_probes and any(active.get(t, 0) < quiet_share * usual
                                       for t in range(first, end + 1, bucket_seconds)):
            candidates.add(country)
    return candidates, [h for h in down_hours if h[0] not in candidates]


def down_alarms(counts: Iterable[tuple[datetime, str, int, str, int, int]], *,
                config: DetectConfig | None = None) -> set[str]:
    """Countries where the fine look's CUSUM on a platform seen down could cross its threshold, from the fine
    buckets of the hours the screen could not tell: (bucket, country, network, platform, probes, probes that
    saw it down). The series' rate is taken at its floor, where the test is most sensitive."""
    cfg = config or DetectConfig()
    p0, p1 = cfg.min_rate, cfg.p1
    gain, loss = math.log(p1 / p0), math.log((1 - p0) / (1 - p1))
    series: dict[tuple[str, int, str], list[tuple[datetime, int, int]]] = defaultdict(list)
    for bucket, country, asn, platform, n, down in counts:
        series[(country, asn, platform)].append((bucket, n, down))
    out: set[str] = set()
    for (country, _asn, _platform), points in series.items():
        total = 0.0
        for _t, n, down in sorted(points):
            if n <= 0:
                continue
            down = min(down, n)
            total = max(0.0, total + down * gain - (n - down) * loss)
            if total >= cfg.threshold:
                out.add(country)
                break
    return out


Hours = list[tuple[int, list[int]]]  # (hour start, per-hour counts) of one series, in time order


def _by_series(sums: dict[tuple[str, int, str, int], list[int]]) -> dict[tuple[str, int, str], Hours]:
    out: dict[tuple[str, int, str], list[tuple[int, list[int]]]] = defaultdict(list)
    for (country, asn, platform, t), acc in sums.items():
        out[(country, asn, platform)].append((t, acc))
    for hours in out.values():
        hours.sort(key=lambda h: h[0])
    return out


def _hot_hours(hours: list[tuple[int, list[int]]], bad_i: int, probes_i: int, cfg: DetectConfig,
               bucket_seconds: int, min_share: float) -> list[tuple[int, int]]:
    """(hour, failing probes) of the hours where the fine CUSUM could have crossed its threshold.

    The series' rate is its own (with the fine look's prior); an hour counts only if its share stands out
    against the series' usual share. The fine look adds up, bucket by bucket, log-likelihood ratios; an
    hour's failures are assumed packed into as few fine buckets as the hour's measurements allow, with the
    healthy measurements of those buckets, and a run of standing-out hours adds up as the CUSUM would.
    """
    judged_all = sum(acc[0] for _, acc in hours)
    bad_all = sum(acc[bad_i] for _, acc in hours)
    p0 = (bad_all + cfg.prior_rate * cfg.prior_weight) / (judged_all + cfg.prior_weight)
    p0 = min(cfg.max_rate, max(cfg.min_rate, p0))
    p1 = max(cfg.p1, min(0.9, 3 * p0))
    gain, loss = math.log(p1 / p0), math.log((1 - p0) / (1 - p1))
    usual = median(acc[bad_i] / acc[0] for _, acc in hours if acc[0]) if judged_all else 0.0
    per_hour = max(1, bucket_seconds // cfg.bucket_seconds)
    run = -math.inf
    out = []
    for t, acc in hours:
        judged, bad = acc[0], acc[bad_i]
        if not judged or not bad or bad < judged * _cut(usual, judged, min_share):
            run = -math.inf
            continue
        per_bucket = max(1.0, judged / per_hour)
        packed = math.ceil(bad / per_bucket) * per_bucket
        edge = bad * gain - max(0.0, min(packed, judged) - bad) * loss
        if max(edge, run + edge) >= cfg.threshold:
            out.append((t, acc[probes_i]))
        run = max(run + bad * gain - (judged - bad) * loss, edge)
    return out


def _lost_probes(failing: Iterable[FailingProbe]) -> tuple[dict[tuple[str, int, int], dict[str, tuple[int, str]]],
                                                          dict[tuple[str, int, int, str], tuple[int, int]]]:
    """From the probes whose control failed in an hour: those that failed most of their targets too (lost
    their connection: probe -> (failed control measurements, region), per country, network and hour), and per
    platform the failures of probes whose control failed (measurements, probes): the fine look takes them out
    of the platform."""
    per_probe: dict[tuple[str, int, int, str], list[FailingProbe]] = defaultdict(list)
    for f in failing:
        per_probe[(f.country, f.asn, int(f.bucket.timestamp()), f.probe)].append(f)
    lost: dict[tuple[str, int, int], dict[str, tuple[int, str]]] = defaultdict(dict)
    stray: dict[tuple[str, int, int, str], tuple[int, int]] = {}
    for (country, asn, t, probe), rows in per_probe.items():
        control = sum(r.anomalous for r in rows if r.platform == CONTROL)
        targets = [r for r in rows if r.platform != CONTROL]
        total = sum(r.total for r in targets)
        bad = sum(r.anomalous for r in targets)
        for r in targets:
            if r.anomalous:
                m, p = stray.get((country, asn, t, r.platform), (0, 0))
                stray[(country, asn, t, r.platform)] = (m + r.anomalous, p + 1)
        if control and total and 2 * bad >= total:
            lost[(country, asn, t)][probe] = (control, rows[0].region)
    return lost, stray


def _connectivity(lost: dict[tuple[str, int, int], dict[str, tuple[int, str]]], *, min_probes: int, last: int,
                  bucket_seconds: int, ongoing_hours: int) -> set[str]:
    """Countries where probes lost their connection as the fine look confirms it: `min_probes` distinct
    probes within an hour of each other, or two probes in the last hours (an alarm still open)."""
    by_hour: dict[tuple[str, int], dict[str, tuple[int, str]]] = defaultdict(dict)  # probe -> (network, region)
    for (country, asn, t), probes in lost.items():
        for probe, (_n, region) in probes.items():
            by_hour[(country, t)][probe] = (asn, region)
    out: set[str] = set()
    for (country, t), probes in by_hour.items():
        near: set[str] = set()
        for d in (-1, 0, 1):
            near.update(by_hour.get((country, t + d * bucket_seconds), {}))
        if len(near) >= min_probes or (t >= last - ongoing_hours * bucket_seconds and len(probes) >= 2):
            out.add(country)
    return out


def _usual_rates(sums: dict[tuple[str, int, str, int], list[int]]) -> dict[tuple[str, int, str], tuple[float, float]]:
    """Each series' usual share of anomalous and of `down` measurements: the median over its hours."""
    shares: dict[tuple[str, int, str], list[tuple[float, float]]] = defaultdict(list)
    for (country, asn, platform, _t), (judged, bad, down, _bp, _dp) in sums.items():
        if judged:
            shares[(country, asn, platform)].append((bad / judged, down / judged))
    return {key: (median(b for b, _ in v), median(d for _, d in v)) for key, v in shares.items()}


def _cut(usual: float, judged: int, floor: float) -> float:
    """The share an hour must reach to stand out: well above the series' usual share (four binomial standard
    errors) and never below `floor`. A share of the whole hour, so a ten-minute block among steady probes
    (about 17%) passes; an hour that is bad throughout also raises the median, hence the floor."""
    usual = min(usual, 0.5)
    return max(floor, usual + 4 * math.sqrt(usual * (1 - usual) / judged))
