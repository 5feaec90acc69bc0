"""Scenario files: the TOML contract loads into typed records, and every mistake names file, key and problem."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from observatory.errors import ConfigError
from observatory.simulate import load_scenario, truth

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = sorted((ROOT / "scenarios").glob("*.toml"))

BASE = """
name = "t"
seed = 7
start = "2024-01-15T00:00:00Z"
end = "2024-01-22T00:00:00Z"
interval_minutes = 15
targets = ["twitter", "facebook", "control"]

[noise]
failure_rate = 0.02

[[country]]
code = "PK"
timezone = "Asia/Karachi"
  [[country.network]]
  asn = 17557
  name = "PTCL"
  type = "fixed"
  probes = 3
  regions = ["Punjab", "Sindh"]
  [[country.network]]
  asn = 45669
  name = "Jazz"
  type = "mobile"
  probes = 2
  regions = ["Punjab"]

[[event]]
kind = "platform_restriction"
country = "PK"
platforms = ["twitter"]
technique = "tls_interference"
start = "2024-01-20T13:50:00Z"
end = "2024-01-20T17:00:00Z"
asns = [17557]
regions = ["Sindh"]
coverage = 0.9
"""


def write(tmp_path: Path, text: str, name: str = "s.toml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_every_committed_scenario_loads(path: Path) -> None:
    sc = load_scenario(path)
    assert sc.is_resolved and sc.countries and sc.targets


def test_committed_scenarios_cover_the_required_cases() -> None:
    kinds = {}
    for path in SCENARIOS:
        sc = load_scenario(path)
        for e in sc.events:
            kinds.setdefault(e.kind, []).append((path.stem, e, sc))
    assert (ROOT / "scenarios/pk-2023-12-2024-01.toml") in SCENARIOS
    ref = load_scenario(ROOT / "scenarios/pk-2023-12-2024-01.toml")
    assert [e.start.date().isoformat() for e in ref.events] == ["2023-12-17", "2024-01-07", "2024-01-20"]
    assert all(e.technique == "tls_interference" and not e.asns for e in ref.events)
    outages = kinds["platform_outage"]
    assert any(len(sc.countries) >= 2 for _, _, sc in outages)
    assert "throttling" in kinds
    assert any(e.technique == "dns_tampering" and len(e.asns) == 1 for _, e, _ in kinds["platform_restriction"])
    losses = [e for _, e, _ in kinds["connectivity_loss"]]
    assert any(not e.asns and not e.regions for e in losses)  # national shutdown
    assert any(e.regions for e in losses)  # regional mobile shutdown
    assert any(not load_scenario(p).events for p in SCENARIOS)  # a quiet week


def test_base_scenario_is_typed(tmp_path: Path) -> None:
    sc = load_scenario(write(tmp_path, BASE))
    assert sc.start == datetime(2024, 1, 15, tzinfo=UTC)
    assert sc.interval == timedelta(minutes=15)
    assert sc.noise.failure_rate == 0.02 and sc.noise.late_share == 0.05  # default kept
    assert sc.countries[0].networks[1].is_mobile
    e = sc.events[0]
    assert (e.asns, e.regions, e.coverage, e.platforms) == ((17557,), ("Sindh",), 0.9, ("twitter",))
    with pytest.raises(AttributeError):
        sc.name = "x"  # type: ignore[misc]


# (replace this, with that) -> (key named in the message, words of the message)
INVALID = [
    (('seed = 7', 'seed = 7\ncolour = "red"'), "colour", "unknown key"),
    (('  probes = 2\n', '  probes = 2\n  speed = 3\n'), "country[0].network[1].speed", "unknown key"),
    (('coverage = 0.9', 'coverage = 0.9\nplatform = "x"'), "event[0].platform", "unknown key"),
    (('technique = "tls_interference"', 'technique = "smoke_signals"'), "event[0].technique",
     "unknown technique 'smoke_signals'"),
    (('end = "2024-01-22T00:00:00Z"', 'end = "2024-01-14T00:00:00Z"'), "end", "is not after start"),
    (('end = "2024-01-20T17:00:00Z"', 'end = "2024-01-20T12:00:00Z"'), "event[0].end",
     "is not after the event's start"),
    (('platforms = ["twitter"]', 'platforms = ["myspace"]'), "event[0].platforms[0]", "unknown platform 'myspace'"),
    (('targets = ["twitter", "facebook", "control"]', 'targets = ["twitter", "friendster"]'), "targets[1]",
     "unknown platform 'friendster'"),
    (('start = "2024-01-20T13:50:00Z"', 'start = "2024-01-10T13:50:00Z"'), "event[0].start",
     "outside the scenario"),
    (('end = "2024-01-20T17:00:00Z"', 'end = "2024-01-25T17:00:00Z"'), "event[0].end", "outside the scenario"),
    (('asns = [17557]', 'asns = [3320]'), "event[0].asns[0]", "AS3320 is not a network of PK"),
    (('regions = ["Sindh"]', 'regions = ["Bavaria"]'), "event[0].regions[0]", "'Bavaria' is not a region"),
    (('kind = "platform_restriction"', 'kind = "alien_invasion"'), "event[0].kind", "unknown kind"),
    (('country = "PK"\nplatforms', 'country = "IR"\nplatforms'), "event[0].country", "not one of the scenario"),
    (('type = "fixed"', 'type = "satellite"'), "country[0].network[0].type", "choose one of fixed, mobile"),
    (('timezone = "Asia/Karachi"', 'timezone = "Mars/Olympus"'), "country[0].timezone", "unknown time zone"),
    (('probes = 3', 'probes = "three"'), "country[0].network[0].probes", "expected an integer"),
    (('failure_rate = 0.02', 'failure_rate = 2'), "noise.failure_rate", "outside [0.0, 1.0]"),
    (('coverage = 0.9', 'coverage = 0'), "event[0].coverage", "nothing happens"),
    (('start = "2024-01-20T13:50:00Z"', 'start = "+2m"'), "event[0].start", "only allowed in lab scenarios"),
    (('start = "2024-01-15T00:00:00Z"', 'start = "last tuesday"'), "start", "is not a time"),
    (('technique = "tls_interference"', 'technique = "throttling"'), "event[0].technique",
     "not a restriction technique"),
]


@pytest.mark.parametrize(("change", "key", "words"), INVALID, ids=[k for _, k, _ in INVALID])
def test_invalid_scenario_names_file_key_and_problem(tmp_path: Path, change: tuple[str, str], key: str,
                                                      words: str) -> None:
    old, new = change
    assert old in BASE
    path = write(tmp_path, BASE.replace(old, new, 1))
    with pytest.raises(ConfigError) as err:
        load_scenario(path)
    msg = str(err.value)
    assert msg.startswith(f"{path}: {key}: "), msg
    assert words in msg, msg


def test_platform_outage_rules(tmp_path: Path) -> None:
    outage = BASE.split("[[event]]")[0] + """
