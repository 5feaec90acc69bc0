"""Per technique, the generated observations carry that technique's signature, and nothing else does.

`signature()` below is an independent reading of the table in docs/measurement-format.md ("Signatures of each
technique"); it looks only at raw observations, never at OONI's `blocking` summary.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from observatory.measurement import Measurement, WebConnectivityKeys, parse_measurement, parse_time
from observatory.simulate import Generator, load_scenario
from observatory.simulate.blockpages import ALL as BLOCKPAGES
from observatory.verdict.blockpages import match_response

QUIET = """
name = "sig"
seed = {seed}
start = "2024-01-15T00:00:00Z"
end = "2024-01-16T00:00:00Z"
interval_minutes = 30
targets = ["twitter", "facebook", "control"]
[noise]
failure_rate = 0.0
probe_fault_rate = 0.0
late_share = 0.0
duplicate_share = 0.0
{countries}
{events}
"""
PK = """
[[country]]
code = "PK"
timezone = "Asia/Karachi"
  [[country.network]]
  asn = 17557
  name = "PTCL"
  type = "fixed"
  probes = 2
  regions = ["Punjab", "Sindh"]
  [[country.network]]
  asn = 45669
  name = "Jazz"
  type = "mobile"
  probes = 2
  regions = ["Punjab", "Sindh"]
  [[country.network]]
  asn = 24499
  name = "Telenor"
  type = "mobile"
  probes = 2
  regions = ["Balochistan"]
  [[country.network]]
  asn = 59257
  name = "Zong"
  type = "mobile"
  probes = 2
  regions = ["Punjab"]
"""
DE = """
[[country]]
code = "DE"
timezone = "Europe/Berlin"
  [[country.network]]
  asn = 3320
  name = "Deutsche Telekom"
  type = "fixed"
  probes = 2
  regions = ["Berlin"]
