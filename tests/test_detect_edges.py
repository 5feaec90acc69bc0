"""Onset, end, scope and independent evidence on plain series data: the detector's edge cases.

Each test builds the series a sparse or faulty population would give and checks the estimate against the
change the data was built with (never against what the code happens to return).
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from typing import Any

from detect_world import T0, Event, Net, World

from observatory.detect import DetectConfig, detect_incidents
from observatory.detect.cusum import scan_share
from observatory.detect.episodes import CONNECTIVITY, RESTRICTION, Episode
from observatory.detect.incidents import Cluster, confirmed_at
from observatory.detect.probes import isolated_spans
from observatory.detect.series import fold
from observatory.series import Witness

STEP = 300
CFG = DetectConfig()
DAY = 86400


def _quiet(hours: float, every: int = 3, n: int = 1) -> list[tuple[int, int, int]]:
    """A healthy series: `n` probes every `every` buckets for `hours`, from t=0."""
    return [(i * STEP, n, 0) for i in range(0, int(hours * 12), every)]


def test_a_stray_failure_before_a_block_does_not_pull_the_onset_early() -> None:
    onset = 2 * DAY
    pts = [p for p in _quiet(48) if p[0] < onset]
    # one failure two hours before, then healthy measurements (a sparse series: one probe every 15 minutes)
    pts = [(t, n, 1 if t == onset - 2 * 3600 else 0) for t, n, _ in pts]
    pts += [(onset + i * 3 * STEP, 1, 1) for i in range(12)]
    [alarm] = scan_share(pts, CFG, now=onset + 12 * 3 * STEP)
    assert alarm.start == onset


def test_a_near_total_block_ends_after_a_few_healthy_measurements() -> None:
    onset, end = 2 * DAY, 2 * DAY + 6 * 3600
    pts = [p for p in _quiet(48) if p[0] < onset]
    pts += [(t, 1, 1) for t in range(onset, end, 3 * STEP)]
    pts += [(t, 1, 0) for t in range(end, end + 6 * 3600, 3 * STEP)]
    [alarm] = scan_share(pts, CFG, now=end + 6 * 3600)
    # the end is known to lie after the last failure and before the first success: both are recorded
    assert alarm.end == end - 3 * STEP + STEP
    assert alarm.after == end


def _episode(asn: int, start: int, end: int | None, *, before: int | None = None, after: int | None = None,
             spacing: int = STEP, witnesses: list[tuple[int, frozenset[Witness]]] | None = None,
             family: str = RESTRICTION, regions: set[str] | None = None) -> Episode:
    return Episode(family=family, country="PK", asn=asn, platform="twitter", start=start, alarm=start + STEP,
                   end=end, techniques=Counter(), witnesses=witnesses or [], regions=regions or {"North"},
                   before=before, after=after, spacing=spacing)


def _keys(*names: str, technique: str = "tls_interference") -> frozenset[Witness]:
    return frozenset(Witness(technique, n) for n in names)


def test_onset_is_midway_into_a_sampling_gap_but_not_further_than_the_usual_spacing() -> None:
    t = 10 * DAY
    w = [(t, _keys("p:a", "p:b")), (t + STEP, _keys("p:c"))]
    sparse = Cluster(family=RESTRICTION, country="PK",
                     episodes=[_episode(1, t, t + 3600, before=t - 6 * STEP, spacing=4 * STEP, witnesses=w)])
    # the last healthy bucket ended 5 buckets before the first failure: the middle is 2 buckets earlier
    assert sparse.onset(STEP) == t - 2 * STEP
    capped = Cluster(family=RESTRICTION, country="PK",
                     episodes=[_episode(1, t, t + 3600, before=t - 6 * STEP, spacing=STEP, witnesses=w)])
    assert capped.onset(STEP) == t - STEP  # a gap much longer than the spacing is missing data
    dense = Cluster(family=RESTRICTION, country="PK",
                    episodes=[_episode(1, t, t + 3600, before=t - STEP, witnesses=w)])
    assert dense.onset(STEP) == t


def test_edges_lie_between_the_nearest_normal_data_of_the_incidents_regions_and_its_failures() -> None:
    t = 10 * DAY
    # one volunteer series: healthy at t - 13 buckets, then nothing until a failure at t and another at t + 3
    # (nothing normal in between: the first failure is the event's, not a stray); its last failure at
    # t + 40, healthy again at t + 47
    w = [(t, _keys("r:1")), (t + 3 * STEP, _keys("r:2")), (t + 40 * STEP, _keys("r:3"))]
    own = _episode(1, t, t + 41 * STEP, witnesses=w, spacing=12 * STEP, regions={"North"})
    own.normal = ((t - 13 * STEP, "North"), (t - 2 * STEP, "South"), (t + 47 * STEP, "North"))
    c = Cluster(family=RESTRICTION, country="PK", episodes=[own])
    # the change lies between the end of the healthy bucket and the first failure: 12 buckets, the middle
    # 6 buckets before it; "South" is not a region of the incident and bounds nothing
    assert c.onset(STEP, {"North"}) == t - 6 * STEP
    # the end after the last failure, midway to the healthy bucket (6 buckets later)
    assert c.finish(STEP, {"North"}) == t + 41 * STEP + 3 * STEP
    # a stray failure followed by normal data before the second one does not start the incident
    stray = [(t - 20 * STEP, _keys("r:0"))] + w
    early = _episode(1, t - 20 * STEP, t + 41 * STEP, witnesses=stray, spacing=12 * STEP, regions={"North"})
    early.normal = ((t - 21 * STEP, "North"), (t - STEP, "North"))
    assert Cluster(family=RESTRICTION, country="PK", episodes=[early]).onset(STEP, {"North"}) == t


def test_one_late_failure_does_not_stretch_the_end_when_another_series_was_normal_again() -> None:
    t = 10 * DAY
    w = [(t, _keys("p:a", "p:b")), (t + 11 * STEP, _keys("p:a", "p:b")), (t + 60 * STEP, _keys("p:c"))]
    other = [(t, _keys("p:a", "p:b")), (t + 11 * STEP, _keys("p:a", "p:b"))]
    c = Cluster(family=RESTRICTION, country="PK", episodes=[
        _episode(1, t, t + 61 * STEP, witnesses=w),
        _episode(1, t, t + 12 * STEP, after=t + 12 * STEP, witnesses=other),  # the same probes, fine again
    ])
    assert c.finish(STEP) == t + 12 * STEP


def test_a_sparse_series_last_failure_ends_the_incident_when_nothing_contradicts_it() -> None:
    t = 10 * DAY
    # volunteers at night: hours between runs, every run still failing, then a healthy one
    w = [(t, _keys("r:1")), (t + 12 * STEP, _keys("r:2")), (t + 80 * STEP, _keys("r:3"))]
    c = Cluster(family=RESTRICTION, country="PK", episodes=[
        _episode(1, t, t + 81 * STEP, after=t + 100 * STEP, spacing=12 * STEP, witnesses=w)])
    # after the last failure, midway to the next (healthy) run, at most the usual spacing
    assert c.finish(STEP) == t + 81 * STEP + 9 * STEP


def test_one_volunteer_installation_failing_every_run_is_not_a_confirmed_connectivity_loss() -> None:
    t = 10 * DAY
    runs = [f"r:run{i}" for i in range(6)]
    where = {k: (17557, "Sindh") for k in runs}
    # six runs one after the other, each under a new report id: possibly one installation
    one_by_one = [(t + i * 6 * STEP, _keys(k, technique="unreachable")) for i, k in enumerate(runs)]
    c = Cluster(family=CONNECTIVITY, country="PK", episodes=[
        _episode(17557, t, t + 40 * STEP, witnesses=one_by_one, family=CONNECTIVITY, regions={"Sindh"})])
    assert confirmed_at(c, CFG, frozenset(), where)[0] is None
    # three runs failing in the same bucket come from three installations
    at_once = [(t, _keys(*runs[:3], technique="unreachable"))]
    c = Cluster(family=CONNECTIVITY, country="PK", episodes=[
        _episode(17557, t, t + 40 * STEP, witnesses=at_once, family=CONNECTIVITY, regions={"Sindh"})])
    assert confirmed_at(c, CFG, frozenset(), where)[0] == t + STEP


def test_probes_of_a_region_losing_its_connection_together_are_not_isolated() -> None:
    day2 = T0 + timedelta(days=2)
    cut = (day2 + timedelta(hours=3), day2 + timedelta(hours=6))
    w = World(countries={"PK": [Net(17557, probes=12), Net(45669)]}, events=[
        Event(kind="cut", start=cut[0], end=cut[1], asns=(17557,), regions=("North",)),
    ])
    tracks = fold(w.cells(), STEP)
    spans = isolated_spans(tracks)
    lo, hi = (int(t.timestamp()) for t in cut)
    # the whole North region of the network lost its connection: nobody there failed alone during the cut
    # (a probe's random failure of the control on another day is its own, and may well be isolated)
    assert not [(k, a, b) for k, ss in spans.items() for a, b in ss if a <= hi and b >= lo]
    assert spans, "the world's random failures of single probes should be found isolated"


def test_a_regional_loss_stays_regional_with_a_faulty_probe_elsewhere_in_an_affected_network() -> None:
    day2 = T0 + timedelta(days=2)
    onset, end = day2 + timedelta(hours=6), day2 + timedelta(hours=14)
    nets = [Net(17557, regions=("North", "South", "East"), probes=18),
            Net(45669, regions=("North", "South", "East"), probes=18), Net(23674, regions=("North", "South"))]
    w = World(countries={"PK": nets}, events=[
        Event(kind="cut", start=onset, end=end, asns=(17557, 45669), regions=("East",)),
        # one probe of an affected network, in another region, fails everything for a while
        Event(kind="faulty_all", start=onset + timedelta(hours=2), end=onset + timedelta(hours=5),
              asns=(17557,), regions=("North",), probe=0),
    ])
    cells = w.cells()
    for c in cells:  # the faulty probe: every target, the control included, fails for those hours
        if (c.asn == 17557 and c.region == "North" and onset + timedelta(hours=2) <= c.bucket
                < onset + timedelta(hours=5) and c.probes and 0 % 3 == (int(c.bucket.timestamp()) // STEP) % 3):
            key = "p:17557-0"
            c.anomalous_keys = tuple(sorted({*c.anomalous_keys, key}))
            c.witnesses = tuple(sorted({*c.witnesses, Witness("unreachable", key)}))
            c.anomalous_probes = len(c.anomalous_keys)
            c.anomalous += 1
            c.by_technique["unreachable"] = c.by_technique.get("unreachable", 0) + 1
    [inc] = [i for i in detect_incidents(cells) if i.kind == "connectivity_loss"]
    assert inc.scope == "regional" and inc.regions == ("East",)
    assert abs((inc.start - onset).total_seconds()) <= 5 * 60
    assert inc.end is not None and abs((inc.end - end).total_seconds()) <= 15 * 60


def test_an_alarm_ends_when_a_sparse_series_turns_healthy_and_then_falls_quiet() -> None:
    onset, end = 2 * DAY, 2 * DAY + 6 * 3600
    pts = [p for p in _quiet(48, every=6) if p[0] < onset]
    pts += [(t, 1, 1) for t in range(onset, end, 6 * STEP)]
    # after the event only two healthy runs, then the data stops (the end of the data, not of the world)
    pts += [(end + 2 * STEP, 1, 0), (end + 10 * STEP, 1, 0)]
    now = end + 10 * STEP + 3 * 3600
    [alarm] = scan_share(pts, CFG, now=now)
    assert alarm.end is not None and end - 6 * STEP < alarm.end <= end + 2 * STEP


def test_an_alarm_stays_open_while_failures_continue_sparsely() -> None:
    onset = 2 * DAY
    pts = [p for p in _quiet(48, every=6) if p[0] < onset]
    pts += [(t, 1, 1) for t in range(onset, onset + 6 * 3600, 6 * STEP)]
    pts += [(onset + 6 * 3600 + 2 * STEP, 1, 0), (onset + 6 * 3600 + 8 * STEP, 1, 1)]
    [alarm] = scan_share(pts, CFG, now=onset + 6 * 3600 + 9 * STEP)
    assert alarm.end is None


def test_a_pair_of_stray_failures_hours_before_a_block_stays_out_of_its_stretch() -> None:
    # two probes fail in one bucket two hours before the block, healthy data between: judged at the whole
    # alarm's diluted share the pair would join the stretch; judged at each run's own share it does not
    onset = 2 * DAY
    pts = [(t, 2, 2) if t == onset - 2 * 3600 else (t, n, 0) for t, n, _ in _quiet(48) if t < onset]
    pts += [(onset + i * 3 * STEP, 1, 1) for i in range(8)]
    pts += [(t, 1, 0) for t in range(onset + 8 * 3 * STEP, onset + 16 * 3 * STEP, 3 * STEP)]
    [alarm] = scan_share(pts, CFG, now=onset + 16 * 3 * STEP)
    assert alarm.start == onset


def test_failures_of_other_techniques_around_a_block_do_not_move_its_edges() -> None:
    onset, end = 2 * DAY, 2 * DAY + 4 * 3600
    pts = [p for p in _quiet(48) if p[0] < onset]
    pts += [(t, 1, 1) for t in range(onset, end, 3 * STEP)]
    stray = [end, end + 3 * STEP]  # a flaky probe's failures of other kinds just after the block
    pts += [(t, 1, 1 if t in stray else 0) for t in range(end, end + 8 * 3600, 3 * STEP)]
    kinds = {t: Counter({"tls_interference": k}) for t, _n, k in pts if k and t < end}
    kinds |= {t: Counter({"dns_tampering" if i else "tcp_reset": 1}) for i, t in enumerate(stray)}
    [alarm] = scan_share(pts, CFG, now=end + 8 * 3600, techniques=kinds)
    assert alarm.end == end - 3 * STEP + STEP


def _fail_at_every_step(cells: list[Any], platform: str, lo: datetime, hi: datetime) -> None:
    """Every probe's measurements of `platform` between lo and hi fail at every step."""
    for c in cells:
        if c.platform == platform and lo <= c.bucket < hi and c.probes:
            keys = tuple(f"p:{c.asn}-{i}:{int(c.bucket.timestamp())}" for i in range(c.probes))
            c.anomalous_keys = keys
            c.witnesses = tuple(Witness("unreachable", k) for k in keys)
            c.anomalous_probes = c.anomalous = c.probes
            c.by_technique = {"unreachable": c.probes}


