"""Series: per-measurement rows -> 5-minute cells, and cells -> the tracks the tests run on.

The store builds cells with one GROUP BY (fast); `build_series` does the same from plain rows for the library
API and the tests. The detector then folds a country's cells into two kinds of track:
- per (country, network, platform), summed over regions (more probes per bucket = more power per test);
  each bucket keeps its per-region counts so scope can be attributed afterwards;
- per (country, network, region), the number of probes active at all: the activity whose silence is a signal.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from statistics import median

from observatory.catalog import CONTROL
from observatory.series import DEFAULT_BUCKET_SECONDS, SeriesCell, Witness
from observatory.store.base import Row
from observatory.vocab import TECHNIQUES


def bucket_of(t: datetime, bucket_seconds: int) -> int:
    """Epoch seconds of the start of the bucket holding `t`."""
    s = int(t.timestamp())
    return s - s % bucket_seconds


def build_series(rows: Iterable[Row], *, bucket_seconds: int = DEFAULT_BUCKET_SECONDS) -> list[SeriesCell]:
    """Rows (measurement + verdict + kbps) -> cells, exactly as `Store.series` computes them."""
    groups: dict[tuple[int, str, int, str, str], list[Row]] = defaultdict(list)
    seen: set[str] = set()
    for r in rows:
        m = r.measurement
        if m.platform is None or m.uid in seen:  # a duplicate upload is the same measurement
            continue
        seen.add(m.uid)
        groups[(bucket_of(m.start_time, bucket_seconds), m.probe_cc, m.probe_asn, m.region or "", m.platform)].append(r)
    cells = []
    for (b, cc, asn, region, platform), rs in sorted(groups.items()):
        anomalous = [r for r in rs if r.verdict in TECHNIQUES]
        techniques: dict[str, int] = defaultdict(int)
        for r in anomalous:
            techniques[r.verdict] += 1
        kbps = [r.kbps for r in rs if r.kbps is not None]
        by_probe: dict[tuple[str, str], list[float]] = defaultdict(list)
        for r in rs:
            if r.kbps is not None and platform != CONTROL:  # the control's speed is not tested
                by_probe[(r.measurement.probe_key, r.measurement.test_name)].append(r.kbps)
        cells.append(SeriesCell(
            bucket=datetime.fromtimestamp(b, UTC), country=cc, asn=asn, region=region or None, platform=platform,
            total=len(rs),
            ok=sum(r.verdict == "ok" for r in rs),
            down=sum(r.verdict == "down" for r in rs),
            anomalous=len(anomalous),
            probes=len({r.measurement.probe_key for r in rs}),
            anomalous_probes=len({r.measurement.probe_key for r in anomalous}),
            down_probes=len({r.measurement.probe_key for r in rs if r.verdict == "down"}),
            anomalous_keys=tuple(sorted({r.measurement.probe_key for r in anomalous})),
            witnesses=tuple(sorted({Witness(r.verdict, r.measurement.probe_key) for r in anomalous})),
            by_technique=dict(techniques),
            median_kbps=float(median(kbps)) if kbps else None,
            network_name=rs[0].measurement.network_name,
            probe_kbps=tuple(sorted((k, test, float(median(v))) for (k, test), v in by_probe.items())),
        ))
    return cells


@dataclass(slots=True)
class Obs:
    """One bucket of one (country, network, platform) track, summed over the network's regions."""

    t: int
    n: int = 0  # distinct probes
    k: int = 0  # distinct probes with an anomalous verdict
    down: int = 0  # distinct probes whose measurement was `down`
    total: int = 0
    anomalous: int = 0
    techniques: dict[str, int] = field(default_factory=dict)
    kbps: list[float] = field(default_factory=list)
    probe_kbps: list[tuple[str, str, float]] = field(default_factory=list)  # (probe, test, kbps), every region
    keys: set[str] = field(default_factory=set)
    regions: dict[str, list[int]] = field(default_factory=dict)  # region -> [probes, anomalous probes]
    platforms: dict[str, list[int]] = field(default_factory=dict)  # platform -> [probes, anomalous probes]
    folded: set[str] = field(default_factory=set)  # anomalous probes taken out: their control failed too
    witnesses: set[Witness] = field(default_factory=set)  # the anomalous probes kept, with their technique

    @property
    def median_kbps(self) -> float | None:
        return float(median(self.kbps)) if self.kbps else None


TrackKey = tuple[str, int, str]  # country, asn, platform (ALL_PLATFORMS: every platform but the control)
ALL_PLATFORMS = "*"
ActivityKey = tuple[str, int, str]  # country, asn, region ("" when unknown; ALL_PLATFORMS: the whole network)


@dataclass(slots=True)
class Tracks:
    series: dict[TrackKey, list[Obs]]
    activity: dict[ActivityKey, dict[int, int]]  # bucket -> probes active (max over targets)
    names: dict[tuple[str, int], str]  # (country, asn) -> network name
    regions: dict[tuple[str, int], set[str]]  # the regions each network was seen in
    first: int
    now: int  # end of the last bucket with data: the data's "now"
    where: dict[str, tuple[int, str]] = field(default_factory=dict)  # anomalous probe key -> (asn, region)


