"""The outside-in prober: is each of a country's address blocks still answering, seen from outside?

In the spirit of Trinocular (Quan, Heidemann, Pradkin 2013): for every block we keep a belief that it is up,
and each round probes only as many of its addresses as it takes to be sure (a reply proves "up"; silence
lowers the belief in proportion to how often the block's addresses usually answer). Few probes per block per
round, a global rate limit, and nothing but the listed blocks is ever probed.

A probe is an ICMP echo (raw socket, when permitted) or a TCP SYN to a common port: a SYN-ACK or a RST both
prove a live host. The rate limit counts packets, not addresses: the network prober (`NetProber`) takes a token
before each echo request and each SYN it lets the kernel send (a SYN the kernel may retransmit costs two).
Results are aggregated per country, region, network and network-in-region as the share of responsive blocks
(signal `active_probing`, source `pinger`), stored like any other signal; a round's points carry the time the
round started.
"""

from __future__ import annotations

import csv
import ipaddress
import os
import random
import socket
import struct
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime

from observatory.errors import ConfigError
from observatory.signals import SignalPoint, country_code

UP, DOWN, UNKNOWN = "up", "down", "unknown"


@dataclass(frozen=True, slots=True, kw_only=True)
class Block:
    prefix: ipaddress.IPv4Network | ipaddress.IPv6Network
    asn: int
    country: str
    region: str | None = None


@dataclass(slots=True)
class BlockState:
    block: Block
    belief: float = 0.5  # P(block is up)
    availability: float = 0.5  # share of probed addresses that usually answer
    responsive: list[str] = field(default_factory=list)  # addresses seen answering, tried first
    state: str = UNKNOWN


def read_blocks(path: str) -> list[Block]:
    """A blocks file: CSV with header prefix,asn,country,region (region may be empty)."""
    blocks: list[Block] = []
    try:
        with open(path, encoding="utf-8", newline="") as fh:
            rows = list(csv.DictReader(line for line in fh if not line.startswith("#")))
    except OSError as exc:
        raise ConfigError(f"--blocks {path}: {exc.strerror or exc}") from None
    for i, row in enumerate(rows, start=2):
        try:
            prefix = ipaddress.ip_network((row.get("prefix") or "").strip(), strict=False)
            asn = int((row.get("asn") or "").strip().upper().removeprefix("AS"))
            cc = country_code(row.get("country") or "")
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"{path}:{i}: {exc}") from None
        if prefix.num_addresses > 65536:
            raise ConfigError(f"{path}:{i}: prefix {prefix} is larger than a /16; split it into blocks")
        blocks.append(Block(prefix=prefix, asn=asn, country=cc, region=(row.get("region") or "").strip() or None))
    if not blocks:
        raise ConfigError(f"--blocks {path}: no blocks")
    return blocks


def sample_addresses(block: Block, k: int, rnd: random.Random) -> list[str]:
    hosts = list(block.prefix.hosts()) if block.prefix.num_addresses > 2 else list(block.prefix)
    return [str(a) for a in rnd.sample(hosts, min(k, len(hosts)))]


def plan_targets(blocks: Sequence[Block], *, per_block: int = 16, seed: int = 0) -> dict[Block, list[str]]:
    """Every address the pinger may ever probe: a fixed sample of each listed block, nothing else."""
    rnd = random.Random(seed)
    return {b: sample_addresses(b, per_block, rnd) for b in blocks}


class RateLimiter:
    """A token bucket shared by all probing threads: at most `rate` probes per second, small bursts."""

    def __init__(self, rate: float, burst: int = 1, clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0:
            raise ConfigError("--rate must be positive")
        self.rate, self.burst, self.clock = rate, burst, clock
        self.tokens = float(burst)
        self.last = clock()
        self.lock = threading.Lock()

    def acquire(self) -> None:
        while True:
            with self.lock:
                now = self.clock()
                self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
                self.last = now
                if self.tokens >= 1:
                    self.tokens -= 1
                    return
                wait = (1 - self.tokens) / self.rate
            time.sleep(wait)


def _no_pace() -> None:
    return None


def tcp_alive(addr: str, ports: Sequence[int], timeout: float, pace: Callable[[], None] = _no_pace) -> bool:
    """A SYN-ACK or a RST on any port proves the host is there. `pace` is called once per SYN that may leave:
    with a timeout under a second the kernel sends one (its first retransmission comes after 1 s); longer,
    the socket is limited to one retransmission (TCP_SYNCNT=1) and paced twice."""
    family = socket.AF_INET6 if ":" in addr else socket.AF_INET
    for port in ports:
        s = socket.socket(family, socket.SOCK_STREAM)
        s.settimeout(timeout)
        pace()
        if timeout >= 1.0:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_SYNCNT, 1)
            pace()
        try:
            s.connect((addr, port))
            return True
        except ConnectionRefusedError:
            return True
        except OSError:
            continue
        finally:
            s.close()
    return False


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def icmp_alive(addr: str, timeout: float, pace: Callable[[], None] = _no_pace) -> bool | None:
    """An ICMP echo; None when raw sockets are not permitted here (not root). A reply already queued when a
    slow thread wakes after the deadline still counts (a loaded machine is not a dead host)."""
    if ":" in addr:
        return None
    try:
        s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    except PermissionError:
        return None
    ident = (os.getpid() ^ threading.get_ident()) & 0xFFFF
    seq = random.randrange(1 << 16)
    header = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
    payload = b"observatory"
    packet = struct.pack("!BBHHH", 8, 0, _checksum(header + payload), ident, seq) + payload
    try:
        pace()
        s.sendto(packet, (addr, 0))
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                s.setblocking(False)
            else:
                s.settimeout(left)
            try:
                data, src = s.recvfrom(2048)
            except (BlockingIOError, TimeoutError):
                return False
            ihl = (data[0] & 0x0F) * 4
            typ, _, _, rid, rseq = struct.unpack("!BBHHH", data[ihl:ihl + 8])
            if src[0] == addr and typ == 0 and rid == ident and rseq == seq:
                return True
    except OSError:
        return False
    finally:
        s.close()


