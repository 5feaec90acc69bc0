"""Alarms of single series -> episodes with a technique family, ready to be merged into incidents.

Families decide the incident kind: `restriction` (platforms fail, by interference), `throttling`, `connectivity`
(everything fails, the control too, or the probes fall silent) and `outage` (the platform fails from the
control's vantage too: the platform's own outage, never censorship).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from observatory.catalog import CONTROL
from observatory.detect.config import DetectConfig
from observatory.detect.corroborate import Corroboration, platform_track
from observatory.detect.cusum import Alarm, scan_share, scan_throughput, slow_points, split_lifted
from observatory.detect.series import ALL_PLATFORMS, Obs, Tracks
from observatory.detect.silence import SilenceScan, scan_silence
from observatory.series import Witness

RESTRICTION, THROTTLING, CONNECTIVITY, OUTAGE = "restriction", "throttling", "connectivity", "outage"


@dataclass(slots=True)
class Episode:
    family: str
    country: str
    asn: int
    platform: str | None  # None for a silence episode (the whole network-region); "*" all but the control
    start: int
    alarm: int
    end: int | None
    techniques: Counter[str] = field(default_factory=Counter)
    # (bucket, the probes that witnessed it there): for causal confirmation
    witnesses: list[tuple[int, frozenset[Witness]]] = field(default_factory=list)
    regions: set[str] = field(default_factory=set)  # regions where this episode's probes saw it
    probes: int = 0  # probe-observations during the episode
    bad: int = 0  # anomalous probe-observations during the episode
    down: int = 0
    silent: bool = False
    platforms: set[str] = field(default_factory=set)  # the platforms it affected (not the control)
    measured_platforms: int = 0  # the platforms its series measured meanwhile (all-platforms track)
    before: int | None = None  # the series' last bucket with data before `start` (None: unknown)
    after: int | None = None  # its first bucket with data at or after `end`
    spacing: int = 0  # the usual time between buckets with data in the series (0: unknown)
    # (bucket, region) where the series was seen normal near the episode (fewer than half of the probes
    # anomalous; region "" when the stream has no regional counts): the bounds of an incident's edges
    normal: tuple[tuple[int, str], ...] = ()

    def overlaps(self, start: int, end: int | None, slack: int = 0) -> bool:
        return (end is None or self.start <= end + slack) and (self.end is None or start <= self.end + slack)


def _window(obs: list[Obs], start: int, end: int | None) -> list[Obs]:
    return [o for o in obs if o.t >= start and (end is None or o.t < end)]


def _affected_regions(window: list[Obs], use_down: bool = False) -> set[str]:
    """Regions whose probes mostly saw the disruption (half or more of their probe-observations)."""
    totals: dict[str, list[int]] = {}
    for o in window:
        for region, (n, k) in o.regions.items():
            acc = totals.setdefault(region, [0, 0])
            acc[0] += n
            acc[1] += k
    return {r for r, (n, k) in totals.items() if n and k / n >= 0.5 and not use_down}


def _family_of(platform: str, techniques: Counter[str]) -> str:
    if platform.startswith(CONTROL):
        return CONNECTIVITY
    total = sum(techniques.values())
    if total and techniques["unreachable"] / total >= 0.5:
        return CONNECTIVITY
    if total and techniques["throttling"] / total >= 0.5:
        return THROTTLING
    return RESTRICTION


def _episode(family: str | None, key: tuple[str, int, str], obs: list[Obs], a: Alarm, stream: str) -> Episode:
    country, asn, platform = key
    window = _window(obs, a.start, a.end)
    techniques: Counter[str] = Counter()
    for o in window:
        techniques.update(o.techniques)
    fam = family or _family_of(platform, techniques)
    ep = Episode(family=fam, country=country, asn=asn, platform=platform, start=a.start, alarm=a.alarm,
                 end=a.end, techniques=techniques, before=a.before, after=a.after,
                 spacing=a.spacing, normal=_normal(obs, a, stream))
    ep.probes = sum(o.n for o in window)
    ep.down = sum(o.down for o in window)
    ep.bad = sum(o.k for o in window) if stream != "down" else ep.down
    totals: dict[str, list[int]] = {}
    for o in window:
        for p, (n, k) in o.platforms.items():
            acc = totals.setdefault(p, [0, 0])
            acc[0] += n
            acc[1] += k
    if platform == ALL_PLATFORMS:
        # a platform joins on more than one failed measurement: one probe's stray verdict in a short episode
        # is not evidence that the platform was affected
        ep.platforms = {p for p, (n, k) in totals.items() if n and k >= 2 and k / n >= 0.5}
        ep.measured_platforms = sum(1 for n, _k in totals.values() if n)
    elif not platform.startswith(CONTROL):
        ep.platforms = {platform}
    if stream == "down":
        ep.witnesses = [(o.t, frozenset(Witness("down", f"down:{asn}:{o.t}:{i}") for i in range(o.down)))
                        for o in window if o.down]
        ep.regions = {r for o in window for r, (n, _k) in o.regions.items() if n}
    elif stream == "slow":
        # the witnesses are the probes found slow (scan_throughput), each once however often it ran
        ep.witnesses = [(t, frozenset(Witness("throttling", k) for k in keys)) for t, keys in sorted(a.slow.items())]
        ep.regions = {r for o in window for r, (n, _k) in o.regions.items() if n}
        ep.techniques = Counter({"throttling": sum(len(keys) for keys in a.slow.values())})
    else:
        ep.witnesses = [(o.t, frozenset(o.witnesses)) for o in window if o.witnesses]
        ep.regions = _affected_regions(window)
    return ep


def _normal(obs: list[Obs], a: Alarm, stream: str) -> tuple[tuple[int, str], ...]:
    """Where the series was seen normal near the alarm: per region for the anomaly stream (a network's
    track sums its regions, and a regional event leaves the others normal), else per bucket."""
    if stream != "anom":
        return tuple((t, "") for t in a.normal)
    lo, hi = (a.normal[0], a.normal[-1]) if a.normal else (a.start, a.start)
    return tuple((o.t, region) for o in obs if lo <= o.t <= hi
                 for region, (n, k) in sorted(o.regions.items()) if n and 2 * k < n)


def find_episodes(tracks: Tracks, cfg: DetectConfig) -> list[Episode]:
    """Runs every test on every track of the input and returns the episodes, with families assigned."""
    step = cfg.bucket_seconds
    now = tracks.now
    episodes: list[Episode] = []
    # the network-level tracks first: a region's track is cut where its network's alarm was lifted
    lifted: dict[tuple[str, int], tuple[tuple[int, ...], tuple[int, ...]]] = {}
    judged = {key: slow_points(obs, cfg) for key, obs in tracks.series.items() if platform_track(key[2])}
    pooled = Corroboration(tracks, judged, cfg)
    for key in sorted(tracks.series, key=lambda k: "@" in k[2]):
        obs = tracks.series[key]
        kinds = {o.t: Counter(w.technique for w in o.witnesses) for o in obs if o.witnesses}
        failures = [o.t for o in obs if o.k and 2 * o.k >= o.n]
        wider = lifted.get((key[0], key[1])) if key[2].startswith(CONTROL + "@") else None
        alarms = scan_share(((o.t, o.n, o.k) for o in obs), cfg, now, kinds,
                            by_technique=not key[2].startswith(CONTROL),
                            corroborated=pooled.failures(key))
        if key[2] == CONTROL:
            lifted[(key[0], key[1])] = (tuple(o.t for o in obs if o.n and 2 * o.k < o.n),
                                        tuple(a.end for a in alarms if a.end is not None))
        anom = [piece for a in alarms for piece in split_lifted(a, failures, step, wider=wider)]
        episodes.extend(_episode(None, key, obs, a, "anom") for a in anom)
        if key[2] == ALL_PLATFORMS or key[2].startswith(CONTROL + "@"):  # outage, throughput: per platform
            continue
        down = scan_share(((o.t, o.n, o.down) for o in obs), cfg, now, corroborated=pooled.down(key))
        episodes.extend(_episode(OUTAGE, key, obs, a, "down") for a in down)
        if key[2] != CONTROL:
            slow = scan_throughput(obs, cfg, now, corroborated=pooled.slow(key), judged=judged.get(key))
            episodes.extend(_episode(THROTTLING, key, obs, a, "slow") for a in slow)
    horizons = data_horizons(tracks, step)
    silence = {key: scan_silence(activity, cfg, horizons.get(key, now)) for key, activity in tracks.activity.items()}
    by_runs = _runs_are_probes(tracks)
    for (country, asn, region), scan in silence.items():
        activity = tracks.activity[(country, asn, region)]
        if (country, asn, region) in by_runs and region in (ALL_PLATFORMS, ""):
            # a whole network of runs without a stable identity (a report id is new on every run): how many
            # independent probes went quiet cannot be known, and volunteers' weekly and daily habits thin a
            # network out the same way (on Kenya's real rows a weekend read as an eight-day "national" cut).
            # A region is judged (its network reporting on elsewhere is the control); a whole network's
            # silence is left to failing measurements uploaded later and to outside-in signals (outside.py).
            continue
        for a in scan.alarms:
            seen = _seen_before(activity, scan, a.start, step, (country, asn, region) not in by_runs)
            if seen is None:
                continue  # the probes were already fading before it: churn, not a cut
            where = {region} if region != ALL_PLATFORMS else _quiet_regions(tracks, silence, (country, asn), a, now)
            ep = Episode(family=CONNECTIVITY, country=country, asn=asn, platform=None, start=a.start,
                         alarm=a.alarm, end=a.end, silent=True, regions={r for r in where if r},
                         before=a.before, spacing=a.spacing)
            # the probes that went quiet together, keyed per network so that a region's silence and its
            # network's are not counted twice
            quiet = frozenset(Witness("unreachable", f"silent:{asn}:{i}") for i in range(seen))
            ep.witnesses = [(a.alarm - step, quiet)]
            ep.techniques = Counter({"unreachable": seen})
            episodes.append(ep)
    return episodes


def data_horizons(tracks: Tracks, step: int) -> dict[tuple[str, int, str], int]:
    """Per activity series, the time up to which its silence means anything: its own last data (for a
    region, its network's anywhere), or later the time the rest of its country has reported up to (the
    lower quartile of the other networks' last data: after it, much of the rest has not reported yet; the
    other countries' when it is alone). After that, an empty bucket is data not yet received (uploads come
    late, the store's newest data is not "now" for every network), never silence."""
    last: dict[tuple[str, int], int] = {}
    for (country, asn, region), act in tracks.activity.items():
        if act and region == ALL_PLATFORMS:
            last[(country, asn)] = max(act)
    out: dict[tuple[str, int, str], int] = {}
    for (country, asn, region), act in tracks.activity.items():
        if not act:
            continue
        # a region is judged as far as its network reported elsewhere: its other regions are the rest
        own = max(act) if region == ALL_PLATFORMS else max(max(act), last.get((country, asn), 0))
        others = sorted(t for (c, a), t in last.items() if c == country and a != asn) or sorted(
            t for (c, _a), t in last.items() if c != country)
        rest = others[(len(others) - 1) // 4] if others else own
        out[(country, asn, region)] = min(tracks.now, max(own, rest) + step)
    return out


def _seen_before(activity: dict[int, int], scan: SilenceScan, onset: int, step: int, stable: bool) -> int | None:
    """How many probes were active just before a silence, or None when activity was already fading there.

    A cut silences probes at once; churn (volunteers leaving one by one, a probe unplugged for days) fades.
    Just before means the hour before the onset, or three test blocks for a sparse series (at most 12
    hours): the activity there must have been at least half of the usual. Probes are counted as the most
    seen together in one bucket (a bucket counts distinct probes, and only different probes are active at
    once), so one probe that went quiet is one witness however often it ran, with a stable identity or a
    report id per run (volunteers, as in OONI's data). A region of a few volunteers that goes quiet is then
    a suspicion until other networks or outside-in signals agree: from report ids alone one volunteer's
    day off and a cut of two volunteers' region look the same (the way confirmation counts failing runs).
    """
    lo = onset - min(12 * 3600, max(3600, 3 * scan.block))
    seen = sum(v for t, v in activity.items() if lo <= t < onset)
    usual = sum(scan.expected.get(t, 0.0) for t in range(lo, onset, step))
    if usual <= 0 or seen < 0.5 * usual:
        return None
    del stable  # counted the same way either way: only different probes are active in one bucket
    return max((v for t, v in activity.items() if lo <= t < onset), default=0)


def _runs_are_probes(tracks: Tracks) -> set[tuple[str, int, str]]:
    """The network-regions (and their networks, region "*") whose probes have no stable identity (a report
    id per run, "r:"), as far as their anomalous measurements show: there every run counts as a probe. Where
    nothing shows it, probes are counted the cautious way (at most as many as were active together)."""
    out: set[tuple[str, int, str]] = set()
    countries = {(asn, region): country for (country, asn, region) in tracks.activity}
    for key, (asn, region) in tracks.where.items():
        if key.startswith("r:") and (asn, region) in countries:
            out |= {(countries[(asn, region)], asn, region), (countries[(asn, region)], asn, ALL_PLATFORMS)}
    return out


def _quiet_regions(tracks: Tracks, silence: dict[tuple[str, int, str], SilenceScan],
                   network: tuple[str, int], a: Alarm, now: int) -> set[str]:
    """The regions of a network that went quiet with it: those whose probes reported at most half of their
    usual activity during the network's silence. A network-wide sum can fall because one region went dark;
    the others kept reporting and are not part of the loss. All regions when none stands out."""
    country, asn = network
    end = a.end if a.end is not None else now
    quiet: set[str] = set()
    regions = tracks.regions.get(network, set())
    for region in regions:
        got = silence.get((country, asn, region))
        if got is None:
            continue
        activity = tracks.activity.get((country, asn, region), {})
        expected = got.expected
        usual = sum(v for t, v in expected.items() if a.start <= t < end)
        seen = sum(v for t, v in activity.items() if a.start <= t < end)
        if usual > 0 and seen <= 0.5 * usual:
            quiet.add(region)
    return quiet or set(regions)
