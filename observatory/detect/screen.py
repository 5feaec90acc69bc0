"""The cheap first pass: which countries deserve the fine, 5-minute look at all.

At scale almost every network is quiet almost all the time. Hourly counts per (country, network, platform)
are enough to tell: a country is a candidate when some hour shows several probes failing a platform (or the
control, or seeing it `down`), a throughput collapse, or a network's probes falling quiet against their usual
activity. Thresholds are loose on purpose: a candidate costs a fine look, a miss costs an incident.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from statistics import median

from observatory.series import SeriesCell


def candidate_countries(cells: Iterable[SeriesCell], *, bucket_seconds: int = 3600, min_probes: int = 3,
                        min_share: float = 0.06, quiet_share: float = 0.3, throttle_ratio: float = 5.0,
                        control_share: float = 0.15) -> set[str]:
    candidates: set[str] = set()
    activity: dict[tuple[str, int], dict[int, int]] = defaultdict(dict)
    kbps: dict[tuple[str, int, str], list[tuple[int, float]]] = defaultdict(list)
    # per (country, platform, hour) and per (country, network, platform, hour): judged, anomalous, down,
    # probes failing, probes seeing it down (sums over networks: distinct within each network)
    sums: dict[tuple[str, int, str, int], list[int]] = defaultdict(lambda: [0, 0, 0, 0, 0])
    for c in cells:
        t = int(c.bucket.timestamp())
        net = activity[(c.country, c.asn)]
        net[t] = max(net.get(t, 0), c.probes)
        for key in ((c.country, c.asn, c.platform, t), (c.country, -1, c.platform, t)):
            acc = sums[key]
            acc[0] += c.ok + c.anomalous + c.down
            acc[1] += c.anomalous
            acc[2] += c.down
            acc[3] += c.anomalous_probes
            acc[4] += c.down_probes
        if c.median_kbps is not None:
            kbps[(c.country, c.asn, c.platform)].append((t, c.median_kbps))
    usual = _usual_rates(sums)
    for (country, asn, platform, _t), (judged, bad, down, bad_probes, down_probes) in sums.items():
        if not judged:
            continue
        rate_bad, rate_down = usual[(country, asn, platform)]
        if ((bad_probes >= min_probes and bad >= judged * _cut(rate_bad, judged, min_share))
                or (down_probes >= min_probes and down >= judged * _cut(rate_down, judged, min_share))):
            candidates.add(country)
    # the control failing in two networks of a country in the same hour: a region's few probes losing
    # everything (each network alone has too few probes for the rule above)
    control_nets: dict[tuple[str, int], int] = defaultdict(int)
    for (country, asn, platform, t), (judged, bad, _down, bad_probes, _dp) in sums.items():
        if platform == "control" and asn != -1 and judged and bad_probes and bad >= control_share * judged:
            control_nets[(country, t)] += 1
    candidates.update(country for (country, _t), nets in control_nets.items() if nets >= 2)
    for (country, _asn, _platform), values in kbps.items():
        if country in candidates or len(values) < 6:
            continue
        level = median(v for _, v in values)
        if any(v * throttle_ratio < level for _, v in values):
            candidates.add(country)
    for (country, _asn), hours in activity.items():
        if country in candidates or len(hours) < 6:
            continue
        usual = median(hours.values())
        first, last = min(hours), max(hours)
        if usual >= min_probes and any(hours.get(t, 0) < quiet_share * usual
                                       for t in range(first, last + 1, bucket_seconds)):
            candidates.add(country)
    return candidates


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
    return max(floor, usual + 4 * (usual * (1 - usual) / judged) ** 0.5)
