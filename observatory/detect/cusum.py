"""The per-series test: a log-likelihood-ratio CUSUM with hysteresis, and the baselines it tests against.

A bucket holds few measurements (often 0-7 probes), so a share-of-anomalous threshold is either blind or jumpy.
The CUSUM adds up, bucket by bucket, how much more likely the data is under "disrupted" than under "the
series' own normal" (log-likelihood ratio, nats); a strong bucket alarms at once, weak ones accumulate, and a
lone failure among healthy probes pulls the sum back to zero. An alarm ends when the evidence for "normal"
reaches its own threshold; start and end are refined to the changepoints (the last zero of each sum).

Everything here is causal: a bucket's result depends only on buckets before it, so a live run and a run
afterwards over the same data agree.
"""

from __future__ import annotations

import math
from bisect import bisect_left, insort
from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from observatory.detect.config import DetectConfig
from observatory.detect.series import Obs

EDGE_WINDOW = 86400  # how far from an alarm its series' normal buckets are kept (they bound incident edges)


@dataclass(slots=True)
class Alarm:
    """One alarm of one series: onset, the time it crossed the threshold, and its end (None while ongoing)."""

    start: int  # start of the first anomalous bucket (epoch seconds)
    alarm: int  # end of the bucket whose data crossed the threshold: the earliest time it was known
    end: int | None  # end of the last bucket still consistent with the disruption
    buckets: list[int] = field(default_factory=list)  # anomalous buckets from onset to end
    # the series' last bucket with data before the onset and first one at or after the end (None: no data):
    # the change happened somewhere in between, which bounds the true onset and end
    before: int | None = None
    after: int | None = None
    spacing: int = 0  # the usual time between buckets with data in this series during the alarm
    # the series' buckets with data where fewer than half of the probes saw the anomaly, within a day of the
    # alarm: an incident's edges lie between its first/last failures and the nearest such buckets
    normal: tuple[int, ...] = ()
    # throughput alarms: bucket -> the probes whose throughput was judged slow there (the witnesses)
    slow: dict[int, frozenset[str]] = field(default_factory=dict)


class Cusum:
    """A two-state CUSUM over log-likelihood ratios. Feed it (time, llr); collect `alarms`."""

    def __init__(self, threshold: float, end_threshold: float, bucket_seconds: int) -> None:
        self.threshold = threshold
        self.end_threshold = end_threshold
        self.step = bucket_seconds
        self.evidence = 0.0  # nats for "disrupted" since the sum last stood at zero
        self.recovery = 0.0  # nats for "back to normal" while alarmed
        self.run: list[int] = []  # positive buckets of the current upward run
        self.run_start: int | None = None
        self.current: Alarm | None = None
        self.last_zero = 0
        self.alarms: list[Alarm] = []

    @property
    def alarmed(self) -> bool:
        return self.current is not None

    def feed(self, t: int, llr: float) -> None:
        if self.current is None:
            if self.evidence == 0.0 and llr > 0:
                self.run_start, self.run = t, []
            self.evidence = max(0.0, self.evidence + llr)
            if self.evidence == 0.0:
                self.run_start, self.run = None, []
                return
            if llr > 0:
                self.run.append(t)
            if self.evidence >= self.threshold and self.run_start is not None:
                self.current = Alarm(start=self.run_start, alarm=t + self.step, end=None, buckets=list(self.run))
                self.recovery, self.last_zero = 0.0, t + self.step
            return
        alarm = self.current
        self.recovery = max(0.0, self.recovery - llr)
        if llr > 0 and self.recovery == 0.0:
            alarm.buckets.append(t)
        if self.recovery == 0.0:
            self.last_zero = t + self.step
        if self.recovery >= self.end_threshold:
            self.close()

    def raise_now(self, t: int) -> None:
        """Raises the alarm at the end of bucket `t` although the sum has not reached the threshold (another
        test on the same data did): onset at the start of the current upward run, as for a crossing."""
        if self.current is None and self.run_start is not None:
            self.current = Alarm(start=self.run_start, alarm=t + self.step, end=None, buckets=list(self.run))
            self.recovery, self.last_zero = 0.0, t + self.step

    def raise_at(self, when: int) -> None:
        """Raises the alarm at time `when` (another test, on a wider series that holds this one, crossed
        then) if this sum holds evidence for a disruption: onset at the start of its current upward run, the
        data consistent with it up to the end of its last anomalous bucket."""
        if self.current is None and self.run_start is not None:
            self.current = Alarm(start=self.run_start, alarm=when, end=None, buckets=list(self.run))
            self.recovery = 0.0
            self.last_zero = self.run[-1] + self.step if self.run else when

    def close(self) -> None:
        """Ends the current alarm at the last time the data was still consistent with it."""
        if self.current is not None:
            self.current.end = self.last_zero
            self.alarms.append(self.current)
        self.current = None
        self.evidence, self.recovery, self.run_start, self.run = 0.0, 0.0, None, []

    def finish(self, last_data: int, now: int, grace: int) -> list[Alarm]:
        """The alarms; one still open is ended if its series has said nothing for `grace` before now, or has
        shown nothing anomalous for `grace` and at least half the evidence needed to end it (sparse data:
        a few healthy measurements after the event and then the data stops)."""
        if self.current is not None:
            quiet = now - max(last_data, self.last_zero) >= grace
            healthy = now - self.last_zero >= grace and self.recovery >= self.end_threshold / 2
            if quiet or healthy:
                self.close()
            else:
                self.alarms.append(self.current)
                self.current = None
        return self.alarms


