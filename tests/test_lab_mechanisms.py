"""The lab's censor, checked at the packet level with real clients (curl, a DNS query) inside ISP namespaces.

One lab (two ISPs with two regions each) serves the whole module; each test applies one event to one ISP's
one region, checks that region is hit the way the technique says, that the other region and the other ISP
are not, and that lifting the event restores the platform.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from observatory.lab import netns, runner
from observatory.lab.plan import LabEvent, load_plan, platform_address

pytestmark = pytest.mark.lab

SCENARIO = Path(__file__).parent.parent / "scenarios" / "lab" / "mechanisms.toml"
_SKIP = netns.namespaces_available()


@pytest.fixture(scope="module")
def lab() -> Iterator[runner.Lab]:
    if _SKIP:
        pytest.skip(f"lab tests need Linux network namespaces: {_SKIP}")
    plan = load_plan(SCENARIO)
    runner.down(plan.lab_id)  # a previous run killed with -9 may have left its state
    built = runner.up(plan)
    try:
        yield built
    finally:
        problems = built.down()
        assert problems == []
        assert netns.lab_namespaces(plan.lab_id) == []
        assert runner.lab_processes(plan.lab_id) == []
        assert not any(Path("/etc/netns").glob(f"obs-{plan.lab_id}-*"))


def curl(lab: runner.Lab, ns: str, url: str, *extra: str, timeout: float = 3) -> tuple[int, str, str]:
    """(curl exit code, body, error) for a GET from inside namespace `ns`, trusting the lab CA."""
    p = subprocess.run(["ip", "netns", "exec", ns, "curl", "-sS", "--max-time", str(timeout), "--cacert",
                        str(lab.ca_bundle), *extra, url], capture_output=True, text=True, timeout=timeout + 5)
    return p.returncode, p.stdout, p.stderr.strip()


def resolve(ns: str, name: str) -> str:
    """The system resolver's answer inside `ns`: an address, or 'NXDOMAIN'."""
    code = ("import socket,sys\ntry: print(socket.gethostbyname(sys.argv[1]))\n"
            "except socket.gaierror as e: print('NXDOMAIN' if e.errno == socket.EAI_NONAME else e)")
    p = subprocess.run(["ip", "netns", "exec", ns, "python3", "-c", code, name], capture_output=True, text=True,
                       timeout=10)
    return p.stdout.strip()


def event(kind: str, technique: str | None, platforms: tuple[str, ...] = ("facebook",), index: int = 90) -> LabEvent:
    """An event on AS17557 (ISP 0), region Punjab (its region 0) only."""
    return LabEvent(index=index, kind=kind, country="PK", platforms=platforms, technique=technique, start_s=0,
                    end_s=60, asns=(17557,), regions=("Punjab",))


@pytest.fixture
def hosts(lab: runner.Lab) -> tuple[str, str, str]:
    """(the hit region's host, the same ISP's other region, the other ISP's host)."""
    n0, n1 = lab.plan.networks
    return lab.region_ns(n0, 0), lab.region_ns(n0, 1), lab.region_ns(n1, 0)


FB = "https://www.facebook.com/"
CONTROL = "https://www.wikipedia.org/"


def test_the_world_answers_every_platform_over_dns_http_and_https(lab: runner.Lab, hosts) -> None:
    hit, _, _ = hosts
    assert resolve(hit, "www.facebook.com") == platform_address("facebook")
    assert resolve(hit, "abs.twimg.com") == platform_address("twitter")
    code, body, err = curl(lab, hit, FB)
    assert code == 0, err
    assert "<title>Facebook (lab)</title>" in body
    code, body, _ = curl(lab, hit, "http://x.com/")
    assert code == 0 and "X/Twitter (lab)" in body


