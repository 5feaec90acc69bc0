"""The generated stream: OONI-format lines that parse and ingest, deterministic, realistic, and the truth."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path
from zoneinfo import ZoneInfo

import msgspec
import pytest

from observatory.incident import Incident
from observatory.ingest import ingest_paths
from observatory.measurement import parse_measurement
from observatory.simulate import Generator, load_scenario, truth, write_simulation
from observatory.simulate.world import VOLUNTEER, build_world

ROOT = Path(__file__).resolve().parent.parent
SCENARIO = """
name = "gen"
seed = {seed}
start = "2024-01-15T00:00:00Z"
end = "2024-01-{end_day}T00:00:00Z"
interval_minutes = 30
targets = ["twitter", "facebook", "youtube", "control"]
[noise]
failure_rate = {failure_rate}
probe_fault_rate = {fault_rate}
late_share = 0.05
duplicate_share = 0.02
[[country]]
code = "PK"
timezone = "Asia/Karachi"
  [[country.network]]
  asn = 17557
  name = "Pakistan Telecommunication Company Limited"
  type = "fixed"
  probes = 4
  regions = ["Punjab", "Sindh"]
  [[country.network]]
  asn = 45669
  name = "Mobilink-PK"
  type = "mobile"
  probes = 3
  regions = ["Punjab", "Khyber Pakhtunkhwa"]
  [[country.network]]
  asn = 9541
  name = "Cyber Internet Services"
  type = "fixed"
  probes = 2
  regions = ["Sindh"]
