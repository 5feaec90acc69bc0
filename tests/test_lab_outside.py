"""Outside-in signals in the lab, on real packets: the pinger in the world namespace sees Iran's national
shutdown and Manipur's regional one while the probes inside cannot upload, and the detector confirms each as
`connectivity_loss` with its scope within three pinger rounds; Pakistan's platform block at the same time stays
a restriction. The pinger only ever targets the lab's customer blocks, and its rate limit holds on the wire
(packets counted by the kernel in the lab, and timed by a packet socket in namespaces this test makes).
"""

from __future__ import annotations

import ipaddress
import os
import socket
import struct
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from observatory.lab import netns, pipeline, runner
from observatory.lab.outside import lab_blocks
from observatory.lab.plan import LabPlan, load_plan
from observatory.lab.verify import expected_incidents
from observatory.signals.pinger import Block, Pinger, default_prober

pytestmark = [pytest.mark.lab, pytest.mark.timeout(900)]

SCENARIO = Path(__file__).parent.parent / "scenarios" / "lab" / "outside-in.toml"
LAB_RANGES = [ipaddress.ip_network(n) for n in
              ("198.18.0.0/15", "192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24")]
MAX_ROUNDS = 3


def _skip_unless_lab() -> None:
    why = netns.namespaces_available()
    if why:
        pytest.skip(f"lab tests need Linux network namespaces: {why}")


def test_shutdowns_seen_from_outside_within_three_rounds_and_a_restriction_stays_one(tmp_path: Path) -> None:
    _skip_unless_lab()
    plan = load_plan(SCENARIO)
    runner.down(plan.lab_id)
    lines: list[str] = []
    started = time.monotonic()
    result = pipeline.run(plan, db=str(tmp_path / "lab.duckdb"), echo=lines.append)
    took = time.monotonic() - started
    report = "\n".join(lines)
    out = result.outside
    assert out is not None
    rounds_to = _rounds_to_confirmation(plan, result)
    summary = (f"\nrun took {took:.0f}s; rounds to confirmation: {rounds_to}; pinger {out.packets} packets in "
               f"{len(out.rounds)} rounds, peak {out.peak_rate():.1f}/s, limit {out.rate:g}/s")
    Path("test-artifacts").mkdir(exist_ok=True)
    Path("test-artifacts", f"lab-{plan.lab_id}.txt").write_text(report + summary + "\n")
    assert netns.lab_namespaces(plan.lab_id) == [], "namespaces left behind"
    assert runner.lab_processes(plan.lab_id) == [], "processes left behind"

    # the pinger's targets: the lab's customer blocks and nothing else, and it sent to nothing else
    blocks = [b.prefix for b in lab_blocks(plan)]
    assert out.targets and all(any(ipaddress.ip_address(a) in n for n in LAB_RANGES) for a in out.targets)
    assert all(any(ipaddress.ip_address(a) in b for b in blocks) for a in out.targets)
    assert set(out.sent) <= set(out.targets)
    assert out.stray_echo_requests == 0, "echo requests left the world for somewhere outside the country"
    # the rate limit, on the packets the kernel counted, round by round
    assert out.packets > 0 and out.peak_rate() <= out.rate * 1.05, summary

    # every event found with its kind, scope, networks, regions and times, and nothing else (no shutdown
    # reported for Pakistan, whose blocks kept answering)
    assert result.ok, report + summary
    assert not [i for p in result.passes for i in p.incidents
                if i.country == "PK" and i.kind == "connectivity_loss"], "the restriction was taken for a shutdown"
    for event, n in rounds_to.items():
        assert n is not None and n <= MAX_ROUNDS, f"{event}: confirmed after {n} rounds\n{report}{summary}"


def _rounds_to_confirmation(plan: LabPlan, result: pipeline.RunResult) -> dict[str, int | None]:
    """For each shutdown: how many pinger rounds after the censor's start it took until a detection pass
    stored a confirmed connectivity_loss of that country with the expected scope, while the event was on
    and the affected probes had not been heard from since it began."""
    assert result.outside is not None
    out: dict[str, int | None] = {}
    db_beats = _heartbeats(result.db)
    for exp in expected_incidents(plan, result.t0, _actual(result)):
        if exp.kind != "connectivity_loss":
            continue
        name = f"{exp.country} {exp.scope}"
        out[name] = None
        after = [r for r in result.outside.rounds if r.start >= exp.start]
        for p in result.passes:
            if p.round is None or not after or p.round < after[0].index or p.time > exp.end:
                continue
            hit = [i for i in p.incidents if i.country == exp.country and i.kind == "connectivity_loss"
                   and i.scope == exp.scope and i.status == "confirmed" and i.end is None]
            if hit:
                silent = [b for b in db_beats if b[2] == exp.country and (not exp.regions or b[4] in exp.regions)
                          and exp.start + timedelta(seconds=5) <= b[1] <= p.time]
                assert not silent, f"{name}: probes inside were heard during the shutdown: {silent[:3]}"
                out[name] = p.round - after[0].index + 1
                break
    return out


def _actual(result: pipeline.RunResult) -> dict[int, tuple[datetime, datetime]]:
    """Event index -> (start, end) as the censor applied them, read back from the verification."""
    return {r.expected.event.index: (r.expected.start, r.expected.end) for r in result.verification.events}


