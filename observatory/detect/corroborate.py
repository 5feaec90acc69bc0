"""A decision shows on every network it reaches: the same test on the pooled series corroborates each one.

A block ordered for a whole country (Pakistan's four platforms blocked by TLS on every network) shows on
each network as a few failing runs of sparse volunteers, and each network's own test waits for three or
four runs of its own before it alarms: two to three hours, while across the networks three runs had failed
the same way within 45 minutes. A platform's own outage shows on every network in every country. So the
test each track runs is also run on the pooled series of all the tracks of one platform in one country
(failures by a censor's techniques, and throughput: each probe judged slow against its own network's
baseline) or, for a platform seen `down` (its own outage), in the whole world. When the pooled test
alarms, each track whose own series holds
evidence then (an upward run: failures not yet outweighed by its normal data) is alarmed at that time
(`cusum.scan_share(corroborated=...)`). A track without failures gets nothing, and one network's block still
needs its own test: the other networks' normal data outweigh it in the pool. One test more per country and
platform, causal like every other; confirmation still asks for its three witnesses.

PURE: tracks in, alarm times out.
"""

from __future__ import annotations

from collections import Counter

from observatory.catalog import CONTROL
from observatory.detect.config import DetectConfig
from observatory.detect.cusum import SlowPoints, scan_share
from observatory.detect.series import ALL_PLATFORMS, TrackKey, Tracks
from observatory.vocab import RESTRICTION_TECHNIQUES

Group = tuple[str, str]  # (country, or "" for the whole world; platform)


def platform_track(platform: str) -> bool:
    """A track of one platform (not the control's, a region's or the all-platforms sum)."""
    return platform != ALL_PLATFORMS and not platform.startswith(CONTROL)


class Corroboration:
    """The pooled tests' alarm times, per track: `failures`, `slow` (per country and platform) and `down`
    (per platform, every country)."""

    def __init__(self, tracks: Tracks, judged: dict[TrackKey, SlowPoints], cfg: DetectConfig) -> None:
        failures, down, slow = _Pool(), _Pool(), _Pool()
        for (country, asn, platform), obs in tracks.series.items():
            if not platform_track(platform):
                continue
            for o in obs:
                # a censor's failures only: a cut's timeouts are judged by the connectivity tests, and a
                # stray timeout elsewhere must not join a cut through its platform tracks
                blocked = [w for w in o.witnesses if w.technique in RESTRICTION_TECHNIQUES]
                failures.add((country, platform), (country, asn), o.t, o.n, len({w.probe for w in blocked}),
                             Counter(w.technique for w in blocked))
                down.add(("", platform), (country, asn), o.t, o.n, o.down)
        for (country, asn, platform), (points, _) in judged.items():
            for t, n, k in points:
                slow.add((country, platform), (country, asn), t, n, k)
        self._failures = failures.alarms(cfg, tracks.now, by_technique=True)
        self._down = down.alarms(cfg, tracks.now)
        self._slow = slow.alarms(cfg, tracks.now)

    def failures(self, key: TrackKey) -> list[int]:
        return self._failures.get((key[0], key[2]), [])

    def down(self, key: TrackKey) -> list[int]:
        return self._down.get(("", key[2]), [])

    def slow(self, key: TrackKey) -> list[int]:
        return self._slow.get((key[0], key[2]), [])


class _Pool:
    """Buckets of (probes, bad probes) summed over the tracks of each group, with the techniques seen."""

    def __init__(self) -> None:
        self.points: dict[Group, dict[int, list[int]]] = {}
        self.kinds: dict[Group, dict[int, Counter[str]]] = {}
        self.members: dict[Group, set[tuple[str, int]]] = {}

    def add(self, group: Group, member: tuple[str, int], t: int, n: int, k: int,
            kinds: Counter[str] | None = None) -> None:
        self.members.setdefault(group, set()).add(member)
        acc = self.points.setdefault(group, {}).setdefault(t, [0, 0])
        acc[0] += n
        acc[1] += k
        if kinds:
            self.kinds.setdefault(group, {}).setdefault(t, Counter()).update(kinds)

    def alarms(self, cfg: DetectConfig, now: int, by_technique: bool = False) -> dict[Group, list[int]]:
        """Group -> the times its pooled test raised an alarm, where two networks or more are pooled (one
        network's pool is its own track)."""
        out: dict[Group, list[int]] = {}
        for group, series in self.points.items():
            if len(self.members[group]) < 2:
                continue
            points = ((t, n, k) for t, (n, k) in sorted(series.items()))
            found = scan_share(points, cfg, now, self.kinds.get(group), by_technique=by_technique)
            if found:
                out[group] = [a.alarm for a in found]
        return out