def bernoulli_llr(k: int, n: int, p0: float, p1: float) -> float:
    return k * math.log(p1 / p0) + (n - k) * math.log((1 - p1) / (1 - p0))


def main_techniques(counts: Counter[str]) -> set[str]:
    """The techniques behind at least a tenth of the anomalous observations: the event's, not the noise around
    it (random failures scatter over every kind of failure; a censor applies its one or two methods)."""
    total = sum(counts.values())
    return {t for t, n in counts.items() if n >= 0.1 * total}


def scan_share(points: Iterable[tuple[int, int, int]], cfg: DetectConfig, now: int,
               techniques: dict[int, Counter[str]] | None = None, by_technique: bool = False,
               corroborated: Iterable[int] = ()) -> list[Alarm]:
    """Bernoulli CUSUM of (time, probes, bad probes) against the series' own trailing rate of bad probes.

    Onset is tested against a fixed disrupted share (`cfg.p1`). Once alarmed, the end is tested against the
    share the disruption has actually shown so far: a block that fails 95% of measurements has ended after a
    few healthy ones, while a partial one (half the probes) needs more evidence, as before.
    `techniques` (bucket -> anomalous probes by technique), when known, lets the edges be drawn by the
    alarm's own techniques (see `_refine`); with `by_technique` each technique also has its own test, which
    can raise the alarm sooner (see `TechniqueTests`). `corroborated`: the times at which the same test on a
    wider series holding this one (the platform across the country's networks) raised its alarm; a series
    that holds evidence of its own then (an upward run: failures not yet outweighed by normal data) is
    alarmed at that time (see detect/corroborate.py).
    """
    cusum = Cusum(cfg.threshold, cfg.end_threshold, cfg.bucket_seconds)
    window: deque[tuple[int, int, int]] = deque()
    base_probes = base_bad = 0  # probes and bad probes in the trailing baseline window (outside alarms)
    run_probes = run_bad = 0  # probes and bad probes since the current upward run began (the alarm's own share)
    last = 0
    points_seen: list[tuple[int, int, int, float]] = []
    per_technique = TechniqueTests(techniques, cfg) if techniques and by_technique else None
    wider = deque(sorted(corroborated))
    for t, n, k in points:
        if n <= 0:
            continue
        k = min(k, n)
        while wider and wider[0] <= t:  # the wider alarm came before this bucket's data: as of then
            cusum.raise_at(wider.popleft())
        last = t
        while window and window[0][0] <= t - cfg.baseline_seconds:
            _, old_probes, old_bad = window.popleft()
            base_probes -= old_probes
            base_bad -= old_bad
        p0 = (base_bad + cfg.prior_rate * cfg.prior_weight) / (base_probes + cfg.prior_weight)
        p0 = min(cfg.max_rate, max(cfg.min_rate, p0))
        points_seen.append((t, n, k, p0))
        p1 = max(cfg.p1, min(0.9, 3 * p0))
        if cusum.alarmed and run_probes:
            p1 = max(p1, min(cfg.end_share_cap, run_bad / run_probes))
        was_alarmed, run_before = cusum.alarmed, cusum.run_start
        cusum.feed(t, bernoulli_llr(k, n, p0, p1))
        if per_technique is not None and per_technique.feed(t, n, learn=not cusum.alarmed) and not cusum.alarmed:
            cusum.raise_now(t)
        if per_technique is not None and cusum.alarmed:
            per_technique.reset()
        if cusum.alarmed or cusum.run_start is not None:
            if not was_alarmed and run_before is None:  # a new upward run begins with this bucket
                run_probes = run_bad = 0
            run_probes += n
            run_bad += k
        else:
            run_probes = run_bad = 0
        if not cusum.alarmed:  # the baseline learns only from buckets outside alarms
            window.append((t, n, k))
            base_probes += n
            base_bad += k
    while wider and wider[0] <= now:
        cusum.raise_at(wider.popleft())
    alarms = cusum.finish(last + cfg.bucket_seconds, now, cfg.end_grace_seconds)
    return [_refine(a, points_seen, cfg, techniques) for a in alarms]