def _heartbeats(db: str) -> list[tuple[str, datetime, str, int, str | None]]:
    from observatory.store import open_store

    store = open_store(db)
    try:
        return list(store.heartbeats(since=datetime(2000, 1, 1, tzinfo=UTC), until=datetime(2100, 1, 1, tzinfo=UTC)))
    finally:
        store.close()


# --- the rate limit, timed packet by packet --------------------------------------------------------------

SO_TIMESTAMPNS = 35
ETH_P_IP = 0x0800


def _capture(ns: str, dev: str, stop: threading.Event, ready: threading.Event,
             got: list[tuple[float, str, str]]) -> None:
    """A packet socket in `ns`: (kernel arrival time, destination, 'echo'|'syn') of each probe packet."""
    netns.enter(ns)
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_IP))
    s.bind((dev, 0))
    s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    s.settimeout(0.2)
    ready.set()
    try:
        while not stop.is_set():
            try:
                data, anc, _, _ = s.recvmsg(2048, 64)
            except TimeoutError:
                continue
            eth = 14
            ip = data[eth:]
            if len(ip) < 20 or ip[0] >> 4 != 4:
                continue
            ihl = (ip[0] & 0x0F) * 4
            proto, dst = ip[9], socket.inet_ntoa(ip[16:20])
            kind = None
            if proto == 1 and ip[ihl] == 8:
                kind = "echo"
            elif proto == 6 and (ip[ihl + 13] & 0x12) == 0x02:  # SYN without ACK
                kind = "syn"
            if kind is None:
                continue
            ts = next((struct.unpack("qq", d[:16]) for lvl, typ, d in anc
                       if lvl == socket.SOL_SOCKET and typ == SO_TIMESTAMPNS), None)
            got.append((ts[0] + ts[1] / 1e9 if ts else time.time(), dst, kind))
    finally:
        s.close()


def test_pinger_rate_limit_holds_packet_by_packet(tmp_path: Path) -> None:
    """Two namespaces made here: the pinger in one, 64 live and 4 dead blocks behind the other, where a
    packet socket timestamps every echo request and SYN. More demand than the limit allows: the limit binds.
    Wire times carry the threads' scheduling jitter on top of the limiter's pacing: a little slack."""
    _skip_unless_lab()
    tag = f"rt{os.getpid() % 100000}"
    state = netns.LabState(lab_id=tag, state_dir=str(tmp_path / "state"))
    a, b = f"{netns.PREFIX}{tag}-a", f"{netns.PREFIX}{tag}-b"
    rate = 30.0
    try:
        state.add_namespace(a)
        state.add_namespace(b)
        netns.veth(a, "v0", "198.18.200.1/24", b, "v0", "198.18.200.2/24")
        netns.run(["ip", "-n", a, "route", "add", "198.18.192.0/20", "via", "198.18.200.2"])
        for third in (201, 203, 205, 207):  # every address of these /24s answers (a local route on lo)
            netns.add_address(b, f"198.18.{third}.0/24")
        live = [Block(prefix=ipaddress.ip_network(f"198.18.{201 + 2 * (i // 16)}.{16 * (i % 16)}/28"), asn=64500,
                      country="PK", region=f"r{i % 4}") for i in range(64)]
        dead = [Block(prefix=ipaddress.ip_network(f"198.18.202.{16 * i}/28"), asn=64501, country="PK",
                      region=f"r{i % 4}") for i in range(4)]
        pinger = Pinger(live + dead, default_prober((80, 443), 0.3, icmp=True), rate=rate)
        got: list[tuple[float, str, str]] = []
        stop, ready = threading.Event(), threading.Event()
        cap = threading.Thread(target=_capture, args=(b, "v0", stop, ready, got), daemon=True)
        cap.start()
        assert ready.wait(10)
        errors: list[BaseException] = []

        def rounds() -> None:
            try:
                netns.enter(a)
                for _ in range(2):
                    pinger.run_round()
            except BaseException as exc:
                errors.append(exc)

        t = threading.Thread(target=rounds, daemon=True)
        t.start()
        t.join(120)
        time.sleep(0.3)
        stop.set()
        cap.join(10)
        assert not errors and not t.is_alive()
    finally:
        problems = netns.teardown(state)
    assert problems == [] and netns.lab_namespaces(tag) == []

    targets = set(pinger.targets)
    assert got and {dst for _, dst, _ in got} <= targets
    assert {k for _, _, k in got} == {"echo", "syn"}, "both kinds of probe went out"
    times = sorted(t for t, _, _ in got)
    span = times[-1] - times[0]
    mean = (len(times) - 1) / span
    # any one-second window: at most the rate plus the bucket's single burst token
    peak = max(sum(1 for u in times[i:] if u < x + 1.0) for i, x in enumerate(times))
    print(f"{len(times)} probe packets in {span:.2f}s: mean {mean:.1f}/s, peak {peak} in any 1 s, limit {rate:g}/s")
    assert peak <= rate + 3, f"{peak} packets in one second at a limit of {rate:g}/s"
    assert mean <= rate * 1.02
    assert peak >= rate * 0.8, f"the limit never bound (peak {peak}/s): the test proves nothing"
