"""The lab seen from outside: the pinger probes the regions' customer blocks from the world namespace.

In a shutdown the probes inside cannot upload; the world still sees the country's address blocks stop
answering. `OutsideIn` runs `signals.pinger.Pinger` on a thread that lives in the world namespace (its probe
threads are born there too), one round per probe interval, half an interval after the probes' cycle so a
round never races the censor's schedule; each round's points go into the store like any imported signal, and
the run's detection pass follows it. Only the lab's customer blocks (inside 198.19.0.0/16) are ever probed.

The wire is checked, not trusted: an iptables chain in the world's OUTPUT counts every echo request and SYN
the pinger sends to the country (the rate actually sent), and every echo request sent anywhere else (none).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from observatory.detect.outside import SignalConfig
from observatory.errors import LabError
from observatory.lab import netns
from observatory.lab.plan import LabPlan, customer_block
from observatory.signals.pinger import Block, Pinger, default_prober

COUNTRY_NET = "198.19.0.0/16"  # every ISP's regions; nothing else is a target
COUNTER_CHAIN = "OBS-PINGER"
RATE = 25.0  # packets per second, at most
TIMEOUT = 0.5  # seconds: under the kernel's first SYN retransmission, so one SYN per port and probe


def lab_blocks(plan: LabPlan) -> list[Block]:
    """Every region's customer block, with its network, country and region."""
    return [Block(prefix=customer_block(n.index, r), asn=n.asn, country=n.country, region=region)
            for n in plan.networks for r, region in enumerate(n.regions)]


def write_blocks(plan: LabPlan, path: Any) -> None:
    """The blocks as a file of the form `observatory pinger --blocks` reads (for exploring by hand)."""
    lines = ["prefix,asn,country,region"] + [f"{b.prefix},{b.asn},{b.country},{b.region}" for b in lab_blocks(plan)]
    path.write_text("\n".join(lines) + "\n")


def signal_config(plan: LabPlan) -> SignalConfig:
    """Outside-in detection at the lab's time scale: minutes of history, not days; no time-of-day cycle."""
    interval = timedelta(seconds=plan.interval_s)
    return SignalConfig(history=timedelta(seconds=plan.duration_s) + timedelta(hours=1), min_history_points=3,
                        min_history_span=3 * interval, merge_gap=2 * interval, min_points_alone=2)


@dataclass(frozen=True, slots=True)
class Round:
    index: int
    start: datetime
    seconds: float
    addresses: int  # addresses probed this round
    packets: int  # echo requests and SYNs the kernel counted leaving the world for the country


@dataclass
class OutsideReport:
    rate: float
    targets: list[str]
    sent: list[str]
    rounds: list[Round] = field(default_factory=list)
    stray_echo_requests: int = 0  # echo requests from the world to anywhere outside the country's blocks

    @property
    def packets(self) -> int:
        return sum(r.packets for r in self.rounds)

    def peak_rate(self) -> float:
        """The highest rate of any round: its packets beyond the limiter's one-token burst over its duration
        (n packets paced at r per second span at least (n - 1) / r seconds). The limit must hold there."""
        return max(((r.packets - 1) / r.seconds for r in self.rounds if r.seconds > 0 and r.packets > 1),
                   default=0.0)


def _iptables(ns: str, *args: str) -> str:
    return netns.run(["iptables", "-w", *args], ns=ns).stdout


def install_counter(world_ns: str) -> None:
    _iptables(world_ns, "-N", COUNTER_CHAIN)
    _iptables(world_ns, "-I", "OUTPUT", "1", "-j", COUNTER_CHAIN)
    for rule in (["-d", COUNTRY_NET, "-p", "icmp", "--icmp-type", "echo-request"],
                 ["-d", COUNTRY_NET, "-p", "tcp", "--syn"],
                 ["!", "-d", COUNTRY_NET, "-p", "icmp", "--icmp-type", "echo-request"]):
        _iptables(world_ns, "-A", COUNTER_CHAIN, *rule, "-j", "RETURN")


def read_counter(world_ns: str) -> tuple[int, int]:
    """(probe packets to the country, echo requests elsewhere) sent from the world so far."""
    out = _iptables(world_ns, "-L", COUNTER_CHAIN, "-n", "-v", "-x")
    counts = [int(line.split()[0]) for line in out.splitlines()[2:] if line.strip()]
    if len(counts) != 3:
        raise LabError(f"unexpected {COUNTER_CHAIN} listing in {world_ns}: {out!r}")
    return counts[0] + counts[1], counts[2]


class OutsideIn(threading.Thread):
    """The pinger's rounds, from inside the world namespace, into the store; `fresh` is set after each."""

    def __init__(self, plan: LabPlan, world_ns: str, store: Any, start_mono: float, *, rate: float = RATE,
                 echo: Callable[[str], None] = print) -> None:
        super().__init__(name="lab-pinger", daemon=True)
        self.plan, self.world_ns, self.store, self.start_mono = plan, world_ns, store, start_mono
        self.echo = echo
        self.pinger = Pinger(lab_blocks(plan), default_prober((80, 443), TIMEOUT, icmp=True), rate=rate,
                             seed=len(plan.networks))
        self.report = OutsideReport(rate=rate, targets=self.pinger.targets, sent=self.pinger.sent)
        self.fresh = threading.Event()
        self.stop = threading.Event()
        self.error: BaseException | None = None
        install_counter(world_ns)

    def run(self) -> None:
        try:
            netns.enter(self.world_ns)
            before, _ = read_counter(self.world_ns)
            k = 0
            while True:
                at = self.start_mono + (k + 0.5) * self.plan.interval_s
                if self.stop.wait(max(0.0, at - time.monotonic())):
                    return
                started, t = datetime.now(UTC), time.monotonic()
                sent_before = len(self.pinger.sent)
                points = self.pinger.run_round(now=started)
                seconds = time.monotonic() - t
                self.store.insert_signals(points)
                after, stray = read_counter(self.world_ns)
                self.report.rounds.append(Round(index=k, start=started, seconds=seconds,
                                                addresses=len(self.pinger.sent) - sent_before,
                                                packets=after - before))
                self.report.stray_echo_requests = stray
                before = after
                self.fresh.set()
                k += 1
        except BaseException as exc:  # reported by the main thread
            self.error = exc
