"""The hourly screen picks the countries worth the fine look: a short block inside an hour of steady probes must
pass it, a country's usual background of failures must not."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from observatory.detect.screen import candidate_countries, down_alarms, screen
from observatory.series import SeriesCell
from observatory.store.base import FailingProbe, TechniqueProbes

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


def _network(country: str, asn: int, *, hours: int, probes: int, per_probe_hour: int, platform: str = "twitter",
             bad_hours: frozenset[int] = frozenset(), down_hours: frozenset[int] = frozenset(),
             quiet_hours: frozenset[int] = frozenset(), kbps: float | None = None,
             slow_hours: frozenset[int] = frozenset()) -> list[SeriesCell]:
    """Hourly cells of one network and platform with no noise: every probe fails (or sees the platform down, or
    falls quiet, or is slow) in the hours named."""
    cells = []
    for h in range(hours):
        if h in quiet_hours:
            continue
        n = probes * per_probe_hour
        bad = n if h in bad_hours else 0
        down = n if h in down_hours else 0
        speed = None if kbps is None else (kbps / 20 if h in slow_hours else kbps)
        cells.append(SeriesCell(bucket=T0 + timedelta(hours=h), country=country, asn=asn, region=None,
                                platform=platform, total=n, ok=n - bad - down, anomalous=bad, down=down, probes=probes,
                                anomalous_probes=probes if bad else 0, down_probes=probes if down else 0,
                                median_kbps=speed))
    return cells


def test_three_small_networks_blocked_at_once_make_their_country_a_candidate() -> None:
    """One probe per network (each network alone is one probe's word) but three networks agree: an incident."""
    cells = [c for asn in (64501, 64502, 64503)
             for c in _network("BY", asn, hours=30, probes=1, per_probe_hour=4, bad_hours=frozenset({20, 21}))]
    cells += _network("BY", 64504, hours=30, probes=5, per_probe_hour=4)
    assert candidate_countries(cells) == {"BY"}


def test_a_platform_seen_down_in_one_network_makes_its_country_a_candidate() -> None:
    cells = _network("BR", 64510, hours=30, probes=4, per_probe_hour=4, down_hours=frozenset({12}))
    cells += _network("BR", 64511, hours=30, probes=4, per_probe_hour=4)
    assert candidate_countries(cells) == {"BR"}


def test_a_network_falling_quiet_makes_its_country_a_candidate() -> None:
    cells = _network("ET", 64520, hours=30, probes=6, per_probe_hour=4, quiet_hours=frozenset({15, 16}))
    cells += _network("ET", 64521, hours=30, probes=6, per_probe_hour=4)
    assert candidate_countries(cells) == {"ET"}


def test_a_throughput_collapse_makes_its_country_a_candidate() -> None:
    cells = _network("RU", 64530, hours=30, probes=6, per_probe_hour=4, kbps=4000.0,
                     slow_hours=frozenset({20, 21, 22}))
    assert candidate_countries(cells) == {"RU"}


def test_only_the_country_with_something_to_see_is_a_candidate() -> None:
    """Quiet countries beside an eventful one stay out: the fine look is spent where it can find something."""
    cells = _hours("PK", hours=48, probes=20, per_hour=240, noise=0.03, blocked={30: 10}, seed=1)
    for i, cc in enumerate(("KE", "NG", "GH")):
        cells += _hours(cc, hours=48, probes=20, per_hour=240, noise=0.03, blocked={}, seed=10 + i)
    assert candidate_countries(cells) == {"PK"}


def _lost(country: str, asn: int, hour: int, probes: list[str], region: str = "North") -> list[FailingProbe]:
    """Probes whose control and every target failed for the whole hour (4 measurements each)."""
    return [FailingProbe(bucket=T0 + timedelta(hours=hour), country=country, asn=asn, region=region, probe=p,
                         platform=platform, total=4, anomalous=4)
            for p in probes for platform in ("twitter", "control")]


def _all_lost(country: str, asn: int, hour: int, probes: int, total: int) -> list[SeriesCell]:
    """The hour's cells of a network where `probes` of `total` probes lost everything (twitter and control)."""
    return [SeriesCell(bucket=T0 + timedelta(hours=hour), country=country, asn=asn, region=None, platform=platform,
                       total=4 * total, ok=4 * (total - probes), anomalous=4 * probes, probes=total,
                       anomalous_probes=probes) for platform in ("twitter", "control")]


def test_probes_that_lost_everything_count_as_connectivity_witnesses_only_when_three_agree() -> None:
    quiet = [c for h in range(30) if h != 10 for c in _all_lost("KE", 64540, h, 0, 6)]
    two = quiet + _all_lost("KE", 64540, 10, 2, 6)
    assert screen(two, failing=_lost("KE", 64540, 10, ["a", "b"]), techniques=[])[0] == set()
    three = quiet + _all_lost("KE", 64540, 10, 3, 6)
    assert screen(three, failing=_lost("KE", 64540, 10, ["a", "b", "c"]), techniques=[])[0] == {"KE"}


def test_probes_losing_everything_need_min_probes_even_in_one_region() -> None:
    # two probes of two networks in one region are two faults as likely as one cut (confirmation needs three)
    cells = [c for asn in (64541, 64542) for h in range(30) for c in _all_lost("KE", asn, h, 1 if h == 10 else 0, 4)]
    two = _lost("KE", 64541, 10, ["a"], region="Coast") + _lost("KE", 64542, 10, ["b"], region="Coast")
    assert screen(cells, failing=two, techniques=[])[0] == set()
    three = two + _lost("KE", 64542, 10, ["c"], region="Coast")
    assert screen(cells, failing=three, techniques=[])[0] == {"KE"}


def test_a_restriction_needs_probes_agreeing_on_a_technique() -> None:
    cells = [c for asn in (64550, 64551, 64552)
             for c in _network("IR", asn, hours=30, probes=1, per_probe_hour=4, bad_hours=frozenset({12, 13}))]
    agree = [TechniqueProbes(bucket=T0 + timedelta(hours=h), country="IR", asn=asn, platform="twitter",
                             technique="tls_interference", probes=1)
             for asn in (64550, 64551, 64552) for h in (12, 13)]
    assert screen(cells, failing=[], techniques=agree)[0] == {"IR"}
    kinds = {64550: "tls_interference", 64551: "tcp_reset", 64552: "dns_tampering"}
    scattered = [TechniqueProbes(bucket=t.bucket, country="IR", asn=t.asn, platform="twitter",
                                 technique=kinds[t.asn], probes=1) for t in agree]
    assert screen(cells, failing=[], techniques=scattered)[0] == set()


def test_a_platform_seen_down_is_looked_at_in_fine_buckets() -> None:
    cells = _network("BR", 64560, hours=30, probes=4, per_probe_hour=4, down_hours=frozenset({12}))
    countries, down_hours = screen(cells, failing=[], techniques=[])
    assert countries == set() and down_hours == [("BR", 64560, "twitter", int((T0 + timedelta(hours=12)).timestamp()))]
    t = T0 + timedelta(hours=12)
    together = [(t + timedelta(minutes=5 * i), "BR", 64560, "twitter", 2, 2) for i in range(2)]
    assert down_alarms(together) == {"BR"}
    spread = [(t + timedelta(minutes=5 * i), "BR", 64560, "twitter", 2, 1 if i % 4 == 0 else 0) for i in range(12)]
    assert down_alarms(spread) == set()