def _assert_only_hit(lab: runner.Lab, hosts, url: str, curl_exit: int) -> None:
    hit, same_isp, other_isp = hosts
    code, _, err = curl(lab, hit, url)
    assert code == curl_exit, err
    assert curl(lab, hit, CONTROL)[0] == 0, "the control site must stay reachable"
    assert curl(lab, same_isp, url)[0] == 0, "another region of the same ISP must not be hit"
    assert curl(lab, other_isp, url)[0] == 0, "another ISP must not be hit"


@pytest.fixture
def applied(lab: runner.Lab, request):
    """Applies an event for one test and checks that lifting it restores the platform."""
    ev = request.param
    lab.censor.apply(ev)
    yield ev
    lab.censor.revert(ev)
    hit = lab.region_ns(lab.plan.networks[0], 0)
    code, _, err = curl(lab, hit, "http://www.facebook.com/")
    assert code == 0, f"after lifting {ev.technique}: {err}"


@pytest.mark.parametrize("applied", [event("platform_restriction", "tcp_reset")], indirect=True)
def test_tcp_reset_refuses_the_platform_address_in_one_region_only(lab, hosts, applied) -> None:
    _assert_only_hit(lab, hosts, FB, curl_exit=7)  # 7: connection refused/reset at connect


@pytest.mark.parametrize("applied", [event("platform_restriction", "tcp_blackhole")], indirect=True)
def test_tcp_blackhole_makes_connects_time_out(lab, hosts, applied) -> None:
    _assert_only_hit(lab, hosts, FB, curl_exit=28)  # 28: timeout


@pytest.mark.parametrize("applied", [event("platform_restriction", "tls_interference")], indirect=True)
def test_tls_interference_resets_the_client_hello_naming_the_platform(lab, hosts, applied) -> None:
    hit = hosts[0]
    _assert_only_hit(lab, hosts, FB, curl_exit=35)  # 35: TLS handshake failed (reset)
    # Plain HTTP to the same address passes: the match is on the ClientHello of port 443.
    assert curl(lab, hit, "http://www.facebook.com/")[0] == 0
    # Another name on the very same address passes: the censor matches the SNI, not the address.
    code, body, err = curl(lab, hit, CONTROL, "--resolve", f"www.wikipedia.org:443:{platform_address('facebook')}")
    assert code == 0, err
    # 't.co' must not match inside 'microsoft.com': the exact-name match carries the length prefix.
    twitter = event("platform_restriction", "tls_interference", ("twitter",), index=91)
    lab.censor.apply(twitter)
    try:
        assert curl(lab, hit, "https://www.microsoft.com/")[0] == 0
        assert curl(lab, hit, "https://t.co/")[0] == 35
    finally:
        lab.censor.revert(twitter)


def test_tls_interference_drop_variant_times_out_the_handshake(lab, hosts) -> None:
    ev = event("platform_restriction", "tls_interference")
    lab.censor.tls_mode = "drop"
    lab.censor.apply(ev)
    try:
        code, _, err = curl(lab, hosts[0], FB, timeout=3)
        assert code == 28, err
        assert curl(lab, hosts[1], FB)[0] == 0
    finally:
        lab.censor.revert(ev)
        lab.censor.tls_mode = "reset"
    assert curl(lab, hosts[0], FB)[0] == 0


def test_dns_tampering_answers_nxdomain_at_the_isp_resolver(lab, hosts) -> None:
    ev = event("platform_restriction", "dns_tampering")
    hit, same_isp, other_isp = hosts
    lab.censor.apply(ev)
    try:
        assert resolve(hit, "www.facebook.com") == "NXDOMAIN"
        assert resolve(hit, "static.xx.fbcdn.net") == "NXDOMAIN"
        assert resolve(hit, "www.wikipedia.org") == platform_address("control")
        # The resolver is the ISP's: its other region shares it, the other ISP does not.
        assert resolve(same_isp, "www.facebook.com") == "NXDOMAIN"
        assert resolve(other_isp, "www.facebook.com") == platform_address("facebook")
    finally:
        lab.censor.revert(ev)
    assert resolve(hit, "www.facebook.com") == platform_address("facebook")


