"""The families of modelling choices really change the generated world, each the way its option says.

Every test compares a drawn (or hand-set) model with the historical default on the same scenario and seed,
reading only the generated lines (and, for clocks, the world): what a detector would see.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from observatory.incident import Incident
from observatory.measurement import parse_measurement
from observatory.simulate import Generator, Model, draw_model, load_scenario, truth
from observatory.simulate.families import DIMENSIONS
from observatory.simulate.world import DEDICATED, VOLUNTEER, build_world

ROOT = Path(__file__).resolve().parent.parent
SCENARIO = """
name = "fam"
seed = {seed}
start = "2024-01-01T00:00:00Z"
end = "2024-01-{end_day:02d}T00:00:00Z"
interval_minutes = {interval}
targets = ["twitter", "facebook", "control"]
[noise]
failure_rate = 0.0
probe_fault_rate = 0.0
late_share = 0.0
duplicate_share = 0.0
[[country]]
code = "PK"
timezone = "Asia/Karachi"
  [[country.network]]
  asn = 17557
  name = "PTCL"
  type = "fixed"
  probes = {probes}
  regions = ["Punjab", "Sindh"]
  [[country.network]]
  asn = 45669
  name = "Jazz"
  type = "mobile"
  probes = 2
  regions = ["Punjab"]
{events}
"""
THROTTLE = """
[[event]]
kind = "throttling"
country = "PK"
platforms = ["twitter"]
start = "2024-01-04T00:00:00Z"
end = "2024-01-05T00:00:00Z"
"""


def scenario(tmp_path: Path, *, seed: int = 5, end_day: int = 11, interval: int = 60, probes: int = 3,
             events: str = "") -> object:
    p = tmp_path / "fam.toml"
    p.write_text(SCENARIO.format(seed=seed, end_day=end_day, interval=interval, probes=probes, events=events))
    return load_scenario(p)


def lines(sc: object, activity: str = DEDICATED, model: Model | None = None) -> list[bytes]:
    return [line for _, line in Generator(sc, activity, model).lines()]  # type: ignore[arg-type]


def docs(sc: object, activity: str = DEDICATED, model: Model | None = None) -> list[dict]:
    return [json.loads(line) for line in lines(sc, activity, model)]


def _t(doc: dict) -> float:
    return datetime.strptime(doc["measurement_start_time"], "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC).timestamp()


def test_draws_are_seeded_and_cover_every_option() -> None:
    assert draw_model(3, DEDICATED) == draw_model(3, DEDICATED)
    seen: dict[str, set[str]] = defaultdict(set)
    for seed in range(60):
        for option, value in draw_model(seed, DEDICATED).options.items():
            seen[option].add(value)
    assert {d: set(o) for d, o in DIMENSIONS.items()} == dict(seen)
    assert all(draw_model(s, VOLUNTEER).options["software"] == "ooniprobe" for s in range(20))


# sha256 of the dedicated stream of scenario(end_day=3) as the simulator wrote it before the families
# existed (commit 341d222): the default model must not change a byte of it.
HISTORICAL_DEDICATED = "942663a3af49f115189a7821605380a143839edf8532a00c520f07dd9c861d3f"


def test_the_default_model_is_the_historical_simulator(tmp_path: Path) -> None:
    sc = scenario(tmp_path, end_day=3)
    for model in (None, Model()):
        h = hashlib.sha256()
        for line in lines(sc, DEDICATED, model):
            h.update(line + b"\n")
        assert h.hexdigest() == HISTORICAL_DEDICATED
    assert lines(sc, VOLUNTEER) == lines(sc, VOLUNTEER, Model())


def test_churned_probes_are_absent_for_days_then_come_back(tmp_path: Path) -> None:
    sc = scenario(tmp_path, end_day=21)
    churn = Model(options={"churn": "heavy"}, absence_rate=0.15, absence_days=(2.0, 3.0))

    def longest_gaps(model: Model | None) -> list[float]:
        times: dict[str, list[float]] = defaultdict(list)
        for line in lines(sc, DEDICATED, model):
            m = parse_measurement(line)
            if m.probe_asn == 17557:  # fixed probes: never asleep at night
                times[m.probe_key].append(m.start_time.timestamp())
        return [max(b - a for a, b in zip(sorted(ts), sorted(ts)[1:], strict=False)) / 86400
                for ts in times.values()]

    assert max(longest_gaps(None)) < 0.5
    gaps = longest_gaps(churn)
    assert sum(g >= 1.9 for g in gaps) >= 2  # several probes vanished for two days or more ...
    assert all(g < 10 for g in gaps)  # ... and came back


def test_duplicates_share_the_uid_and_late_uploads_arrive_after_later_measurements(tmp_path: Path) -> None:
    sc = scenario(tmp_path, end_day=11)
    model = Model(options={"uploads": "late-duplicated"}, late_share=0.25, late_max_hours=72.0,
                  duplicate_share=0.08)
    plain = docs(sc, VOLUNTEER)
    assert len({d["measurement_uid"] for d in plain}) == len(plain)
    out = docs(sc, VOLUNTEER, model)
    uids = Counter(d["measurement_uid"] for d in out)
    twice = [u for u, n in uids.items() if n == 2]
    assert len(twice) > 0.03 * len(uids)
    # a duplicate is the same document, uploaded again
    by_uid: dict[str, list[dict]] = defaultdict(list)
    for d in out:
        by_uid[d["measurement_uid"]].append(d)
    assert all(by_uid[u][0] == by_uid[u][1] for u in twice)
    # late: in upload order, measurements taken more than a day before ones already uploaded
    # beyond the default window (24 h, plus up to an hour for the duplicate of a late upload)
    assert sum(b > 26 * 3600 for b in _behind(out)) > 10
    assert max(_behind(plain)) < 3600  # the scenario itself asks for no late uploads


def _behind(out: list[dict]) -> list[float]:
    """Per line in upload order: how long before the latest measurement already uploaded it was taken."""
    latest, behind = 0.0, []
    for d in out:
        t = _t(d)
        behind.append(latest - t)
        latest = max(latest, t)
    return behind


def test_ooni_style_throttled_documents_carry_timings_and_no_x_download(tmp_path: Path) -> None:
    sc = scenario(tmp_path, end_day=7, interval=30, events=THROTTLE)
    ev_start, ev_end = datetime(2024, 1, 4, tzinfo=UTC).timestamp(), datetime(2024, 1, 5, tzinfo=UTC).timestamp()
    for style, model in (("0.4.3", None), ("0.5.28", Model(options={"versions": "0.5"}, share_05=1.0))):
        inside: list[float] = []
        outside: list[float] = []
        for d in docs(sc, VOLUNTEER, model):
            tk = d["test_keys"]
            assert d["test_version"] == style and d["software_name"] == "ooniprobe"
            assert "x_download" not in tk and "x_download" not in tk["control"]
            if d["annotations"]["platform"] != "twitter" or tk["requests"][0]["response"] is None:
                continue
            reads = [e for e in tk["network_events"] if e["operation"] == "read"]
            assert reads and all(e["num_bytes"] > 0 and e["t"] > 0 for e in reads)
            assert tk["requests"][0]["t"] >= reads[-1]["t"] - 1e-6 or tk["requests"][0]["failure"]
            # throughput of the body as OONI's own fields show it: bytes read over the time they took
            kbps = sum(e["num_bytes"] for e in reads) * 8 / 1000 / (reads[-1]["t"] - tk["tls_handshakes"][0]["t"])
            t = _t(d)
            if ev_start + 60 <= t < ev_end - 60:
                inside.append(kbps)
            elif not ev_start - 60 <= t < ev_end + 60:
                outside.append(kbps)
        assert inside and outside
        assert sorted(inside)[len(inside) // 2] * 10 < sorted(outside)[len(outside) // 2], style
    # our own probe keeps its x_download
    assert all("x_download" in d["test_keys"] for d in docs(sc, DEDICATED)[:50])


def test_v05_documents_have_their_layout_and_mixed_worlds_have_both(tmp_path: Path) -> None:
    sc = scenario(tmp_path, end_day=4, interval=30, events="")
    mixed = Model(options={"versions": "mixed"}, share_05=0.5)
    out = docs(sc, VOLUNTEER, mixed)
    versions = Counter(d["test_version"] for d in out)
    assert versions["0.4.3"] > 0.3 * len(out) and versions["0.5.28"] > 0.3 * len(out)
    for d in out:
        tk = d["test_keys"]
        ops = {e["operation"] for e in tk["network_events"]}
        if d["test_version"] == "0.5.28":
            assert tk["x_blocking_flags"] == 32 and tk["tcp_connect"][0]["transaction_id"] >= 1
            assert "bytes_received_cumulative" in ops and all("t0" in e for e in tk["network_events"])
        else:
            assert "x_blocking_flags" not in tk and "bytes_received_cumulative" not in ops
    # one run is one version of the app: all its targets share it
    per_report: dict[str, set[str]] = defaultdict(set)
    for d in out:
        per_report[d["report_id"]].add(d["test_version"])
    assert all(len(v) == 1 for v in per_report.values())


def _hour_profile(out: list[dict]) -> Counter[int]:
    tz = ZoneInfo("Asia/Karachi")
    return Counter(datetime.fromtimestamp(_t(d), UTC).astimezone(tz).hour for d in out)


def test_volunteer_habits_move_the_hours_they_measure(tmp_path: Path) -> None:
    sc = scenario(tmp_path, end_day=15, interval=30, probes=6)
    evening = _hour_profile(docs(sc, VOLUNTEER))
    office = _hour_profile(docs(sc, VOLUNTEER, Model(options={"hours": "office"}, shapes=("office",))))

    def share(c: Counter[int], hours: range) -> float:
        return sum(c[h] for h in hours) / sum(c.values())

    assert share(evening, range(19, 23)) > 2 * share(evening, range(9, 12))
    assert share(office, range(9, 12)) > 2 * share(office, range(19, 23))


def test_weekends_change_activity(tmp_path: Path) -> None:
    sc = scenario(tmp_path, end_day=29, interval=30, probes=6)  # four weeks from Monday 1 January 2024
    model = Model(options={"hours": "flat"}, shapes=("flat",), weekend=0.3)
    days = Counter(datetime.fromtimestamp(_t(d), UTC).weekday() >= 5 for d in docs(sc, VOLUNTEER, model))
    per_weekend_day, per_weekday = days[True] / 8, days[False] / 20
    assert per_weekend_day < 0.5 * per_weekday


def test_a_resolver_fault_fails_a_whole_network_for_hours(tmp_path: Path) -> None:
    sc = scenario(tmp_path, end_day=15, interval=15)
    model = Model(options={"faults": "resolver"}, resolver_fault_rate=0.3)

    def worst_hour(model: Model | None) -> float:
        cells: dict[tuple[int, int], list[bool]] = defaultdict(list)
        for d in docs(sc, DEDICATED, model):
            failed = d["test_keys"]["dns_experiment_failure"] is not None
            cells[(int(d["probe_asn"][2:]), int(_t(d) // 3600))].append(failed)
        return max(sum(v) / len(v) for v in cells.values() if len(v) >= 10)

    assert worst_hour(None) == 0.0  # no noise in this scenario
    assert worst_hour(model) > 0.4  # every target at once, the control's too


def test_skewed_clocks_are_minutes_off(tmp_path: Path) -> None:
    sc = scenario(tmp_path, end_day=3)
    plain = build_world(sc)  # type: ignore[arg-type]
    skewed = build_world(sc, DEDICATED, Model(options={"clock": "skewed"}, skew_share=1.0))  # type: ignore[arg-type]
    assert max(abs(p.skew) for p in plain.probes) <= 5
    assert sum(abs(p.skew) > 60 for p in skewed.probes) >= len(skewed.probes) // 2
    # and the documents say so: a dedicated probe's run no longer starts where its schedule puts it
    first = {p.probe_id: p for p in skewed.probes}
    offsets = set()
    for d in docs(sc, DEDICATED, Model(options={"clock": "skewed"}, skew_share=1.0))[:200]:
        p = first[d["annotations"]["probe_id"]]
        offsets.add(round((_t(d) - p.offset) % 3600 / 60) % 60)
    assert offsets - {0, 1, 59}


def test_a_cut_still_on_at_the_end_is_silence_and_has_no_end(tmp_path: Path) -> None:
    sc = load_scenario(ROOT / "scenarios" / "et-tigray-2020.toml")
    (inc,) = [Incident.from_json(d) for d in truth(sc)]
    assert inc.end is None and list(inc.regions) == ["Tigray"]
    cut = inc.start.timestamp()
    seen_before = after = 0
    for d in docs(sc, VOLUNTEER):
        if d["annotations"]["region"] != "Tigray":
            continue
        if _t(d) < cut - 60:
            seen_before += 1
        elif _t(d) > cut + 60:
            after += 1
    assert seen_before > 20 and after == 0