def test_one_platform_failing_at_every_step_is_not_a_connectivity_loss() -> None:
    day2 = T0 + timedelta(days=2)
    cells = World(countries={"PK": [Net(17557, probes=9), Net(45669, probes=9)]}).cells()
    lo, hi = day2 + timedelta(hours=3), day2 + timedelta(hours=5)
    _fail_at_every_step(cells, "youtube", lo, hi)  # the control and the other platforms stay fine
    assert not [i for i in detect_incidents(cells) if i.kind == "connectivity_loss"]
    _fail_at_every_step(cells, "control", lo, hi)  # the same failures with the control failing too are one
    assert [i for i in detect_incidents(cells) if i.kind == "connectivity_loss"]


def test_a_faulty_probe_failing_on_after_a_shutdown_does_not_stretch_its_end() -> None:
    t, end = 10 * DAY, 10 * DAY + 20 * STEP
    crowd = [(b, _keys(*(f"p:{i}" for i in range(5)), technique="unreachable")) for b in range(t, end, STEP)]
    late = [(b, _keys("p:faulty", technique="unreachable")) for b in range(t, end + 40 * STEP, STEP)]
    c = Cluster(family=CONNECTIVITY, country="PK", episodes=[
        _episode(17557, t, end, after=end, witnesses=crowd, family=CONNECTIVITY),
        _episode(45669, t, end + 40 * STEP, witnesses=late, family=CONNECTIVITY),
    ])
    assert c.finish(STEP) == end