@pytest.mark.parametrize("applied", [event("platform_restriction", "http_blockpage")], indirect=True)
def test_http_blockpage_serves_the_censors_page(lab, hosts, applied) -> None:
    hit, same_isp, _ = hosts
    code, body, err = curl(lab, hit, "http://www.facebook.com/")
    assert code == 0, err
    assert "Surf Safely" in body and "Facebook (lab)" not in body
    assert "Facebook (lab)" in curl(lab, same_isp, "http://www.facebook.com/")[1]
    # Over HTTPS too, under a certificate the client accepts (a censor with a trusted root).
    code, body, err = curl(lab, hit, FB)
    assert code == 0, err
    assert "Surf Safely" in body


@pytest.mark.parametrize("applied", [event("platform_restriction", "tls_mitm")], indirect=True)
def test_tls_mitm_presents_a_certificate_from_the_censors_ca(lab, hosts, applied) -> None:
    hit = hosts[0]
    code, _, err = curl(lab, hit, FB)
    assert code == 60, err  # 60: certificate not trusted
    code, _, _ = curl(lab, hit, FB, "-k")
    assert code == 0, "the interception box completes the handshake"
    assert curl(lab, hosts[1], FB)[0] == 0


def _throughput(lab: runner.Lab, ns: str, url: str, seconds: float = 3) -> float:
    """Bytes per second of a bounded download (curl stops at the time limit; we count what arrived)."""
    p = subprocess.run(["ip", "netns", "exec", ns, "curl", "-s", "-o", "/dev/null", "--max-time", str(seconds),
                        "--cacert", str(lab.ca_bundle), "-w", "%{size_download} %{time_total}", url],
                       capture_output=True, text=True, timeout=seconds + 5)
    size, total = p.stdout.split()
    return float(size) / max(float(total), 1e-3)


@pytest.mark.parametrize("applied", [event("throttling", "throttling")], indirect=True)
def test_throttling_caps_the_platforms_download_in_the_region(lab, hosts, applied) -> None:
    url = "https://www.facebook.com/lab-download.bin"
    slow = _throughput(lab, hosts[0], url)
    fast = _throughput(lab, hosts[1], url)
    assert slow < 60_000, f"throttled to 200 kbit/s, measured {slow:.0f} B/s"
    assert fast > 10 * slow, f"an unthrottled region is not >=10x faster: {fast:.0f} vs {slow:.0f} B/s"
    assert curl(lab, hosts[0], CONTROL)[0] == 0


def test_connectivity_loss_drops_everything_from_the_region_dns_included(lab, hosts) -> None:
    ev = LabEvent(index=92, kind="connectivity_loss", country="PK", platforms=(), technique="unreachable",
                  start_s=0, end_s=60, asns=(17557,), regions=("Punjab",))
    hit, same_isp, other_isp = hosts
    lab.censor.apply(ev)
    try:
        assert resolve(hit, "www.wikipedia.org") != platform_address("control")
        code, _, _ = curl(lab, hit, f"https://{platform_address('control')}/", "-k", timeout=2)
        assert code == 28
        assert curl(lab, same_isp, CONTROL)[0] == 0
        assert curl(lab, other_isp, CONTROL)[0] == 0
    finally:
        lab.censor.revert(ev)
    assert curl(lab, hit, CONTROL)[0] == 0


def test_platform_outage_fails_everywhere_the_control_helper_included(lab, hosts) -> None:
    ev = LabEvent(index=93, kind="platform_outage", country=None, platforms=("facebook",), technique=None,
                  start_s=0, end_s=60, asns=(), regions=())
    lab.censor.apply(ev)
    try:
        for ns in hosts:
            assert curl(lab, ns, FB)[0] == 7
        # From the world itself (where the control helper runs) too: the site is down, not censored.
        assert curl(lab, lab.world_ns, FB)[0] == 7
        assert curl(lab, hosts[0], CONTROL)[0] == 0
    finally:
        lab.censor.revert(ev)
    assert curl(lab, hosts[0], FB)[0] == 0