"""
EV_START, EV_END = "2024-01-15T06:00:00Z", "2024-01-15T12:00:00Z"
RESTRICTION = f"""
[[event]]
kind = "{{kind}}"
country = "PK"
platforms = ["twitter"]
technique = "{{technique}}"
start = "{EV_START}"
end = "{EV_END}"
"""


def generate(tmp_path: Path, countries: str, events: str, seed: int = 3) -> list[Measurement]:
    path = tmp_path / "s.toml"
    path.write_text(QUIET.format(seed=seed, countries=countries, events=events))
    return [parse_measurement(line) for _, line in Generator(load_scenario(path)).lines()]


def _dns_ok(k: WebConnectivityKeys) -> bool:
    control = set(k.control.dns.addrs) if k.control and k.control.dns else set()
    for q in k.queries or []:
        if q.failure or not q.answers or not {a.ipv4 for a in q.answers} <= control:
            return False
    return True


def _control_failed(k: WebConnectivityKeys) -> bool:
    c = k.control
    assert c is not None and c.http_request is not None
    return c.http_request.failure is not None


def _kbps(d: object) -> float:
    assert d is not None
    return d.kbps or 0.0  # type: ignore[attr-defined]


def signature(m: Measurement) -> str:
    """What the observations show, layer by layer (DNS, TCP, TLS, HTTP, throughput)."""
    k = m.web_connectivity()
    assert k.control is not None, "the control is always reachable in these scenarios"
    if _control_failed(k):
        return "down"
    queries = k.queries or []
    if any(q.failure == "generic_timeout_error" for q in queries) and not k.tcp_connect:
        return "unreachable"
    if not _dns_ok(k):
        return "dns_tampering"
    tcp = k.tcp_connect or []
    if tcp and all(t.status.failure in ("connection_reset", "connection_refused") for t in tcp):
        return "tcp_reset"
    if tcp and all(t.status.failure == "generic_timeout_error" for t in tcp):
        return "tcp_blackhole"
    assert all(t.status.success for t in tcp)
    tls = k.tls_handshakes or []
    if any(h.failure in ("ssl_invalid_hostname", "ssl_unknown_authority") for h in tls):
        return "tls_mitm"
    if any(h.failure in ("connection_reset", "generic_timeout_error", "eof_error") for h in tls):
        return "tls_interference"
    assert tls and all(h.failure is None for h in tls)
    req = (k.requests or [None])[0]
    assert req is not None
    if req.response is not None and match_response(req.response.body, req.response.headers) is not None:
        return "http_blockpage"
    if req.failure is not None:
        return "http_interference"
    assert req.response is not None and req.response.code == 200
    if _kbps(k.x_download) * 10 <= _kbps(k.control.x_download):
        return "throttling"
    return "ok"


def _in_event(m: Measurement, platform: str | None = "twitter") -> bool | None:
    """True inside the event, False outside, None within the clock skew of a boundary (ambiguous)."""
    t = m.start_time.strftime("%Y-%m-%dT%H:%M:%SZ")
    near = {EV_START[:-1], EV_END[:-1]}
    for b in near:
        if abs((m.start_time - parse_time(b)).total_seconds()) < 10:
            return None
    inside = EV_START <= t < EV_END
    return inside and (platform is None or m.platform == platform)


TECHNIQUES = ["dns_tampering", "tcp_reset", "tcp_blackhole", "tls_interference", "tls_mitm", "http_blockpage",
              "http_interference"]


@pytest.mark.parametrize("technique", TECHNIQUES)
def test_restriction_technique_has_its_signature_and_nothing_else_does(tmp_path: Path, technique: str) -> None:
    ms = generate(tmp_path, PK, RESTRICTION.format(kind="platform_restriction", technique=technique))
    seen = {True: 0, False: 0}
    for m in ms:
        inside = _in_event(m)
        if inside is None:
            continue
        seen[inside] += 1
        assert signature(m) == (technique if inside else "ok"), (m.uid, m.platform, m.start_time)
    assert seen[True] > 50 and seen[False] > 200


def test_every_network_has_its_own_style(tmp_path: Path) -> None:
    """Real ISPs differ: DNS tampering shows NXDOMAIN on one network, a bogus answer on another."""
    ms = generate(tmp_path, PK, RESTRICTION.format(kind="platform_restriction", technique="dns_tampering"))
    styles = set()
    for m in ms:
        if _in_event(m):
            q = m.web_connectivity().queries[0]  # type: ignore[index]
            styles.add(q.failure or ",".join(a.ipv4 or "" for a in q.answers or []))
    assert len(styles) >= 3, styles


def test_throttling_collapses_throughput_only(tmp_path: Path) -> None:
    ms = generate(tmp_path, PK, RESTRICTION.format(kind="throttling", technique="throttling"))
    ok_kbps, slow_kbps = [], []
    for m in ms:
        inside = _in_event(m)
        if inside is None:
            continue
        assert signature(m) == ("throttling" if inside else "ok")
        if m.platform == "twitter":
            (slow_kbps if inside else ok_kbps).append(_kbps(m.web_connectivity().x_download))
    # against the network's own baseline too, not just the control
    assert max(slow_kbps) * 10 < sorted(ok_kbps)[len(ok_kbps) // 2]


def test_connectivity_loss_fails_every_step_and_arrives_late(tmp_path: Path) -> None:
    event = f"""
[[event]]
kind = "connectivity_loss"
country = "PK"
asns = [45669]
start = "{EV_START}"
end = "{EV_END}"
"""
    path = tmp_path / "s.toml"
    path.write_text(QUIET.format(seed=5, countries=PK, events=event))
    lines = [parse_measurement(line) for _, line in Generator(load_scenario(path)).lines()]
    first_after_end = next(i for i, m in enumerate(lines) if m.start_time.strftime("%H:%M") >= "12:01")
    affected = 0
    for i, m in enumerate(lines):
        inside = _in_event(m, platform=None)
        if inside is None:
            continue
        if inside and m.probe_asn == 45669:
            affected += 1
            assert signature(m) == "unreachable"
            k = m.web_connectivity()
            assert all(q.failure for q in k.queries or []) and k.control and not _control_failed(k)
            assert i > first_after_end, "a probe without connectivity cannot upload before the end"
        else:
            assert signature(m) == "ok"
    probes, targets, runs = 2, 3, 12
    assert 0 < affected < probes * targets * runs  # some are lost for good


def test_platform_outage_fails_in_the_control_too(tmp_path: Path) -> None:
    events = ""
    for start, end in [(EV_START, EV_END), ("2024-01-15T14:00:00Z", "2024-01-15T16:00:00Z")]:
        events += f"""