[[event]]
kind = "platform_restriction"
country = "PK"
platforms = ["twitter", "youtube"]
technique = "tls_interference"
start = "2024-01-16T13:45:00Z"
end = "2024-01-16T17:00:00Z"
"""


def scenario(tmp_path: Path, *, seed: int = 7, end_day: int = 18, failure_rate: float = 0.02,
             fault_rate: float = 0.002):
    path = tmp_path / f"gen-{seed}-{end_day}.toml"
    path.write_text(SCENARIO.format(seed=seed, end_day=end_day, failure_rate=failure_rate, fault_rate=fault_rate))
    return load_scenario(path)


def lines(sc, activity: str = "dedicated") -> list[bytes]:
    return [line for _, line in Generator(sc, activity).lines()]


def test_same_scenario_and_seed_give_byte_identical_output(tmp_path: Path) -> None:
    sc = scenario(tmp_path)
    a, b = tmp_path / "a.jsonl.gz", tmp_path / "b.jsonl.gz"
    write_simulation(sc, out=a)
    write_simulation(load_scenario(sc.path), out=b)
    assert a.read_bytes() == b.read_bytes()
    other = lines(scenario(tmp_path, seed=8))
    assert gzip.decompress(a.read_bytes()).splitlines() != other
    assert lines(sc, VOLUNTEER) == lines(load_scenario(sc.path), VOLUNTEER)


def test_every_line_parses_as_an_ooni_measurement(tmp_path: Path) -> None:
    out = lines(scenario(tmp_path))
    assert len(out) > 4000
    for i, line in enumerate(out):
        m = parse_measurement(line, where=f"line {i + 1}")
        assert m.test_name == "web_connectivity" and m.probe_cc == "PK"
        assert m.probe_asn in (17557, 45669, 9541) and m.region
        doc = m.doc
        assert doc["probe_asn"].startswith("AS") and "probe_ip" not in doc and "probe_city" not in doc
        assert doc["annotations"]["probe_id"] and m.probe_key.startswith("p:")
        assert m.platform == doc["annotations"]["platform"]
        m.web_connectivity()  # the raw observations have OONI's shape


def test_keys_follow_the_documented_envelope(tmp_path: Path) -> None:
    doc = json.loads(lines(scenario(tmp_path, end_day=17))[0])
    assert list(doc)[:12] == ["measurement_uid", "report_id", "data_format_version", "test_name", "test_version",
                              "software_name", "software_version", "measurement_start_time", "test_start_time",
                              "test_runtime", "probe_cc", "probe_asn"]
    assert doc["software_name"] == "observatory" and doc["test_version"] == "0.4.3"
    assert doc["measurement_uid"].startswith(doc["measurement_start_time"].replace("-", "").replace(" ", "T")
                                             .replace(":", "") + "Z_webconnectivity_PK_")
    tk = doc["test_keys"]
    for key in ("queries", "tcp_connect", "tls_handshakes", "requests", "x_download", "control", "blocking",
                "accessible", "client_resolver"):
        assert key in tk
    assert set(tk["control"]) == {"dns", "tcp_connect", "tls_handshake", "http_request", "x_download"}


def test_dedicated_probes_measure_every_target_every_interval(tmp_path: Path) -> None:
    sc = scenario(tmp_path, failure_rate=0.0, fault_rate=0.0)
    runs: dict[str, Counter[str]] = defaultdict(Counter)
    seen_uids: set[str] = set()
    for line in lines(sc):
        m = parse_measurement(line)
        if m.uid in seen_uids:
            continue
        seen_uids.add(m.uid)
        if m.probe_asn == 17557:
            runs[m.probe_key][m.doc["report_id"]] += 1
    world = build_world(sc)
    for p in world.probes:
        if p.net.asn != 17557 or p.joins > sc.start.timestamp() or p.leaves < sc.end.timestamp():
            continue
        per_run = runs["p:" + (p.probe_id or "")]
        assert len(per_run) == 3 * 48 and set(per_run.values()) == {4}


def test_volunteer_mode_is_ooni_like(tmp_path: Path) -> None:
    sc = scenario(tmp_path, end_day=22)
    out = [parse_measurement(line) for line in lines(sc, VOLUNTEER)]
    assert out
    by_run: dict[str, set[str]] = defaultdict(set)
    hours = Counter()
    tz = ZoneInfo("Asia/Karachi")
    for m in out:
        assert m.software_name == "ooniprobe" and "probe_id" not in m.doc["annotations"]
        assert m.probe_key.startswith("r:")
        by_run[m.doc["report_id"]].add(m.doc["test_start_time"])
        hours[m.start_time.astimezone(tz).hour] += 1
    # a new report_id on every run: each report_id belongs to a single run
    assert all(len(starts) == 1 for starts in by_run.values())
    assert len(by_run) > 100
    evening = sum(hours[h] for h in (18, 19, 20, 21))
    night = sum(hours[h] for h in (2, 3, 4, 5))
    assert evening > 3 * night
    # some networks have a single volunteer; far fewer runs than dedicated probes
    world = build_world(sc, VOLUNTEER)
    per_net = Counter(p.net.asn for p in world.probes)
    assert min(per_net.values()) == 1
    assert len(out) < len(lines(sc)) / 3


def test_late_uploads_and_duplicates(tmp_path: Path) -> None:
    out = [parse_measurement(line) for line in lines(scenario(tmp_path, end_day=20))]
    uids = Counter(m.uid for m in out)
    dup_share = sum(1 for n in uids.values() if n > 1) / len(uids)
    assert 0.01 < dup_share < 0.03
    assert max(uids.values()) == 2
    # upload order: some lines were taken hours before the lines around them
    late = 0
    newest = out[0].start_time
    for m in out:
        if (newest - m.start_time).total_seconds() > 3600:
            late += 1
        newest = max(newest, m.start_time)
    assert 0.03 < late / len(out) < 0.09


def test_flakiness_probe_faults_and_latency_make_noise(tmp_path: Path) -> None:
    sc = scenario(tmp_path, end_day=22, fault_rate=0.01)
    failures: Counter[tuple[int, str]] = Counter()
    totals: Counter[tuple[int, str]] = Counter()
    rtts: dict[int, list[float]] = defaultdict(list)
    fault_runs: Counter[str] = Counter()
    for line in lines(sc):
        m = parse_measurement(line)
        k = m.web_connectivity()
        t = m.start_time.strftime("%Y-%m-%dT%H:%M")
        if "2024-01-16T13:30" <= t < "2024-01-16T17:15":
            continue
        key = (m.probe_asn, m.platform or "")
        totals[key] += 1
        ok = k.requests and k.requests[0].failure is None
        if not ok:
            failures[key] += 1
            if k.queries and k.queries[0].failure == "generic_timeout_error":
                fault_runs[m.probe_key + m.doc["report_id"]] += 1
        if k.tcp_connect and k.tcp_connect[0].status.success:
            rtts[m.probe_asn].append(k.tcp_connect[0].t - k.tcp_connect[0].t0)  # type: ignore[operator]
    rates = {k: failures[k] / totals[k] for k in totals}
    assert max(rates.values()) > 3 * min(rates.values())  # per-target, per-network flakiness
    assert any(n == 4 for n in fault_runs.values())  # a faulty probe fails every target of a run
    median = {asn: sorted(v)[len(v) // 2] for asn, v in rtts.items()}
    assert median[45669] > median[17557] and median[45669] > median[9541]  # mobile is slower


def test_truth_is_what_happened(tmp_path: Path) -> None:
    sc = scenario(tmp_path)
    (inc,) = truth(sc)
    assert inc["country"] == "PK" and inc["kind"] == "platform_restriction" and inc["scope"] == "national"
    assert inc["asns"] == ["AS9541", "AS17557", "AS45669"]
    assert inc["regions"] == ["Khyber Pakhtunkhwa", "Punjab", "Sindh"]
    assert inc["platforms"] == ["twitter", "youtube"] and inc["techniques"] == ["tls_interference"]
    assert (inc["start"], inc["end"], inc["status"]) == ("2024-01-16T13:45:00Z", "2024-01-16T17:00:00Z", "ended")
    assert Incident.from_json(inc).to_json()["asns"] == inc["asns"]  # the contract's shape


def test_truth_scopes_of_the_committed_scenarios() -> None:
    got = {}
    for path in sorted((ROOT / "scenarios").glob("*.toml")):
        got[path.stem] = [(i["kind"], i["scope"], i["country"], tuple(i["asns"]), tuple(i["regions"]))
                          for i in truth(load_scenario(path))]
    assert got["pk-balochistan-mobile-shutdown"] == [
        ("connectivity_loss", "regional", "PK", ("AS24499", "AS45669", "AS59257"), ("Balochistan",))]
    assert got["tr-single-isp-dns-block"][0][:4] == ("platform_restriction", "network", "TR", ("AS9121",))
    assert got["facebook-worldwide-outage"] == [("platform_outage", "national", None, (), ())]
    assert got["ir-national-shutdown"][0][:3] == ("connectivity_loss", "national", "IR")
    assert got["ke-quiet-week"] == []


def test_ingest_of_a_simulated_file(tmp_path: Path, duck) -> None:
    sc = scenario(tmp_path, end_day=17)
    out = tmp_path / "sim.jsonl.gz"
    written = write_simulation(sc, out=out, truth_path=tmp_path / "truth.json").measurements
    distinct = len({msgspec.json.decode(line)["measurement_uid"]
                    for line in gzip.decompress(out.read_bytes()).splitlines()})
    summary = ingest_paths(duck, [out], rejects_path=tmp_path / "rejects.jsonl")
    assert summary.read == written and summary.rejected == 0
    assert summary.accepted == distinct and summary.duplicates == written - distinct
    assert duck.count() == distinct
    assert json.loads((tmp_path / "truth.json").read_text())[0]["kind"] == "platform_restriction"


def test_cli_writes_measurements_and_truth(tmp_path: Path) -> None:
    sc = scenario(tmp_path, end_day=17)
    out, tr = tmp_path / "o.jsonl", tmp_path / "t.json"
    cmd = [sys.executable, "-m", "observatory", "simulate", sc.path, "--out", str(out), "--truth", str(tr),
           "--activity", "volunteer"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "simulated" in res.stderr and out.stat().st_size > 0 and json.loads(tr.read_text())
    assert b'"software_name":"ooniprobe"' in out.read_bytes().splitlines()[0]


def test_cli_bad_scenario_is_a_one_line_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(SCENARIO.format(seed=1, end_day=17, failure_rate=0, fault_rate=0)
                   .replace('technique = "tls_interference"', 'technique = "tls_magic"'))
    res = subprocess.run([sys.executable, "-m", "observatory", "simulate", str(bad), "--out", "-"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr.strip() == (f"error: {bad}: event[0].technique: unknown technique 'tls_magic' (known: "
                                  "dns_tampering, tcp_reset, tcp_blackhole, tls_interference, tls_mitm, "
                                  "http_blockpage, http_interference, throttling, unreachable)")


def test_cli_help_ends_with_an_example() -> None:
    res = subprocess.run([sys.executable, "-m", "observatory", "simulate", "--help"], capture_output=True,
                         text=True, timeout=60)
    assert "Example: observatory simulate scenarios/" in res.stdout


@pytest.mark.parametrize("activity", ["dedicated", "volunteer"])
def test_memory_stays_flat(tmp_path: Path, activity: str) -> None:
    """The late-upload heap is bounded by the late window, not by the length of the scenario."""
    sc = scenario(tmp_path, end_day=29)
    gen = Generator(sc, activity)
    held = []
    it = gen.lines()
    for i, _ in enumerate(it):
        if i % 500 == 0:
            frame = it.gi_frame
            if frame is not None and "late" in frame.f_locals:
                held.append(len(frame.f_locals["late"]))
    first, last = held[: len(held) // 3], held[-len(held) // 3:]
    assert max(last) < 2 * max(first) + 50