def test_an_incident_ends_when_its_sparse_series_was_seen_normal_after_the_others_ended() -> None:
    t, end = 10 * DAY, 10 * DAY + 24 * STEP
    dense = [(b, _keys(f"p:{b}")) for b in range(t, end, STEP)]
    # one run every half hour, the last one failing just after the dense network's block had ended
    sparse = [(b, _keys(f"r:{b}")) for b in range(t, end + 6 * STEP, 6 * STEP)]
    closed = _episode(17557, t, end, after=end, witnesses=dense)
    still = _episode(45669, t, None, witnesses=sparse)
    c = Cluster(family=RESTRICTION, country="PK", episodes=[closed, still])
    assert c.finish(STEP) is None  # nothing says the sparse network's block is over
    still.normal = ((end + 12 * STEP, "North"),)  # a healthy run since
    got = c.finish(STEP)
    assert got is not None and end + STEP <= got <= end + 12 * STEP
    # its last failure came before the others ended, and nothing since: it says nothing either way
    still.witnesses, still.normal = sparse[:-1], ()
    assert c.finish(STEP) is not None


def _tls(asn: int, platform: str, start: int, end: int, probes: int, family: str = RESTRICTION) -> Episode:
    keys = frozenset(Witness("tls_interference", f"p:{asn}-{i}") for i in range(probes))
    return Episode(family=family, country="PK", asn=asn, platform=platform, start=start, alarm=start + STEP,
                   end=end, techniques=Counter({"tls_interference": 3 * probes}), witnesses=[(start, keys)],
                   regions={"North"}, platforms={"twitter"} if platform in ("*", "twitter") else {platform})