class TechniqueTests:
    """One Bernoulli CUSUM per technique seen on a track: that technique's failing probes against its own
    trailing rate.

    Random failures scatter over every kind of failure, so a failure of one kind is rarer under "normal" than a
    failure of any kind; a censor applies one method, so failures that keep one technique are judged against
    the right, lower null and each weighs more than in the test on any failure. Running one test per technique
    multiplies the false alarms by their number, so each test's threshold is raised by the log of that number
    (a CUSUM's false-alarm rate falls about as e^-threshold). Causal, like the test on any failure: a test
    that crosses raises the alarm at that bucket, never earlier.
    """

    def __init__(self, techniques: dict[int, Counter[str]], cfg: DetectConfig) -> None:
        self.techniques = techniques
        self.kinds = sorted({kind for c in techniques.values() for kind in c})
        self.cfg = cfg
        self.threshold = cfg.threshold + math.log(max(1, len(self.kinds)))
        self.prior = cfg.prior_rate / max(1, len(self.kinds))  # the prior share of failures, split evenly
        self.evidence = dict.fromkeys(self.kinds, 0.0)
        self.window: deque[tuple[int, int, Counter[str]]] = deque()
        self.base_probes = 0
        self.base_bad: Counter[str] = Counter()

    def feed(self, t: int, n: int, learn: bool) -> bool:
        """Adds bucket t (n probes); True when a technique's evidence reached its threshold. `learn`: the
        bucket is outside an alarm and joins the baselines."""
        cfg = self.cfg
        while self.window and self.window[0][0] <= t - cfg.baseline_seconds:
            _, old_probes, old_bad = self.window.popleft()
            self.base_probes -= old_probes
            self.base_bad.subtract(old_bad)
        bad = self.techniques.get(t, Counter())
        crossed = False
        for kind in self.kinds:
            p0 = (self.base_bad[kind] + self.prior * cfg.prior_weight) / (self.base_probes + cfg.prior_weight)
            p0 = min(cfg.max_rate, max(cfg.min_rate, p0))
            llr = bernoulli_llr(min(n, bad[kind]), n, p0, max(cfg.p1, min(0.9, 3 * p0)))
            self.evidence[kind] = max(0.0, self.evidence[kind] + llr)
            crossed = crossed or self.evidence[kind] >= self.threshold
        if learn:
            own = Counter({kind: min(n, c) for kind, c in bad.items()})
            self.window.append((t, n, own))
            self.base_probes += n
            self.base_bad.update(own)
        return crossed

    def reset(self) -> None:
        self.evidence = dict.fromkeys(self.kinds, 0.0)


