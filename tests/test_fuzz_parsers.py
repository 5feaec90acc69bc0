"""Property-based tests of the parsers: hostile input gets a clear error of the observatory's own kind,
never a crash, and valid records survive a round trip unchanged."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from observatory.errors import ConfigError, ParseError
from observatory.ingest import ingest_paths
from observatory.measurement import format_time, parse_measurement
from observatory.signals import read_signals_csv
from observatory.simulate.scenario import scenario_from_dict
from observatory.store.duckdb import DuckDBStore

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**63, 2**63 - 1) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=12), inner, max_size=6),
    max_leaves=25,
)

ENVELOPE_KEYS = ["test_name", "measurement_start_time", "probe_cc", "probe_asn", "input", "report_id",
                 "test_keys", "annotations", "test_runtime", "software_name", "measurement_uid"]


@FAST
@given(st.dictionaries(st.sampled_from(ENVELOPE_KEYS) | st.text(max_size=10), json_values, max_size=10))
def test_any_json_object_parses_or_is_refused_with_a_parse_error(doc: dict) -> None:
    try:
        m = parse_measurement(json.dumps(doc).encode(), where="fuzz:1")
    except ParseError as exc:
        assert exc.where == "fuzz:1" and exc.reason
        return
    assert m.test_name == doc["test_name"] and m.uid


@FAST
@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_crash_the_parser(data: bytes) -> None:
    try:
        m = parse_measurement(data, where="fuzz:1")
    except ParseError as exc:
        assert exc.where == "fuzz:1" and exc.reason
    else:
        assert m.test_name and m.uid


measurements = st.fixed_dictionaries({
    "test_name": st.sampled_from(["web_connectivity", "telegram", "signal", "ndt"]),
    # a valid measurement is not from the future (ingest refuses those: issue #22)
    "measurement_start_time": st.datetimes(min_value=datetime(2012, 1, 1), max_value=datetime(2025, 12, 31))
    .map(lambda t: format_time(t.replace(tzinfo=UTC))),
    "probe_cc": st.sampled_from(["PK", "IR", "IT", "ZZ"]),
    "probe_asn": st.integers(0, 2**32 - 1).map(lambda n: f"AS{n}"),
    "input": st.sampled_from(["https://x.com/", "https://www.facebook.com/", None]),
    "report_id": st.text(alphabet="abcdef0123456789", min_size=1, max_size=20),
    "test_keys": st.dictionaries(st.text(max_size=8), json_values, max_size=5),
    "extra_field": json_values,
})


@FAST
@given(measurements)
def test_valid_measurement_round_trips(doc: dict) -> None:
    m = parse_measurement(json.dumps(doc).encode())
    assert json.loads(m.document_json()) == doc
    assert m.probe_asn == int(doc["probe_asn"][2:]) and m.probe_cc == doc["probe_cc"]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(st.lists(measurements, min_size=1, max_size=12), st.lists(st.binary(max_size=60), max_size=4))
def test_ingest_of_mixed_good_and_garbage_keeps_every_good_line(tmp_path: Path, docs: list[dict],
                                                                 garbage: list[bytes]) -> None:
    lines = [json.dumps(dict(d, measurement_uid=f"u{i}")).encode() for i, d in enumerate(docs)]
    garbage = [g.replace(b"\n", b" ") for g in garbage if g.strip()]
    f = tmp_path / f"mix-{abs(hash((tuple(lines), tuple(garbage))))}.jsonl"
    f.write_bytes(b"\n".join(garbage + lines) + b"\n")
    store = DuckDBStore(":memory:")
    try:
        s = ingest_paths(store, [f])
        assert store.count() == len(lines)
        assert s.accepted == len(lines) and s.rejected <= len(garbage)
        again = ingest_paths(store, [f])
        assert again.accepted == 0 and store.count() == len(lines)
    finally:
        store.close()


# --- the scenario parser --------------------------------------------------------------------------------

BASE = {
    "name": "fuzz", "seed": 1, "start": "2024-01-15T00:00:00Z", "end": "2024-01-16T00:00:00Z",
    "interval_minutes": 15, "targets": ["twitter", "control"],
    "country": [{"code": "PK", "timezone": "Asia/Karachi",
                 "network": [{"asn": 17557, "name": "PTCL", "type": "fixed", "probes": 3, "regions": ["Punjab"]}]}],
    "event": [{"kind": "platform_restriction", "country": "PK", "platforms": ["twitter"],
               "technique": "tls_interference", "start": "2024-01-15T10:00:00Z", "end": "2024-01-15T12:00:00Z"}],
}


def _mutations() -> st.SearchStrategy[tuple[list[str | int], object]]:
    paths: list[list[str | int]] = [["name"], ["seed"], ["start"], ["end"], ["interval_minutes"], ["targets"],
                                    ["country", 0, "code"], ["country", 0, "network", 0, "asn"],
                                    ["country", 0, "network", 0, "probes"], ["country", 0, "network", 0, "type"],
                                    ["event", 0, "kind"], ["event", 0, "technique"], ["event", 0, "start"],
                                    ["event", 0, "platforms"], ["event", 0, "coverage"], ["unknown_key"],
                                    ["event", 0, "asns"], ["noise"]]
    return st.tuples(st.sampled_from(paths), json_values)


@FAST
@given(st.lists(_mutations(), min_size=1, max_size=3))
def test_scenario_parser_refuses_bad_values_with_a_config_error(mutations: list) -> None:
    raw = json.loads(json.dumps(BASE))
    for path, value in mutations:
        assume(value is not None)  # TOML has no null
        target = raw
        for k in path[:-1]:
            target = target[k]
        target[path[-1]] = value
    try:
        sc = scenario_from_dict(raw, path="fuzz.toml")
    except ConfigError as exc:
        assert str(exc).startswith("fuzz.toml"), str(exc)
        return
    assert sc.end > sc.start


def test_scenario_base_is_valid() -> None:
    sc = scenario_from_dict(json.loads(json.dumps(BASE)), path="fuzz.toml")
    assert sc.end - sc.start == timedelta(days=1)


# --- the signals CSV ------------------------------------------------------------------------------------


@FAST
@given(st.lists(st.lists(st.text(max_size=15), min_size=0, max_size=8), max_size=6))
def test_signals_csv_rows_parse_or_fail_with_a_located_error(rows: list[list[str]]) -> None:
    import csv
    import io

    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["time", "country", "region", "asn", "signal", "value"])
    for r in rows:
        w.writerow(r)
    for item in read_signals_csv(io.StringIO(buf.getvalue()), source="fuzz", name="f.csv"):
        if isinstance(item, ParseError):
            assert item.where.startswith("f.csv:")


def test_malformed_input_url_is_stored_without_a_platform() -> None:
    doc = {"test_name": "web_connectivity", "measurement_start_time": "2024-01-20 13:45:00",
           "input": "http://[zz]:80/", "probe_cc": "PK", "probe_asn": "AS1"}
    m = parse_measurement(json.dumps(doc).encode())
    assert m.platform is None and m.input == "http://[zz]:80/"
