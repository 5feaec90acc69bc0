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
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from observatory.detect.config import DetectConfig
from observatory.detect.series import Obs


@dataclass(slots=True)
class Alarm:
    """One alarm of one series: onset, the time it crossed the threshold, and its end (None while ongoing)."""

    start: int  # start of the first anomalous bucket (epoch seconds)
    alarm: int  # end of the bucket whose data crossed the threshold: the earliest time it was known
    end: int | None  # end of the last bucket still consistent with the disruption
    buckets: list[int] = field(default_factory=list)  # anomalous buckets from onset to end


class Cusum:
    """A two-state CUSUM over log-likelihood ratios. Feed it (time, llr); collect `alarms`."""

    def __init__(self, threshold: float, end_threshold: float, bucket_seconds: int) -> None:
        self.h = threshold
        self.h_end = end_threshold
        self.step = bucket_seconds
        self.s = 0.0
        self.d = 0.0
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
            if self.s == 0.0 and llr > 0:
                self.run_start, self.run = t, []
            self.s = max(0.0, self.s + llr)
            if self.s == 0.0:
                self.run_start, self.run = None, []
                return
            if llr > 0:
                self.run.append(t)
            if self.s >= self.h and self.run_start is not None:
                self.current = Alarm(start=self.run_start, alarm=t + self.step, end=None, buckets=list(self.run))
                self.d, self.last_zero = 0.0, t + self.step
            return
        alarm = self.current
        self.d = max(0.0, self.d - llr)
        if llr > 0 and self.d == 0.0:
            alarm.buckets.append(t)
        if self.d == 0.0:
            self.last_zero = t + self.step
        if self.d >= self.h_end:
            self.close()

    def close(self) -> None:
        """Ends the current alarm at the last time the data was still consistent with it."""
        if self.current is not None:
            self.current.end = self.last_zero
            self.alarms.append(self.current)
        self.current = None
        self.s, self.d, self.run_start, self.run = 0.0, 0.0, None, []

    def finish(self, last_data: int, now: int, grace: int) -> list[Alarm]:
        """The alarms; one still open is ended if its series has said nothing for `grace` before now."""
        if self.current is not None:
            if now - max(last_data, self.last_zero) >= grace:
                self.close()
            else:
                self.alarms.append(self.current)
                self.current = None
        return self.alarms


def bernoulli_llr(k: int, n: int, p0: float, p1: float) -> float:
    return k * math.log(p1 / p0) + (n - k) * math.log((1 - p1) / (1 - p0))


def scan_share(points: Iterable[tuple[int, int, int]], cfg: DetectConfig, now: int) -> list[Alarm]:
    """Bernoulli CUSUM of (time, probes, bad probes) against the series' own trailing rate of bad probes."""
    cusum = Cusum(cfg.threshold, cfg.end_threshold, cfg.bucket_seconds)
    window: deque[tuple[int, int, int]] = deque()
    sn = sk = 0
    last = 0
    points_seen: list[tuple[int, int, int]] = []
    for t, n, k in points:
        if n <= 0:
            continue
        last = t
        points_seen.append((t, n, min(k, n)))
        while window and window[0][0] <= t - cfg.baseline_seconds:
            _, on, ok_ = window.popleft()
            sn -= on
            sk -= ok_
        p0 = (sk + cfg.prior_rate * cfg.prior_weight) / (sn + cfg.prior_weight)
        p0 = min(cfg.max_rate, max(cfg.min_rate, p0))
        p1 = max(cfg.p1, min(0.9, 3 * p0))
        cusum.feed(t, bernoulli_llr(min(k, n), n, p0, p1))
        if not cusum.alarmed:  # the baseline learns only from buckets outside alarms
            window.append((t, n, k))
            sn += n
            sk += k
    alarms = cusum.finish(last + cfg.bucket_seconds, now, cfg.end_grace_seconds)
    return [_refine(a, points_seen, cfg) for a in alarms]