def fold(cells: Iterable[SeriesCell], bucket_seconds: int) -> Tracks:
    """Cells -> tracks. Identical cells given twice count once (a duplicate changes nothing).

    A probe whose control measurement failed in the same run (same or adjacent bucket) saw its whole
    connection fail, not a platform: its platform failures are taken out of the platform tracks (they are
    evidence for the control track, i.e. connectivity) so a faulty probe or a network fault never looks like a
    restriction. Conversely the control track counts only probes that failed on platforms too: one failed
    control measurement in an otherwise healthy run is noise.
    """
    unique: dict[tuple[int, str, int, str, str], SeriesCell] = {}
    for c in cells:
        unique.setdefault((bucket_of(c.bucket, bucket_seconds), c.country, c.asn, c.region or "", c.platform), c)
    control_bad: dict[tuple[str, int, int], set[str]] = defaultdict(set)
    platform_bad: dict[tuple[str, int, int], set[str]] = defaultdict(set)
    for (t, country, asn, _region, platform), c in unique.items():
        if c.anomalous_keys:
            (control_bad if platform == CONTROL else platform_bad)[(country, asn, t)].update(c.anomalous_keys)

    def near(table: dict[tuple[str, int, int], set[str]], country: str, asn: int, t: int) -> set[str]:
        return (table.get((country, asn, t - bucket_seconds), set()) | table.get((country, asn, t), set())
                | table.get((country, asn, t + bucket_seconds), set()))
    by_key: dict[TrackKey, dict[int, Obs]] = defaultdict(dict)
    activity: dict[ActivityKey, dict[int, int]] = defaultdict(dict)
    names: dict[tuple[str, int], str] = {}
    regions: dict[tuple[str, int], set[str]] = defaultdict(set)
    where: dict[str, tuple[int, str]] = {}
    first, last = None, None
    for (t, country, asn, region, platform), c in sorted(unique.items()):
        first = t if first is None else min(first, t)
        last = t if last is None else max(last, t)
        if c.network_name:
            names[(country, asn)] = c.network_name
        regions[(country, asn)].add(region)
        act = activity[(country, asn, region)]
        act[t] = max(act.get(t, 0), c.probes)
        keys = set(c.anomalous_keys)
        n, k = c.probes, c.anomalous_probes
        if not keys and k:  # cells without keys: each anomalous probe of the cell counts as its own witness
            keys = {f"cell:{asn}:{region}:{t}:{i}" for i in range(k)}
        for key in keys:
            where.setdefault(key, (asn, region))
        if platform != CONTROL and keys:
            cut = keys & near(control_bad, country, asn, t)
            if cut:
                keys -= cut
                n, k = max(0, n - len(cut)), max(0, k - len(cut))
        elif platform == CONTROL and keys:
            # a control failure alone in a run is noise; the control and the platforms failing together is
            # what a lost connection looks like
            keys &= near(platform_bad, country, asn, t)
            k = len(keys)
        # the control per region too: a region's few probes losing everything show sooner on their own
        targets = [platform, f"{CONTROL}@{region}"] if platform == CONTROL else [platform, ALL_PLATFORMS]
        for target in targets:
            track = by_key[(country, asn, target)]
            obs = track.get(t)
            if obs is None:
                obs = track[t] = Obs(t=t)
            obs.n += n
            obs.k += k
            obs.down += c.down_probes
            obs.total += c.total
            obs.anomalous += c.anomalous
            for tech, m in c.by_technique.items():
                obs.techniques[tech] = obs.techniques.get(tech, 0) + m
            if c.median_kbps is not None and target != ALL_PLATFORMS:
                obs.kbps.append(c.median_kbps)
                obs.probe_kbps.extend(c.probe_kbps)
            obs.keys.update(keys)
            if platform != CONTROL and c.anomalous_keys:
                obs.folded.update(set(c.anomalous_keys) - keys)
            obs.witnesses.update(_witnesses(c, keys))
            r = obs.regions.setdefault(region, [0, 0])
            r[0] += n
            r[1] += k
            pl = obs.platforms.setdefault(platform, [0, 0])
            pl[0] += n
            pl[1] += k
    # the whole network's activity too: a network going silent everywhere is seen sooner in the sum
    for (country, asn, region), act in list(activity.items()):
        if region != ALL_PLATFORMS:
            total = activity.setdefault((country, asn, ALL_PLATFORMS), {})
            for t, n in act.items():
                total[t] = total.get(t, 0) + n
    series = {key: [v[t] for t in sorted(v)] for key, v in by_key.items()}
    return Tracks(series=series, activity=dict(activity), names=names, regions=dict(regions),
                  first=first or 0, now=(last or 0) + bucket_seconds, where=where)


def _witnesses(c: SeriesCell, keys: set[str]) -> set[Witness]:
    """The kept anomalous probes of a cell with their technique (cells without them: the main technique)."""
    if c.witnesses:
        return {w for w in c.witnesses if w.probe in keys}
    main = max(c.by_technique, key=lambda t: (c.by_technique[t], t)) if c.by_technique else "unknown"
    return {Witness(main, k) for k in keys}
