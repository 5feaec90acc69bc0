"""People's own reports as a sentence: a weak signal, quoted beside the measurements, never instead of them."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from observatory import catalog
from observatory.incident import Incident


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def user_reports_sentence(inc: Incident, counts: Iterable[tuple[str, str, str, int]], *, top: int = 3) -> str:
    """'Users also reported difficulty reaching X/Twitter in Islamabad, Lahore and Karachi (14 reports).'

    `counts` are (country, region, platform, n) for the incident's country and time; only the incident's
    platforms count, and regions are named most-reported first."""
    wanted = set(inc.platforms)
    by_region: Counter[str] = Counter()
    platforms: Counter[str] = Counter()
    for cc, region, platform, n in counts:
        if inc.country and cc != inc.country:
            continue
        if wanted and platform not in wanted:
            continue
        platforms[platform] += n
        if region:
            by_region[region] += n
    total = sum(platforms.values())
    if not total:
        return ""
    names = _join([catalog.display_name(p) for p, _ in platforms.most_common()])
    where = f" in {_join([r for r, _ in by_region.most_common(top)])}" if by_region else ""
    return f"Users also reported difficulty reaching {names}{where} ({total} report{'s' if total != 1 else ''})."
