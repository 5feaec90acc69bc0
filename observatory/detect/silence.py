"""Silence: absence of measurements judged against what a series usually sends at that hour, at its own pace.

A network or region that stops reporting is evidence of a connectivity loss only against its own habits:
dedicated probes report every few minutes, a region of volunteers a few times a day, and volunteers are
bursty (a laptop closed for the weekend, a phone asleep). So:
- the expected activity of a bucket is the series' own activity at the same time of day on earlier days
  (the median over days, robust to an earlier day's event; weekday-matched where weeks of history allow);
- the test runs on blocks as long as the series needs to expect about one active probe (one bucket for
  dedicated probes, hours for sparse volunteers) instead of skipping sparse series;
- counts are negative-binomial (Poisson-Gamma), with the overdispersion measured on the series' own past
  blocks: a bursty series needs a longer silence than a steady one for the same evidence;
- silence is judged only up to the data horizon: after the newest data the rest of the store has sent, an
  empty bucket is data not yet received, not probes gone quiet.

PURE: plain data in, alarms out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from observatory.detect.config import DetectConfig
from observatory.detect.cusum import Alarm, Cusum

DAY = 86400
MAX_BLOCK_SECONDS = 6 * 3600  # sparser than one probe in six hours: the series cannot show a cut in time
SMOOTH_SECONDS = 1800  # the same time of day, give or take this much (probes do not run on the minute)
TRAILING_SECONDS = 3600  # without an earlier day, the expectation is the trailing hour, for dense series only
DISPERSION_PRIOR = 0.1  # 1/k assumed before a series has history (slightly more variable than Poisson)
DISPERSION_PRIOR_WEIGHT = 10.0  # how many squared expected counts that prior is worth
MAX_DISPERSION = 2.0


@dataclass(frozen=True, slots=True)
class SilenceScan:
    alarms: list[Alarm]
    expected: dict[int, float]  # bucket -> the activity expected there (buckets with an expectation only)
    block: int  # seconds per test block


def expected_activity(x: np.ndarray, step: int, cfg: DetectConfig) -> np.ndarray:
    """Per bucket of a dense grid of counts, the activity usually seen at that time of day (NaN: unknown).

    The median over the earlier days (of the counts within `SMOOTH_SECONDS` of the same time) is robust to
    an earlier event (last night's shutdown does not lower tonight's expectation) and to one busy volunteer.
    With two or more weeks of history the same weekday counts half. Without an earlier day: the mean of the
    trailing hour, where it is at least one active probe per bucket (dedicated probes: an hour changes their
    activity little); a sparser series then has no expectation at all, since its trailing hours say
    nothing of the next ones (volunteers' evening is quieter than their afternoon)."""
    n = len(x)
    per_day = DAY // step
    half = max(0, SMOOTH_SECONDS // step)
    kernel = np.ones(2 * half + 1) / (2 * half + 1)
    smooth = np.convolve(np.pad(x, half, mode="edge"), kernel, mode="valid")
    days = []
    for d in range(1, cfg.silence_history_days + 1):
        lag = d * per_day
        if lag + half >= n:
            break
        shifted = np.full(n, np.nan)
        shifted[lag + half:] = smooth[half:n - lag]
        days.append(shifted)
    lam = np.full(n, np.nan)
    if days:
        stack = np.vstack(days)
        have = np.sum(~np.isnan(stack), axis=0)
        with np.errstate(all="ignore"):
            med = np.nanmedian(np.where(have > 0, stack, 0.0), axis=0)
        lam = np.where(have > 0, med, np.nan)
        weeks = [stack[d - 1] for d in range(7, len(days) + 1, 7)]
        if len(weeks) >= 2:
            wk = np.vstack(weeks)
            seen = np.sum(~np.isnan(wk), axis=0)
            enough = seen >= 2
            wmean = np.nansum(wk, axis=0) / np.maximum(seen, 1)  # no warning on buckets no week has
            lam = np.where(enough, 0.5 * lam + 0.5 * wmean, lam)
    trail = TRAILING_SECONDS // step
    if n > trail:
        csum = np.concatenate([[0.0], np.cumsum(x)])
        trailing = np.full(n, np.nan)
        trailing[trail:] = (csum[trail:n] - csum[:n - trail]) / trail
        trailing[trailing < 1.0] = np.nan
        lam = np.where(np.isnan(lam), trailing, lam)
    return lam


def block_buckets(x: np.ndarray, step: int) -> int:
    """Buckets per test block: enough to expect about one active probe at the series' mean activity."""
    mean = float(np.mean(x)) if len(x) else 0.0
    cap = max(1, MAX_BLOCK_SECONDS // step)
    if mean <= 0:
        return cap
    return int(min(cap, max(1, math.ceil(1.0 / mean))))


def nb_llr(x: float, lam: float, rho: float, a: float) -> float:
    """Log-likelihood ratio of x under "activity fell to rho times its usual mean" against "as usual", both
    negative binomial with dispersion a = 1/k (variance mean + a * mean^2); Poisson when a is 0."""
    if a < 1e-9:
        return x * math.log(rho) + (1 - rho) * lam
    return x * math.log(rho * (1 + a * lam) / (1 + a * rho * lam)) + math.log((1 + a * lam) / (1 + a * rho * lam)) / a


def scan_silence(activity: dict[int, int], cfg: DetectConfig, horizon: int) -> SilenceScan:
    """Negative-binomial CUSUM of active probes per block against the usual activity at that time.

    The grid is dense from the first bucket with data to `horizon` (a bucket with nobody reporting is a zero,
    not a gap; after the horizon nothing is known). Onset: the bucket after the last activity before the
    silent run; end: the first activity after it. Causal, like every test here: a block's result depends
    only on blocks before it.
    """
    step = cfg.bucket_seconds
    if not activity:
        return SilenceScan([], {}, step)
    first = min(activity)
    n = max(0, (horizon - first) // step)
    if n == 0:
        return SilenceScan([], {}, step)
    x = np.zeros(n)
    for t, v in activity.items():
        i = (t - first) // step
        if 0 <= i < n:
            x[i] = v
    lam = expected_activity(x, step, cfg)
    b = block_buckets(x, step)
    span = b * step
    cusum = Cusum(cfg.silence_threshold, cfg.silence_threshold, span)
    num = den = 0.0  # moments of past blocks, for the dispersion
    # blocks aligned on absolute time: a run that starts its grid elsewhere cuts the same blocks
    offset = ((span - first % span) % span) // step
    starts = ([0] if offset else []) + list(range(offset, n, b))
    for j, s in enumerate(starts):
        e = starts[j + 1] if j + 1 < len(starts) else n
        if e - s < b and e == n:
            break  # a block cut by the horizon: not yet complete
        ls = lam[s:e]
        if np.isnan(ls).any():
            continue
        lam_b, x_b = float(np.sum(ls)), float(np.sum(x[s:e]))
        a = min(MAX_DISPERSION, max(0.0, (num + DISPERSION_PRIOR * DISPERSION_PRIOR_WEIGHT)
                                    / (den + DISPERSION_PRIOR_WEIGHT)))
        if lam_b > 0:
            cusum.feed(first + s * step, nb_llr(x_b, lam_b, cfg.silence_ratio, a))
        if not cusum.alarmed and cusum.run_start is None:  # dispersion learns from ordinary blocks only
            num += (x_b - lam_b) ** 2 - x_b
            den += lam_b ** 2
    # judged on the dense grid up to the horizon, an open alarm stays open: the probes are still quiet
    alarms = cusum.finish(horizon, horizon, cfg.end_grace_seconds)
    expected = {first + k * step: float(v) for k, v in enumerate(lam) if not math.isnan(v)}
    edged = [_edges(a, x, first, step, span) for a in alarms]
    return SilenceScan([a for a in (_beyond_usual_gaps(a, x, first, step, horizon) for a in edged) if a], expected,
                       span)


GAP_QUANTILE = 0.99  # the series' usual longest gap between activity...
GAP_FACTOR = 2.0  # ...which a silence must exceed this many times
MIN_GAPS = 10  # fewer gaps seen before: too little history to know what is unusual


def _beyond_usual_gaps(a: Alarm, x: np.ndarray, first: int, step: int, horizon: int) -> Alarm | None:
    """The alarm, known only once its silence has lasted well beyond the series' own usual gaps (twice the
    99th percentile of the gaps between activity before it); None if it never did. Volunteers come in
    bursts: a network whose runs usually cluster leaves hour-long holes that no count model per bucket
    describes, and each probe that went quiet must have been silent well beyond its own habits."""
    onset = (a.start - first) // step
    active = np.nonzero(x[:onset] > 0)[0]
    if len(active) <= MIN_GAPS:
        return None
    gaps = np.diff(active) * step
    need = int(GAP_FACTOR * float(np.quantile(gaps, GAP_QUANTILE)))
    known = a.start + need
    if known > (a.end if a.end is not None else horizon):
        return None
    if known <= a.alarm:
        return a
    return Alarm(start=a.start, alarm=known - known % step + step, end=a.end, buckets=a.buckets, before=a.before,
                 after=a.after, spacing=a.spacing, normal=a.normal)


def _edges(a: Alarm, x: np.ndarray, first: int, step: int, span: int) -> Alarm:
    """Onset after the last bucket with activity before the silent run (or in its first block); end at the
    first bucket with activity after the last silent block. `before` keeps that last activity: the change
    lies between it and the onset."""
    s = (a.start - first) // step
    e = s + span // step
    active = np.nonzero(x[:e] > 0)[0]
    last = int(active[-1]) if len(active) else None
    # nothing was seen between the last activity and the run (a CUSUM run resets only on activity): the
    # blocks in between were empty, or not judged at all (nobody usually reports then, e.g. at night)
    start = a.start if last is None else first + (last + 1) * step
    before = None if last is None else first + last * step
    end = a.end
    if end is not None:
        lo = max((end - first) // step - span // step, (start - first) // step)
        later = np.nonzero(x[lo:] > 0)[0]
        end = first + (lo + int(later[0])) * step if len(later) else end
        end = max(end, start + step)
    return Alarm(start=start, alarm=a.alarm, end=end, buckets=[], before=before, after=end, spacing=span)