[[event]]
kind = "platform_outage"
platforms = ["facebook"]
start = "2024-01-16T00:00:00Z"
end = "2024-01-16T06:00:00Z"
"""
    sc = load_scenario(write(tmp_path, outage))
    assert sc.events[0].country is None and sc.events[0].technique is None
    with pytest.raises(ConfigError, match=r"event\[0\]\.country: a platform_outage is worldwide"):
        load_scenario(write(tmp_path, outage.replace('kind = "platform_outage"',
                                                     'kind = "platform_outage"\ncountry = "PK"')))


def test_connectivity_loss_takes_no_platforms(tmp_path: Path) -> None:
    text = BASE.replace('kind = "platform_restriction"', 'kind = "connectivity_loss"')
    with pytest.raises(ConfigError, match=r"event\[0\]\.platforms: a connectivity_loss affects everything"):
        load_scenario(write(tmp_path, text))
    text = text.replace('platforms = ["twitter"]\ntechnique = "tls_interference"\n', "")
    assert load_scenario(write(tmp_path, text)).events[0].technique == "unreachable"


def test_not_toml_and_missing_file(tmp_path: Path) -> None:
    path = write(tmp_path, "name = \n")
    with pytest.raises(ConfigError, match=rf"^{path}: not valid TOML"):
        load_scenario(path)
    with pytest.raises(ConfigError, match="no such scenario file"):
        load_scenario(tmp_path / "nope.toml")


LAB = """
name = "lab"
seed = 1
interval_seconds = 30
end = "+10m"
targets = ["twitter", "control"]
[[country]]
code = "PK"
timezone = "Asia/Karachi"
  [[country.network]]
  asn = 64500
  name = "Lab ISP"
  probes = 1
  regions = ["Punjab"]