def test_an_all_platforms_episode_over_days_before_a_block_does_not_join_it() -> None:
    # a network's all-platforms track is placed after the platforms' own tracks; one that alarmed (a flaky
    # hour) four days before a block of the same technique is no part of it, and must not stretch it back
    from observatory.detect.cluster import cluster
    block = 10 * DAY
    early = _tls(2, "*", block - 4 * DAY, block - 4 * DAY + 2 * STEP, 3)
    episodes = [_tls(1, "twitter", block, block + 6 * 3600, 4), _tls(2, "twitter", block, block + 6 * 3600, 4), early]
    clusters = cluster(episodes, CFG)
    [with_block] = [c for c in clusters if any(e.start == block for e in c.episodes)]
    assert with_block.start == block and early not in with_block.episodes


def test_a_platform_failing_while_it_is_down_everywhere_is_its_outage_not_a_restriction() -> None:
    # an IM test (no control of its own) sees WhatsApp fail in one country during WhatsApp's worldwide outage,
    # which the measurements with a control showed down in three countries: one outage, not a block
    from observatory.detect.cluster import cluster
    from observatory.detect.episodes import OUTAGE
    t = 10 * DAY
    down = [Episode(family=OUTAGE, country=cc, asn=asn, platform="whatsapp", start=t, alarm=t + STEP,
                    end=t + 6 * 3600, platforms={"whatsapp"}, regions={"North"},
                    witnesses=[(t, frozenset(Witness("down", f"down:{asn}:{i}") for i in range(3)))])
            for cc, asn in (("DE", 1), ("BR", 2), ("US", 3))]
    im = [_tls(asn, "whatsapp", t + 10 * STEP, t + 3 * 3600, 3) for asn in (4, 5)]
    for e in im:
        e.country = "IN"
    clusters = cluster(down + im, CFG)
    assert [c.family for c in clusters] == [OUTAGE]
    assert {e.country for e in clusters[0].episodes} == {"DE", "BR", "US", "IN"}


