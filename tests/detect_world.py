"""A small hand-made world of series cells for the detector's unit tests (no simulator, no store).

Dedicated probes measure every target once per 15-minute cycle (each in a fixed 5-minute phase); every
measurement fails at random with `noise`; events make chosen measurements fail with a technique.
"""

from __future__ import annotations

import functools
import json
import random
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from observatory.incident import Incident
from observatory.series import SeriesCell, Witness

T0 = datetime(2024, 1, 15, tzinfo=UTC)
PLATFORMS = ("twitter", "facebook", "youtube", "control")
MIXED = ("tcp_blackhole", "tls_interference", "http_interference", "unreachable")


@dataclass
class Net:
    asn: int
    regions: tuple[str, ...] = ("North", "South")
    probes: int = 12


@dataclass
class Event:
    # "block" (platforms), "down" (platform outage), "cut" (everything fails), "silence", "slow", "faulty",
    # "quiet" (probe `probe` stops reporting), "flaky" (a share `coverage` of everything fails: a resolver or
    # a flaky hour, the probes keep their connection), "fault" (the network's resolver or line failing: every
    # target, the control too, fails with `technique` for a share `coverage` of the measurements, each
    # independently)
    kind: str
    start: datetime
    end: datetime
    platforms: tuple[str, ...] = ("twitter", "facebook")
    technique: str = "tls_interference"
    asns: tuple[int, ...] = ()
    regions: tuple[str, ...] = ()
    country: str = "PK"
    probe: int = 0  # for "faulty": the probe index that goes bad
    coverage: float = 0.95
    # for "fault": the control's share, when a flaky line fails the small nearby control less often than the
    # platforms' far and heavy sites (None: the same share); technique "mixed": each failure of its own kind
    control_coverage: float | None = None


@dataclass
class World:
    countries: dict[str, list[Net]] = field(default_factory=lambda: {"PK": [Net(17557), Net(45669), Net(23674)]})
    start: datetime = T0
    days: float = 2.8
    noise: float = 0.02
    seed: int = 1
    events: list[Event] = field(default_factory=list)
    platforms: tuple[str, ...] = PLATFORMS
    # buckets between two runs of one probe (3: every 15 minutes; 36: every 3 hours, a sparse volunteer)
    every: int = 3
    # probe ids ("p:") as dedicated probes have; False: a new report id per run ("r:"), as volunteers in OONI
    stable_ids: bool = True
    # probes' runs spread over the whole cycle (and networks offset from each other), as sparse volunteers'
    spread: bool = False

    def cells(self, shift: timedelta = timedelta(0)) -> list[SeriesCell]:
        rng = random.Random(self.seed)
        out: list[SeriesCell] = []
        buckets = int(self.days * 288)
        for b in range(buckets):
            t = self.start + timedelta(minutes=5 * b)
            for cc, nets in self.countries.items():
                for net in nets:
                    for ri, region in enumerate(net.regions):
                        members = [i for i in range(net.probes)
                                   if i % len(net.regions) == ri and (b - self._phase(i, net)) % self.every == 0]
                        for platform in self.platforms:
                            cell = self._cell(rng, t, cc, net, region, platform, members)
                            if cell is not None:
                                cell.bucket = cell.bucket + shift
                                out.append(cell)
        return out

    def _phase(self, i: int, net: Net) -> int:
        """Probe i's bucket within its cycle: i (dedicated probes a bucket apart), or with `spread` its
        share of the cycle (sparse volunteers running at any time of it)."""
        return (i * self.every) // net.probes + net.asn % 7 if self.spread else i

    def _active(self, t: datetime, cc: str, net: Net, region: str, kind: str) -> list[Event]:
        return [e for e in self.events if e.kind == kind and e.country == cc and e.start <= t < e.end
                and (not e.asns or net.asn in e.asns) and (not e.regions or region in e.regions)]

    def _cell(self, rng: random.Random, t: datetime, cc: str, net: Net, region: str, platform: str,
              members: list[int]) -> SeriesCell | None:
        if self._active(t, cc, net, region, "silence"):
            return None
        quiet = {e.probe for e in self._active(t, cc, net, region, "quiet")}
        members = [i for i in members if i not in quiet]
        cell = SeriesCell(bucket=t, country=cc, asn=net.asn, region=region, platform=platform,
                          network_name=f"Net {net.asn}")
        keys: set[str] = set()
        witnesses: set[Witness] = set()
        kbps: list[float] = []
        for i in members:
            verdict = "ok"
            speed = 20000.0 * (0.8 + 0.4 * rng.random())
            if rng.random() < self.noise:
                verdict = rng.choice(["tcp_blackhole", "tls_interference", "dns_tampering"])
            for e in self._active(t, cc, net, region, "block"):
                if platform in e.platforms and rng.random() < e.coverage:
                    verdict = e.technique
            for e in self._active(t, cc, net, region, "slow"):
                if platform in e.platforms:
                    speed /= 30
            if self._active(t, cc, net, region, "cut"):
                verdict = "unreachable"
            for e in self._active(t, cc, net, region, "flaky"):  # a degraded network: a share of everything
                if rng.random() < e.coverage:
                    verdict = "unreachable"
            for e in [e for e in self.events if e.kind == "down" and e.start <= t < e.end]:
                if platform in e.platforms and (not e.asns or net.asn in e.asns):
                    verdict = "down"
            for e in self._active(t, cc, net, region, "faulty"):
                if e.probe == i:
                    verdict = "tcp_blackhole"
            for e in self._active(t, cc, net, region, "fault"):
                share = e.control_coverage if platform == "control" and e.control_coverage is not None else e.coverage
                if rng.random() < share:
                    verdict = e.technique if e.technique != "mixed" else rng.choice(MIXED)
            cell.total += 1
            if verdict == "ok":
                cell.ok += 1
                kbps.append(speed)
            elif verdict == "down":
                cell.down += 1
                cell.down_probes += 1
            else:
                cell.anomalous += 1
                cell.by_technique[verdict] = cell.by_technique.get(verdict, 0) + 1
                key = f"p:{net.asn}-{i}" if self.stable_ids else f"r:{net.asn}-{i}-{int(t.timestamp())}"
                keys.add(key)
                witnesses.add(Witness(verdict, key))
        if not members:
            return None
        cell.probes = len(members)
        cell.anomalous_probes = len(keys)
        cell.anomalous_keys = tuple(sorted(keys))
        cell.witnesses = tuple(sorted(witnesses))
        kbps.sort()
        cell.median_kbps = kbps[len(kbps) // 2] if kbps else None
        return cell


SMALL_SCENARIO = Path(__file__).parent / "data" / "detect-small.toml"


@functools.cache
def small_simulation() -> tuple[tuple[str, ...], tuple[Incident, ...]]:
    """tests/data/detect-small.toml simulated once per test session (dedicated probes): lines and truth."""
    from observatory.simulate import load_scenario, write_simulation

    d = Path(tempfile.mkdtemp(prefix="detect-small-"))
    out, truth = d / "m.jsonl", d / "truth.json"
    write_simulation(load_scenario(SMALL_SCENARIO), out=out, truth_path=truth)
    lines = tuple(out.read_text().splitlines())
    incidents = tuple(Incident.from_json(x) for x in json.loads(truth.read_text()))
    shutil.rmtree(d, ignore_errors=True)
    return lines, incidents