def _refine(a: Alarm, points: list[tuple[int, int, int]], cfg: DetectConfig) -> Alarm:
    """Onset and end moved to the first/last bucket that other data agree with.

    With sparse data a lone failure just before the onset (or after the end) keeps the sum from returning to
    zero and would stretch the incident. A bucket counts as the onset (end) only if most of its probes saw the
    disruption and either three or more did, or the next (previous) bucket with data, within 30 minutes, agrees.
    """
    lo, hi = a.start, a.end if a.end is not None else points[-1][0] + cfg.bucket_seconds
    inside = [p for p in points if lo <= p[0] < hi]

    def bad(p: tuple[int, int, int]) -> bool:
        return p[2] > 0 and 2 * p[2] >= p[1]

    def supported(i: int, step: int) -> bool:
        p = inside[i]
        if not bad(p):
            return False
        if p[2] >= 3:
            return True
        j = i + step
        return (0 <= j < len(inside) and bad(inside[j]) and abs(inside[j][0] - p[0]) <= 1800
                and (step < 0 or inside[j][0] < a.alarm))

    start = next((inside[i][0] for i in range(len(inside)) if supported(i, 1)), a.start)
    end = a.end
    if a.end is not None:
        last = next((inside[i][0] for i in reversed(range(len(inside))) if supported(i, -1)), None)
        if last is not None and last >= start:
            end = last + cfg.bucket_seconds
    start = min(start, a.alarm - cfg.bucket_seconds)
    return Alarm(start=start, alarm=a.alarm, end=end, buckets=[b for b in a.buckets if b >= start])


def scan_throughput(obs: list[Obs], cfg: DetectConfig, now: int) -> list[Alarm]:
    """Buckets whose median throughput collapsed against the series' own running level count as all-bad."""
    level: float | None = None  # EWMA of log kbps over normal buckets
    seen = 0
    points: list[tuple[int, int, int]] = []
    cut = math.log(cfg.throttle_ratio)
    for o in obs:
        kbps = o.median_kbps
        if kbps is None or kbps <= 0 or o.n == 0:
            continue
        x = math.log(kbps)
        collapsed = level is not None and seen >= 12 and x < level - cut
        points.append((o.t, o.n, o.n if collapsed else 0))
        if not collapsed:
            level = x if level is None else level + 0.05 * (x - level)
            seen += 1
    return scan_share(points, cfg, now) if points else []


def scan_silence(activity: dict[int, int], cfg: DetectConfig, now: int) -> tuple[list[Alarm], dict[int, float]]:
    """Poisson CUSUM of active probes per bucket against the usual count at that time of day.

    The grid is dense from the first bucket with data to `now`: a bucket with nobody reporting is a zero,
    not a gap. Expected count: the mean of the same time of day (+-1 bucket) on up to a week of earlier days
    when two or more are known, else the trailing hour. Returns the alarms and the expected counts used.
    """
    step = cfg.bucket_seconds
    if not activity:
        return [], {}
    first = min(activity)
    cusum = Cusum(cfg.silence_threshold, cfg.silence_threshold, step)
    day = 86400
    log_rho = math.log(cfg.silence_ratio)
    expected: dict[int, float] = {}
    recent: deque[int] = deque(maxlen=12)
    t = first
    while t < now:
        x = activity.get(t, 0)
        days = [d for d in range(1, cfg.silence_history_days + 1) if t - d * day - step >= first]
        if len(days) >= 2:
            vals = [activity.get(t - d * day + j * step, 0) for d in days for j in (-1, 0, 1)]
            lam = sum(vals) / len(vals)
        elif len(recent) == recent.maxlen:
            lam = sum(recent) / len(recent)
        else:
            lam = 0.0
        expected[t] = lam
        if lam >= cfg.silence_min_expected:
            cusum.feed(t, x * log_rho + (1 - cfg.silence_ratio) * lam)
        if not cusum.alarmed:
            recent.append(x)
        t += step
    # silence is judged on the dense grid up to now, so an open alarm stays open: the probes are still quiet
    alarms = cusum.finish(now, now, cfg.end_grace_seconds)
    return alarms, expected