def test_a_block_lifted_before_the_platforms_outage_began_stays_a_block() -> None:
    # the lab's techniques scenario: Facebook reset in one country for twenty minutes, lifted, and forty minutes
    # later Facebook down everywhere. The block is another event, not the outage's footprint
    from observatory.detect.cluster import cluster
    from observatory.detect.episodes import OUTAGE, RESTRICTION
    t = 10 * DAY
    down = [Episode(family=OUTAGE, country=cc, asn=asn, platform="facebook", start=t, alarm=t + STEP,
                    end=t + 6 * 3600, platforms={"facebook"}, regions={"North"},
                    witnesses=[(t, frozenset(Witness("down", f"down:{asn}:{i}") for i in range(3)))])
            for cc, asn in (("DE", 1), ("BR", 2), ("US", 3))]
    block = [_tls(asn, "facebook", t - 60 * 60, t - 40 * 60, 3) for asn in (4, 5)]
    for e in block:
        e.country = "IN"
    clusters = cluster(down + block, CFG)
    assert sorted(c.family for c in clusters) == sorted([OUTAGE, RESTRICTION])


KINDS = ("dns_tampering", "tcp_reset", "tls_interference", "http_failure", "unreachable")


def _noisy_history(onset: int) -> tuple[list[tuple[int, int, int]], dict[int, Counter[str]]]:
    """Two days of one probe every 15 minutes, one run in 25 failing, the failures spread over every kind."""
    pts = [p for p in _quiet(48) if p[0] < onset]
    pts = [(t, n, 1 if i % 25 == 7 else 0) for i, (t, n, _) in enumerate(pts)]
    kinds = {t: Counter({KINDS[j % len(KINDS)]: 1}) for j, t in enumerate(t for t, _n, k in pts if k)}
    return pts, kinds