[[event]]
kind = "platform_restriction"
country = "PK"
platforms = ["twitter"]
technique = "tcp_reset"
start = "+2m"
end = "+4m30s"
"""


def test_lab_offsets_resolve_against_the_run_start(tmp_path: Path) -> None:
    sc = load_scenario(write(tmp_path, LAB), allow_offsets=True)
    assert not sc.is_resolved and sc.interval == timedelta(seconds=30)
    assert sc.events[0].start == timedelta(minutes=2) and sc.events[0].end == timedelta(minutes=4, seconds=30)
    t0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
    r = sc.resolve(t0)
    assert r.start == t0 and r.end == t0 + timedelta(minutes=10)
    assert r.events[0].start == t0 + timedelta(minutes=2)
    with pytest.raises(ConfigError, match=r"s.toml: end: offset '\+10m' is only allowed in lab"):
        load_scenario(write(tmp_path, LAB.replace('end = "+10m"', 'start = "2025-01-01T00:00:00Z"\nend = "+10m"')))


def test_lab_offsets_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"event\[0\]\.end: \+900s is outside the scenario"):
        load_scenario(write(tmp_path, LAB.replace('end = "+4m30s"', 'end = "+15m"')), allow_offsets=True)
    with pytest.raises(ConfigError, match=r"event\[0\]\.start: '\+2x' is not an offset"):
        load_scenario(write(tmp_path, LAB.replace('start = "+2m"', 'start = "+2x"')), allow_offsets=True)
    with_start = LAB.replace('end = "+10m"', 'start = "now"\nend = "+10m"')
    assert load_scenario(write(tmp_path, with_start), allow_offsets=True).start == timedelta(0)


def test_issue_19_worlds_have_the_truth_their_events_describe() -> None:
    """The scenarios modelled on real events: scope `network` for one or two whole networks, `regional` for a
    region, no end for an event still on when the data end, one incident per evening of a repeated cut."""
    root = ROOT / "scenarios"

    def incidents(name: str) -> list[dict]:
        return truth(load_scenario(root / f"{name}.toml"))

    (optus,) = incidents("au-2023-optus-outage")
    assert (optus["scope"], optus["asns"], optus["kind"]) == ("network", ["AS4804"], "connectivity_loss")
    # two ISPs blocking the same platforms over the same span, each its own way: one decision, one incident
    two = incidents("in-two-isps-two-techniques")
    assert [(i["scope"], i["asns"], i["techniques"]) for i in two] == [
        ("network", ["AS24309", "AS55836"], ["dns_tampering", "tls_interference"])]
    evenings = incidents("ir-2022-nightly-mobile-shutdowns")
    assert len(evenings) == 3 and {i["scope"] for i in evenings} == {"network"}
    assert len({i["start"][:10] for i in evenings}) == 3
    (tigray,) = incidents("et-tigray-2020")
    assert (tigray["scope"], tigray["regions"], tigray["end"]) == ("regional", ["Tigray"], None)
    (ru,) = incidents("ru-twitter-throttling-2021")
    assert (ru["scope"], ru["end"], ru["status"]) == ("national", None, "confirmed")
    (meta,) = incidents("meta-outage-week-2021")
    assert (meta["country"], meta["kind"]) == (None, "platform_outage")
    assert incidents("ke-br-quiet-month") == []
    (ve,) = incidents("ve-2019-07-blackout")
    assert (ve["scope"], ve["end"]) == ("national", "2019-07-23T10:00:00Z")