@dataclass
class NetProber:
    """Probes an address on the wire: an ICMP echo first (when raw sockets are permitted), then TCP SYNs.
    `pace` is called before every packet; a `Pinger` sets it to its rate limiter."""

    ports: Sequence[int] = (80, 443)
    timeout: float = 1.0
    icmp: bool = True
    pace: Callable[[], None] = _no_pace

    def __call__(self, addr: str) -> bool:
        if self.icmp and icmp_alive(addr, self.timeout, self.pace):
            return True
        return tcp_alive(addr, self.ports, self.timeout, self.pace)


def default_prober(ports: Sequence[int] = (80, 443), timeout: float = 1.0, icmp: bool = True) -> NetProber:
    return NetProber(ports=tuple(ports), timeout=timeout, icmp=icmp)


@dataclass
class Pinger:
    blocks: Sequence[Block]
    probe: Callable[[str], bool]
    rate: float = 50.0  # packets per second, at most (probes per second for a probe that is not a NetProber)
    max_probes_per_block: int = 8
    per_block_sample: int = 16
    concurrency: int = 16
    seed: int = 0
    sent: list[str] = field(default_factory=list)  # every address probed, in order (for audits and tests)

    def __post_init__(self) -> None:
        self._targets = plan_targets(self.blocks, per_block=self.per_block_sample, seed=self.seed)
        self._states = {b: BlockState(b) for b in self.blocks}
        self._limiter = RateLimiter(self.rate)
        if isinstance(self.probe, NetProber):
            self.probe.pace = self._limiter.acquire  # paced per packet, inside the prober
        self._sent_lock = threading.Lock()
        self._rnd = random.Random(self.seed)

    @property
    def targets(self) -> list[str]:
        return [a for addrs in self._targets.values() for a in addrs]

    def _probe(self, addr: str) -> bool:
        if not isinstance(self.probe, NetProber):
            self._limiter.acquire()
        with self._sent_lock:
            self.sent.append(addr)
        return self.probe(addr)

    def _round_for(self, st: BlockState) -> None:
        """Probe until the belief is decided or the per-round budget is spent (Trinocular's adaptive step)."""
        addrs = self._targets[st.block]
        order = st.responsive + [a for a in self._rnd.sample(addrs, len(addrs)) if a not in st.responsive]
        belief = 0.5 + 0.8 * (st.belief - 0.5)  # drift toward uncertainty between rounds
        for addr in order[: self.max_probes_per_block]:
            if self._probe(addr):
                belief = 1.0
                if addr not in st.responsive:
                    st.responsive.append(addr)
                st.availability = min(0.95, 0.9 * st.availability + 0.1)
                break
            a = st.availability
            belief = belief * (1 - a) / (belief * (1 - a) + (1 - belief))
            if belief < 0.1:
                break
        st.belief = belief
        st.state = UP if belief >= 0.9 else DOWN if belief <= 0.1 else UNKNOWN

    def run_round(self, now: datetime | None = None) -> list[SignalPoint]:
        """One round over every block; the points are stamped `now`, by default the round's start."""
        started = now or datetime.now(UTC)
        states = list(self._states.values())
        with ThreadPoolExecutor(max(1, min(self.concurrency, len(states)))) as pool:
            list(pool.map(self._round_for, states))
        return aggregate(states, started)

    def states(self) -> list[BlockState]:
        return list(self._states.values())


def aggregate(states: Iterable[BlockState], now: datetime) -> list[SignalPoint]:
    """Share of responsive blocks per country, region, network and network-in-region (unknown blocks do not
    count). The network-in-region series tell a regional shutdown (some of a network's regions) from a
    network's own outage (all of them)."""
    groups: dict[tuple[str, str | None, int | None], list[str]] = defaultdict(list)
    for st in states:
        b = st.block
        keys: list[tuple[str, str | None, int | None]] = [(b.country, None, None), (b.country, None, b.asn)]
        if b.region:
            keys += [(b.country, b.region, None), (b.country, b.region, b.asn)]
        for key in keys:
            groups[key].append(st.state)
    out = []
    for (cc, region, asn), sts in sorted(groups.items(), key=lambda kv: str(kv[0])):
        judged = [s for s in sts if s != UNKNOWN]
        if not judged:
            continue
        out.append(SignalPoint(time=now, country=cc, region=region, asn=asn, signal="active_probing",
                               source="pinger", value=sum(s == UP for s in judged) / len(judged)))
    return out