def test_failures_that_keep_one_technique_alarm_sooner_than_scattered_noise_would() -> None:
    # a failure of one kind is rarer under "noise" than a failure of any kind (noise spreads over five kinds),
    # so failures that keep one technique weigh more each
    onset = 2 * DAY
    pts, kinds = _noisy_history(onset)
    block = [(onset + i * 3 * STEP, 1, 1) for i in range(8)]
    kinds |= {t: Counter({"dns_tampering": 1}) for t, _n, _k in block}
    pts += block
    [plain] = scan_share(pts, CFG, now=onset + 8 * 3 * STEP, techniques=kinds)
    [alarm] = scan_share(pts, CFG, now=onset + 8 * 3 * STEP, techniques=kinds, by_technique=True)
    assert alarm.start == plain.start == onset
    # a run sooner (against any failure, five; against DNS's own rate, four: the threshold is raised for
    # running five tests, and the failures before the alarm join the baseline in both tests)
    assert plain.alarm == onset + 4 * 3 * STEP + STEP
    assert alarm.alarm == onset + 3 * 3 * STEP + STEP


def test_one_test_per_technique_pays_for_their_number_in_evidence() -> None:
    # DNS, a healthy run, DNS, DNS: 11 nats against DNS's own rate, short of the threshold raised by log(5) for
    # running five tests, and 7 against any failure: no alarm (without the margin, five tests would cry wolf
    # about five times as often as one)
    onset = 2 * DAY
    pts, kinds = _noisy_history(onset)
    burst = [(onset + i * 3 * STEP, 1, 0 if i == 1 or i > 3 else 1) for i in range(12)]
    kinds |= {t: Counter({"dns_tampering": 1}) for t, _n, k in burst if k}
    pts += burst
    assert scan_share(pts, CFG, now=onset + 12 * 3 * STEP, techniques=kinds, by_technique=True) == []


def test_an_operators_block_seen_before_the_incident_shares_its_platform_still_joins_it() -> None:
    # one decision, two operators: network 1 blocks Telegram and TikTok by TLS, network 2 TikTok by DNS; the
    # order the episodes come in is network 1's Telegram, network 2's TikTok (seen 70 minutes late, its last
    # data hours before), then network 1's TikTok (likewise). Judged against the incident as it stood when it came,
    # network 2's TikTok shared nothing with it; as the incident finally stands, it does (failed without
    # `cluster._merge_late_joiners`: two incidents)
    from observatory.detect.cluster import cluster
    t = 10 * DAY
    first = _tls(1, "telegram", t, t + 6 * 3600, 4)
    late = _tls(2, "tiktok", t + 70 * 60, t + 6 * 3600, 4)
    late.techniques = Counter({"dns_tampering": 12})
    late.witnesses = [(late.start, frozenset(Witness("dns_tampering", f"p:2-{i}") for i in range(4)))]
    late.before = t - 4 * 3600
    then = _tls(1, "tiktok", t + 100 * 60, t + 6 * 3600, 4)
    then.before = t - 3600  # sparse too: its block may have begun with the incident
    [one] = cluster([first, late, then], CFG)
    assert {(e.asn, e.platform) for e in one.episodes} == {(1, "telegram"), (2, "tiktok"), (1, "tiktok")}
