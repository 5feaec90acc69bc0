"""The hourly screen picks the countries worth the fine look: a short block inside an hour of steady probes must
pass it, a country's usual background of failures must not."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from observatory.detect.screen import candidate_countries
from observatory.series import SeriesCell

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def _hours(country: str, *, hours: int, probes: int, per_hour: int, noise: float, blocked: dict[int, int],
           seed: int) -> list[SeriesCell]:
    """Hourly cells of one network and platform; `blocked` maps an hour to the minutes of it that were blocked."""
    rng = random.Random(seed)
    cells = []
    for h in range(hours):
        share_blocked = blocked.get(h, 0) / 60
        bad = sum(1 for _ in range(per_hour) if rng.random() < share_blocked or rng.random() < noise)
        cells.append(SeriesCell(bucket=T0 + timedelta(hours=h), country=country, asn=64500, region=None,
                                platform="twitter", total=per_hour, ok=per_hour - bad, anomalous=bad, probes=probes,
                                anomalous_probes=min(bad, probes)))
    return cells


def test_a_ten_minute_block_within_an_hour_makes_its_country_a_candidate() -> None:
    cells = _hours("PK", hours=48, probes=20, per_hour=240, noise=0.03, blocked={30: 10}, seed=1)
    assert candidate_countries(cells) == {"PK"}


def test_a_steady_background_of_failures_is_not_a_candidate() -> None:
    for seed in range(5):
        cells = _hours("PK", hours=48, probes=20, per_hour=240, noise=0.03, blocked={}, seed=seed)
        assert candidate_countries(cells) == set(), seed


def test_a_country_blocked_throughout_stays_a_candidate() -> None:
    cells = _hours("IR", hours=48, probes=20, per_hour=240, noise=0.03, blocked={h: 60 for h in range(48)}, seed=2)
    assert candidate_countries(cells) == {"IR"}
