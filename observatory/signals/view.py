"""Signals as people are shown them, IODA-style: each series divided by its own usual level, so a BGP count
of 4,000 /24s, a telescope count of 20,000 addresses and a traffic share of 0.6 can be read on one axis
(1 = usual, 0 = nothing). PURE: points in, lines out; the dashboard and the PNG report both draw these.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from observatory.signals import SignalPoint, is_level

MIN_BASELINE_POINTS = 4
MAX_LINE_POINTS = 600  # a line wider than a screen in points says nothing more; long spans are averaged down

# how people know IODA's and Radar's series (the names in the evidence stay the sources' own ids)
SIGNAL_TITLES = {"bgp": "BGP (visible /24s)", "ping-slash24": "Active probing (/24s up)",
                 "merit-nt": "Telescope (unique sources)", "ucsd-nt": "Telescope (unique sources)",
                 "gtr": "Google traffic", "mozilla": "Mozilla (city count)", "netflows": "Cloudflare traffic",
                 "http_requests": "Cloudflare HTTP requests", "probe_heartbeats": "Probes heard",
                 "active_probing": "Active probing"}


@dataclass(frozen=True, slots=True)
class SignalLine:
    key: tuple[str, str, str, str, int]  # source, signal, country, region, asn
    label: str
    baseline: float
    points: tuple[tuple[datetime, float], ...]  # time, value / baseline


def signal_title(source: str, signal: str) -> str:
    base, _, sub = signal.partition(".")
    title = SIGNAL_TITLES.get(signal) or SIGNAL_TITLES.get(base) or signal
    if base == "gtr" and sub:
        title += f" ({'search' if sub == 'WEB_SEARCH' else sub.lower().replace('_', ' ')})"
    return f"{title}, {source}"


def normalised_lines(points: Iterable[SignalPoint], *, since: datetime, until: datetime,
                     baseline_until: datetime | None = None, country_only: bool = True) -> list[SignalLine]:
    """One line per level series (`is_level`) between `since` and `until`, each divided by the median of its
    values before `baseline_until` (default `since`: the week fetched before the view), or of all its values
    when it has too few before. `country_only`: the country-wide series when there are any (regions and networks would
    crowd a small chart)."""
    by_key: dict[tuple[str, str, str, str, int], list[SignalPoint]] = defaultdict(list)
    for p in points:
        if is_level(p.signal):
            by_key[p.key].append(p)
    if country_only and any(not k[3] and not k[4] for k in by_key):
        by_key = defaultdict(list, {k: v for k, v in by_key.items() if not k[3] and not k[4]})
    cut = baseline_until or since
    lines = []
    for key, pts in sorted(by_key.items()):
        pts.sort(key=lambda p: p.time)
        before = [p.value for p in pts if p.time < cut]
        base = statistics.median(before if len(before) >= MIN_BASELINE_POINTS else [p.value for p in pts])
        shown = [(p.time, p.value / base) for p in pts if since <= p.time < until] if base > 0 else []
        if shown:
            where = (f", {key[3]}" if key[3] else "") + (f", AS{key[4]}" if key[4] else "")
            label = signal_title(key[0], key[1]) + where
            lines.append(SignalLine(key=key, label=label, baseline=base, points=tuple(_thin(shown))))
    return lines


def _thin(points: Sequence[tuple[datetime, float]]) -> list[tuple[datetime, float]]:
    """At most MAX_LINE_POINTS, each the mean of a run of neighbours (the first time of the run)."""
    if len(points) <= MAX_LINE_POINTS:
        return list(points)
    size = -(-len(points) // MAX_LINE_POINTS)
    return [(points[i][0], sum(v for _, v in points[i:i + size]) / len(points[i:i + size]))
            for i in range(0, len(points), size)]
