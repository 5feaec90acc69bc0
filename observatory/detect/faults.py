"""Faults that look like restrictions: failures the network's own control explains.

A censor chooses its targets: a block fails the platforms it names and leaves the control (a site nobody
blocks) working. A fault does not choose: a resolver failing for hours, a flaky line or an overloaded
gateway fails a share of *every* measurement of the network, the control among them. `series.fold` already
takes out the probes whose control failed in the same run, but a fault that hits a share of the measurements
independently leaves many runs whose control happened to work while their platforms failed, and those
probes then agree on a technique (a failing resolver is one technique) as a block's would.

So a restriction episode is put to two tests on its own window (give or take the merge gap) and network:
- was the network failing? Its control failed above its usual rate, on `min_probes` distinct probes (the
  standard a restriction is confirmed on: one probe's stray control failures never count), with odds of
  100 to 1 (`cfg.window_evidence`). This is one test on a window the platform's alarm chose, not a scan
  of the control over every bucket, so it does not need an alarm's 10 nats: a flaky hour on a network of
  ten probes leaves about 18 control measurements, 4 of them failed, which is 5 nats against a 3% rate and
  was never "failing" at 10 (a Tigray world: three platforms "restricted" with three techniques);
- did the platform fail *beyond* that? Judged against the control's rate in that window in place of its
  usual baseline, would its failures still raise an alarm (`cfg.threshold`, the CUSUM's own)? A block
  fails its platforms nearly always while the control works; a fault fails both alike. Keeping a block
  is the cautious side, so it asks the alarm's evidence.
A restriction that fails the second test where the first holds is the network failing, not a block. A block
of days that overlaps a flaky hour keeps the control near its usual rate over its window, and a block that
begins during a fault fails its platforms far beyond the control: both stay. Where the control was not
measured (data without a control target) nothing can be said and nothing is dropped.
"""

from __future__ import annotations

from collections.abc import Iterable

from observatory.catalog import CONTROL
from observatory.detect.config import DetectConfig
from observatory.detect.cusum import bernoulli_llr
from observatory.detect.episodes import RESTRICTION, Episode
from observatory.detect.series import ALL_PLATFORMS, Obs, Tracks


def drop_network_faults(episodes: Iterable[Episode], tracks: Tracks, cfg: DetectConfig) -> list[Episode]:
    """The episodes without the restrictions that their network's failing explains: those whose own window
    shows the control failing as they did, and the shorter pieces of the same fault, which lie within such a
    platform's episode on the same network (give or take the merge gap: a fault flickers, and a piece of a
    few minutes holds too few control measurements to tell anything on its own). A block that began during a
    fault and outlasts it is not within it, and is judged on its own window."""
    episodes = list(episodes)
    spans: dict[tuple[str, int], list[tuple[int, int | None]]] = {}
    explained: set[int] = set()
    for i, e in enumerate(episodes):
        if explained_by_network(e, tracks, cfg):
            explained.add(i)
            if e.platform != ALL_PLATFORMS:  # a sum over blocked and open platforms is no platform's span
                spans.setdefault((e.country, e.asn), []).append((e.start, e.end))
    gap = cfg.merge_gap_seconds
    for i, e in enumerate(episodes):
        if i in explained or e.family != RESTRICTION or e.silent:
            continue
        for lo, hi in spans.get((e.country, e.asn), ()):
            if lo - gap <= e.start and (hi is None or (e.end is not None and e.end <= hi + gap)):
                explained.add(i)
                break
    return [e for i, e in enumerate(episodes) if i not in explained]


def explained_by_network(e: Episode, tracks: Tracks, cfg: DetectConfig) -> bool:
    """Whether a restriction episode's failures are its network failing (see the module's docstring)."""
    if e.family != RESTRICTION or e.silent or not e.probes:
        return False
    control = tracks.series.get((e.country, e.asn, CONTROL))
    if not control:
        return False
    # the control around the episode, give or take the merge gap (what the detector calls one moment): a
    # short episode's own buckets hold a few control measurements at most, the fault's hour holds many
    lo, hi = e.start, e.end if e.end is not None else tracks.now
    pad = cfg.merge_gap_seconds
    inside = [o for o in control if lo - pad <= o.t < hi + pad]
    if len({k for o in inside for k in o.keys}) < cfg.min_probes:
        return False
    # the control's own failures, every one (not only those of runs whose platforms failed too): its rate
    total = sum(o.total for o in inside)
    failed = sum(o.anomalous for o in inside)
    if not total:
        return False
    usual = _usual_rate(control, lo, cfg)
    rate = min(cfg.end_share_cap, max(usual, failed / total))
    if bernoulli_llr(failed, total, usual, rate) < cfg.window_evidence:
        return False  # the control worked about as usual: the network was not failing
    share = min(cfg.end_share_cap, e.bad / e.probes)
    if share <= rate:
        return True
    return bernoulli_llr(e.bad, e.probes, rate, share) < cfg.threshold


def _usual_rate(control: list[Obs], before: int, cfg: DetectConfig) -> float:
    """The control's failure rate over the trailing baseline window, with the detector's prior (as in
    `cusum.scan_share`), bounded like every baseline."""
    lo = before - cfg.baseline_seconds
    total = sum(o.total for o in control if lo <= o.t < before)
    failed = sum(o.anomalous for o in control if lo <= o.t < before)
    rate = (failed + cfg.prior_rate * cfg.prior_weight) / (total + cfg.prior_weight)
    return min(cfg.max_rate, max(cfg.min_rate, rate))