[[event]]
kind = "platform_outage"
platforms = ["facebook"]
start = "{start}"
end = "{end}"
"""
    ms = generate(tmp_path, PK + DE, events)
    down = {"PK": 0, "DE": 0}
    for m in ms:
        t = m.start_time.strftime("%Y-%m-%dT%H:%M:%SZ")
        inside = m.platform == "facebook" and (EV_START <= t < EV_END or "2024-01-15T14" <= t < "2024-01-15T16")
        if _in_event(m, platform=None) is None or t[11:16] in ("13:59", "14:00", "15:59", "16:00"):
            continue
        assert signature(m) == ("down" if inside else "ok"), (m.probe_cc, m.platform, t)
        down[m.probe_cc] += inside
    assert down["PK"] > 20 and down["DE"] > 10


def test_regional_event_touches_only_that_region(tmp_path: Path) -> None:
    event = RESTRICTION.format(kind="platform_restriction", technique="tcp_reset").replace(
        'technique = "tcp_reset"', 'technique = "tcp_reset"\nregions = ["Sindh"]')
    hit = set()
    for m in generate(tmp_path, PK, event):
        inside = _in_event(m)
        if inside is None:
            continue
        expected = "tcp_reset" if inside and m.region == "Sindh" else "ok"
        assert signature(m) == expected
        if expected != "ok":
            hit.add(m.probe_asn)
    assert hit == {17557, 45669}


def test_coverage_is_the_share_showing_interference(tmp_path: Path) -> None:
    event = RESTRICTION.format(kind="platform_restriction", technique="tls_interference") + "coverage = 0.5\n"
    verdicts = [signature(m) for m in generate(tmp_path, PK, event) if _in_event(m)]
    share = verdicts.count("tls_interference") / len(verdicts)
    assert 0.35 < share < 0.65 and set(verdicts) == {"tls_interference", "ok"}


def test_every_block_page_matches_a_verdict_fingerprint() -> None:
    for page in BLOCKPAGES:
        fp = match_response(page.body, dict(page.headers))
        assert fp is not None and not fp.false_positive, page.id


def test_nothing_in_a_measurement_says_it_was_simulated(tmp_path: Path) -> None:
    scenario = load_scenario(Path(__file__).resolve().parent.parent / "scenarios/pk-2023-12-2024-01.toml")
    short = scenario.__class__(**{**{f: getattr(scenario, f) for f in scenario.__dataclass_fields__},
                                  "end": scenario.events[2].end + timedelta(hours=1),
                                  "start": scenario.events[2].start - timedelta(hours=3)})
    short = short.__class__(**{**{f: getattr(short, f) for f in short.__dataclass_fields__},
                               "events": (scenario.events[2],)})
    text = b"\n".join(line for _, line in Generator(short).lines()).lower()
    for word in (b"inject", b"simulat", b"truth", b"sim-", b"scenario", b"tls_interference", b"outcome",
                 b"probe_ip", b"probe_city"):
        assert word not in text, word


def test_verdict_rules_agree_with_the_signatures(tmp_path: Path) -> None:
    """Integration with the verdict engineer's rules: each technique is recognised as itself."""
    from observatory.verdict import classify

    for technique in TECHNIQUES:
        ms = generate(tmp_path, PK, RESTRICTION.format(kind="platform_restriction", technique=technique))
        for m in ms:
            if _in_event(m) is not None:
                assert classify(m).verdict == signature(m), (technique, m.probe_asn, m.platform)