def _refine(a: Alarm, points: list[tuple[int, int, int, float]], cfg: DetectConfig,
            techniques: dict[int, Counter[str]] | None = None) -> Alarm:
    """Onset and end moved to the changepoints: the stretch of the alarm the data most support.

    The CUSUM tests against a fixed disrupted share, so with sparse data a lone failure just before the onset
    (or after the end) keeps its sum from returning to zero and would stretch the incident. Once the alarm is
    over, the stretch is estimated as an epidemic changepoint: the contiguous run of buckets whose data are
    most likely under "a share p of the probes failed" against the baseline, each candidate run judged at
    its own share (profile likelihood). Judging every run at one share taken from the whole alarm does not
    work: healthy buckets before the event dilute that share until they cost almost nothing, and a stray pair
    of failures hours before the onset joins the stretch. Where the techniques are known, only failures of
    the alarm's own techniques count for the stretch: scattered failures of other kinds around a block (a
    flaky installation, noise) are not part of it. The buckets with data just outside the stretch are kept:
    the true changes lie between them and the stretch's ends.
    """
    step = cfg.bucket_seconds
    lo, hi = a.start, a.end if a.end is not None else points[-1][0] + step
    idx = [i for i, p in enumerate(points) if lo <= p[0] < hi]
    if not idx:
        return a
    inside = [points[i] for i in idx]
    if techniques:
        own = main_techniques(sum((techniques.get(p[0], Counter()) for p in inside), Counter()))
        inside = [(t, n, min(k, sum(techniques[t][x] for x in own)) if t in techniques else k, p0)
                  for t, n, k, p0 in inside]
    first, last = 0, len(inside) - 1
    best = _max_segment(inside, cfg)
    if best is not None:
        first, last = best
    # an edge needs a second witness: two bad probes in its bucket, or the next bucket with data agreeing
    # (a lone failure followed by healthy buckets is noise even where the baseline makes it look rare)
    def bad(p: tuple[int, int, int, float]) -> bool:
        return p[2] > 0 and 2 * p[2] >= p[1]

    def supported(i: int, j: int) -> bool:
        return bad(inside[i]) and (inside[i][2] >= 2 or (first <= j <= last and bad(inside[j])))

    while first < last and not supported(first, first + 1):
        first += 1
    while last > first and not supported(last, last - 1):
        last -= 1
    # the onset must come before the bucket that raised the alarm (confirmation follows onset)
    while first > 0 and inside[first][0] > a.alarm - step:
        first -= 1
    start = inside[first][0]
    end = a.end
    if a.end is not None:
        end = max(inside[last][0] + step, start + step)
    g_first = idx[first]
    g_last = idx[last]
    before = points[g_first - 1][0] if g_first > 0 else None
    after = None
    if end is not None:
        after = next((p[0] for p in points[g_last + 1:] if p[0] >= end), None)
    gaps = sorted(q[0] - p[0] for p, q in zip(inside, inside[1:], strict=False))
    spacing = gaps[len(gaps) // 2] if gaps else step
    near_lo = bisect_left(points, start - EDGE_WINDOW, key=lambda p: p[0])
    near_hi = bisect_left(points, (end if end is not None else hi) + EDGE_WINDOW, key=lambda p: p[0])
    normal = tuple(p[0] for p in points[near_lo:near_hi] if not bad(p))
    return Alarm(start=start, alarm=a.alarm, end=end, buckets=[b for b in a.buckets if b >= start],
                 before=before, after=after, spacing=spacing, normal=normal)


def _max_segment(points: list[tuple[int, int, int, float]], cfg: DetectConfig) -> tuple[int, int] | None:
    """Indexes (first, last) of the contiguous run of points with the largest log-likelihood ratio of "a share
    p failed" (p: the run's own share, capped at `end_share_cap`) against each bucket's baseline rate; None when
    no run's share rises above 1.5 times its baseline. Every run is scored from prefix sums, a start at a time."""
    n = np.array([p[1] for p in points], dtype=float)
    k = np.array([p[2] for p in points], dtype=float)
    p0 = np.array([p[3] for p in points], dtype=float)
    zeros = np.zeros(1)
    cn = np.concatenate([zeros, np.cumsum(n)])
    ck = np.concatenate([zeros, np.cumsum(k)])
    c0 = np.concatenate([zeros, np.cumsum(n * p0)])  # expected failures under the baseline
    cb = np.concatenate([zeros, np.cumsum(k * np.log(p0) + (n - k) * np.log1p(-p0))])  # baseline log-likelihood
    best: tuple[float, int, int] | None = None
    with np.errstate(divide="ignore", invalid="ignore"):
        for i in range(len(points)):
            nn = cn[i + 1:] - cn[i]
            kk = ck[i + 1:] - ck[i]
            share = np.minimum(cfg.end_share_cap, kk / nn)
            llr = kk * np.log(share) + (nn - kk) * np.log1p(-share) - (cb[i + 1:] - cb[i])
            llr[~(kk > 1.5 * (c0[i + 1:] - c0[i]))] = -np.inf  # not raised above the baseline: no stretch
            j = int(np.argmax(llr))
            if llr[j] > 0 and (best is None or llr[j] > best[0]):
                best = (float(llr[j]), i, i + j)
    return None if best is None else (best[1], best[2])


# throughput: how many earlier values (probe x bucket) a baseline needs before any value is judged against it
THROTTLE_MIN_HISTORY = 12
THROTTLE_KEEP = 4 * THROTTLE_MIN_HISTORY  # values kept past the baseline window when nothing newer is normal


@dataclass(slots=True)
class _Baseline:
    """The normal values of one test on one track: (bucket, probe, log kbps), oldest first, and the same values
    sorted (the median in O(log n))."""

    history: deque[tuple[int, str, float]] = field(default_factory=deque)
    ordered: list[float] = field(default_factory=list)
    probes: Counter[str] = field(default_factory=Counter)

    def forget_before(self, t: int) -> None:
        # the old values go, but the last few normal ones stay: a throttling that outlasts the window is still
        # compared with the speed the network had before it, not with nothing
        while len(self.history) > THROTTLE_KEEP and self.history[0][0] <= t:
            _, key, x = self.history.popleft()
            del self.ordered[bisect_left(self.ordered, x)]
            self.probes[key] -= 1
            if not self.probes[key]:
                del self.probes[key]

    def level(self, min_probes: int) -> float | None:
        ordered = self.ordered
        if len(ordered) < THROTTLE_MIN_HISTORY or len(self.probes) < min_probes:
            return None
        mid = len(ordered) // 2
        return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2

    def add(self, t: int, key: str, x: float) -> None:
        self.history.append((t, key, x))
        insort(self.ordered, x)
        self.probes[key] += 1


SlowPoints = tuple[list[tuple[int, int, int]], dict[int, frozenset[str]]]


def scan_throughput(obs: list[Obs], cfg: DetectConfig, now: int, corroborated: Iterable[int] = (),
                    judged: SlowPoints | None = None) -> list[Alarm]:
    """Throttling: a Bernoulli CUSUM of the probes whose throughput fell `cfg.throttle_ratio` below the series'
    own baseline, probe by probe.

    The baseline is the median log throughput of the values judged normal over the trailing
    `cfg.baseline_seconds` (at least the last `THROTTLE_KEEP` of them), from at least `cfg.min_probes` distinct
    probes: a median is not moved by a few odd values, and one probe cannot make it alone. A track is one
    network and one platform, and each test has its own baseline there (a web page's body and an IM test's
    300-byte exchanges are not the same transfer), so a network that is always slow, or a heavy page against a
    light one, sets its own level. Each probe counts once per bucket (its median there), so a slow probe that
    runs often is still one probe; which probes were slow is kept in the alarm (`Alarm.slow`) so that
    confirmation counts them, not buckets. Values judged slow never enter the baseline: a long throttling does
    not become the new normal. `corroborated`: as in `scan_share`; `judged`: `slow_points(obs, cfg)` when
    already computed.
    """
    points, slow_at = judged if judged is not None else slow_points(obs, cfg)
    alarms = scan_share(points, cfg, now, corroborated=corroborated) if points else []
    for a in alarms:
        a.slow = {t: keys for t, keys in slow_at.items() if t >= a.start and (a.end is None or t < a.end)}
    return alarms


def slow_points(obs: list[Obs], cfg: DetectConfig) -> SlowPoints:
    """(bucket, probes that timed a transfer, probes found slow) of a track, and the slow probes per bucket:
    each probe against the median of the track's normal values of the same test (see `scan_throughput`)."""
    cut = math.log(cfg.throttle_ratio)
    baselines: dict[str, _Baseline] = {}
    points: list[tuple[int, int, int]] = []
    slow_at: dict[int, frozenset[str]] = {}
    for o in obs:
        values = _probe_values(o)
        if not values:
            continue
        slow: set[str] = set()
        normal: list[tuple[str, str, float]] = []
        for key, test, x in values:
            b = baselines.get(test)
            if b is None:
                b = baselines[test] = _Baseline()
            b.forget_before(o.t - cfg.baseline_seconds)
            base = b.level(cfg.min_probes)
            if base is not None and x < base - cut:
                slow.add(key)
            else:
                normal.append((key, test, x))
        probes = {key for key, _, _ in values}
        points.append((o.t, len(probes), len(slow)))
        if slow:
            slow_at[o.t] = frozenset(slow)
        for key, test, x in normal:
            if key not in slow:
                baselines[test].add(o.t, key, x)
    return points, slow_at


def _probe_values(o: Obs) -> list[tuple[str, str, float]]:
    """(probe, test, log kbps) of one bucket: each probe's own figure per test when the cells carry them, else
    each cell's median as one anonymous value (cells from a store that does not keep per-probe figures)."""
    if o.probe_kbps:
        per: dict[tuple[str, str], list[float]] = {}
        for key, test, v in o.probe_kbps:
            if v > 0:
                per.setdefault((key, test), []).append(v)
        # a probe in two regions of one bucket (it moved) is one probe: its median
        return [(key, test, math.log(vs[0] if len(vs) == 1 else float(np.median(vs))))
                for (key, test), vs in per.items()]
    return [(f"cell:{o.t}:{i}", "", math.log(v)) for i, v in enumerate(o.kbps) if v > 0]


LIFT_SECONDS = 2 * 3600  # failures this far apart, with normal data between them, are two events


def split_lifted(a: Alarm, failures: list[int], step: int, lift_seconds: int = LIFT_SECONDS,
                 wider: tuple[tuple[int, ...], tuple[int, ...]] | None = None) -> list[Alarm]:
    """An alarm cut where the disruption was lifted: two failures of the alarm at least `lift_seconds`
    apart with the series seen normal in between (twice at least). A sparse series (a few volunteers in a
    region) may take days to gather the evidence that ends its alarm on its own; its measurements between
    two nightly shutdowns were fine all day, and an event that was lifted is over (the next one is a new
    episode). A gap without any normal data is no lifting: probes cut off send nothing at all.

    `wider` (normal buckets, alarm ends) of the network's own track, for a region's track: a region's few
    volunteers may not measure between two evenings at all, while the network as a whole was seen normal
    again after its own alarm ended; the lifting is then judged on the network. A regional event leaves the
    network's track unalarmed, and nothing is cut on its account."""
    fails = sorted({t for t in failures if t >= a.start and (a.end is None or t < a.end)})
    if len(fails) < 2:
        return [a]
    cuts: list[tuple[int, int]] = []  # (last failure before, first failure after)
    for b0, b1 in zip(fails, fails[1:], strict=False):
        if b1 - b0 < lift_seconds:
            continue
        own = sum(1 for t in a.normal if b0 < t < b1) >= 2
        net = wider is not None and any(b0 < e <= b1 for e in wider[1]) and sum(
            1 for t in wider[0] if b0 < t < b1) >= 2
        if own or net:
            cuts.append((b0, b1))
    if not cuts:
        return [a]
    out: list[Alarm] = []
    start, alarm, before = a.start, a.alarm, a.before
    for b0, b1 in cuts:
        after = next((t for t in a.normal if t > b0), None)
        out.append(Alarm(start=start, alarm=alarm, end=b0 + step, buckets=[b for b in fails if start <= b <= b0],
                         before=before, after=after, spacing=a.spacing,
                         normal=tuple(t for t in a.normal if t < b1)))
        before = max((t for t in a.normal if t < b1), default=None)
        start, alarm = b1, b1 + step
    out.append(Alarm(start=start, alarm=max(alarm, start + step), end=a.end, buckets=[b for b in fails if b >= start],
                     before=before, after=a.after, spacing=a.spacing, normal=tuple(t for t in a.normal if t > before)
                     if before is not None else a.normal))
    return out
