"""Streaming generation: a scenario -> OONI-format measurement lines in upload order, and the ground truth.

The hot loop draws only what varies per measurement (whether it fails, is late or duplicated, which jitter
variant it shows, its uid) and assembles the line from byte pieces rendered once: the envelope of each
(probe, target), and the test keys of each (network, target, outcome, variant). That is what reaches tens of
thousands of measurements a second in pure Python. Memory stays flat: the only growing state is the heap of
late uploads, bounded by the late window (24 h) and by the longest connectivity loss.

Same scenario, seed and activity => byte-identical output (one seeded random stream, fixed iteration order).
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import msgspec

from observatory.simulate import observations as obs
from observatory.simulate import ooni_layout as layout
from observatory.simulate.families import Model
from observatory.simulate.imtests import TEST_OF_PLATFORM, im_test_keys_json
from observatory.simulate.imtests import TEST_VERSION as IM_TEST_VERSION
from observatory.simulate.scenario import Event, Scenario
from observatory.simulate.world import (
    _MEAN_WEIGHT,
    DEDICATED,
    EVENING_WEIGHTS,
    MOBILE_ONLINE,
    VOLUNTEER,
    VOLUNTEER_RUNS_PER_DAY,
    NetworkFault,
    Probe,
    Target,
    World,
    build_world,
)
from observatory.vocab import IncidentKind

VARIANTS = 8  # jitter variants rendered per (network, target, outcome); a power of two
SOFTWARE = {
    layout.OWN: (b"observatory", b"0.1.0"),
    layout.OONI_04: (b"ooniprobe", b"3.20.1"),
    layout.OONI_05: (b"ooniprobe", b"3.22.0"),
}
ENGINE = {layout.OWN: "observatory", layout.OONI_04: "ooniprobe-engine", layout.OONI_05: "ooniprobe-engine"}
HELPER = {layout.OWN: "https://helper.observatory.example.org", layout.OONI_04: "https://0.th.ooni.org",
          layout.OONI_05: "https://0.th.ooni.org"}
STEP_SECONDS = 4  # a probe measures its targets one after the other
LATE_MIN_S, LATE_MAX_S = 3600, 24 * 3600
DROP_AFTER_OUTAGE = 0.2  # share of measurements lost when the network comes back (spool wiped, app killed)


# --- time formatting without datetime in the hot loop ---------------------------------------------------

_TOD = [b"%02d:%02d:%02d" % (s // 3600, s // 60 % 60, s % 60) for s in range(86400)]
_TODC = [b"%02d%02d%02dZ" % (s // 3600, s // 60 % 60, s % 60) for s in range(86400)]
_DAYS: dict[int, tuple[bytes, bytes]] = {}


def _day(day: int) -> tuple[bytes, bytes]:
    got = _DAYS.get(day)
    if got is None:
        d = datetime.fromtimestamp(day * 86400, UTC)
        got = _DAYS[day] = (d.strftime("%Y-%m-%d ").encode(), d.strftime("%Y%m%dT").encode())
    return got


def ooni_time(epoch: int) -> bytes:
    """'YYYY-MM-DD HH:MM:SS' of a UNIX time."""
    day, tod = divmod(epoch, 86400)
    return _day(day)[0] + _TOD[tod]


def compact_time(epoch: int) -> bytes:
    """'YYYYMMDDTHHMMSSZ' of a UNIX time (the prefix of OONI-style ids)."""
    day, tod = divmod(epoch, 86400)
    return _day(day)[1] + _TODC[tod]


# --- events, resolved for the hot loop ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _ActiveEvent:
    start: float
    end: float
    probes: frozenset[int]
    platforms: frozenset[str]  # empty: every target
    outcome: str
    coverage: float
    offline: bool  # connectivity loss: the probe cannot upload until the end


def _resolve_events(world: World) -> list[_ActiveEvent]:
    out = []
    for i, e in enumerate(world.scenario.events):
        assert isinstance(e.start, datetime) and isinstance(e.end, datetime)
        probes = frozenset(p.index for p in world.probes if _affects(e, p))
        if e.kind == IncidentKind.PLATFORM_OUTAGE:
            outcome = (obs.DOWN_DNS, obs.DOWN_TCP)[i % 2]
        else:
            assert e.technique is not None
            outcome = e.technique
        out.append(
            _ActiveEvent(
                start=e.start.timestamp(),
                end=e.end.timestamp(),
                probes=probes,
                platforms=frozenset(e.platforms),
                outcome=outcome,
                coverage=e.coverage,
                offline=e.kind == IncidentKind.CONNECTIVITY_LOSS,
            )
        )
    return out


def _affects(e: Event, p: Probe) -> bool:
    if e.country is not None and p.net.cc != e.country:
        return False
    if e.asns and p.net.asn not in e.asns:
        return False
    return not e.regions or p.region in e.regions


# --- the generator ----------------------------------------------------------------------------------------


class Generator:
    """Iterate `lines()` for (upload time, JSON line) pairs in upload order."""

    def __init__(self, scenario: Scenario, activity: str = DEDICATED, model: Model | None = None) -> None:
        self.world = build_world(scenario, activity, model)
        self.model = self.world.model
        self.scenario = scenario
        self.activity = activity
        self.rng = random.Random(f"{scenario.seed}/stream/{activity}")
        self.events = _resolve_events(self.world)
        self._keys: dict[tuple[int, int, str, int, str], tuple[bytes, bytes]] = {}
        # our probe writes our layout; ooniprobe (every volunteer; dedicated ones if the model says so) OONI's
        ooni = activity == VOLUNTEER or self.model.dedicated_ooni
        self._style = layout.OONI_05 if ooni and self.model.share_05 >= 1 else layout.OONI_04 if ooni else layout.OWN
        self._share_05 = self.model.share_05 if ooni and 0 < self.model.share_05 < 1 else 0.0
        self._heads = {style: self._envelope_head(style) for style in layout.STYLES}
        # ooniprobe's IM tests, in the share of runs the model gives them
        self._im_share = self.model.im_share if ooni else 0.0
        self._im_tests = [TEST_OF_PLATFORM.get(t.platform) for t in self.world.targets]
        self._im_heads = {test: self._envelope_head(layout.OONI_04, test) for test in IM_TEST_VERSION}
        self._im_bodies: dict[tuple[int, int], bytes] = {}
        self._mids = {n.index: f"_webconnectivity_{n.cc}_{n.asn}_n1_".encode() for n in self.world.networks}
        self._bodies = [
            {style: [self._envelope_body(p, t, style) for t in self.world.targets] for style in self._styles()}
            for p in self.world.probes
        ]
        nz = scenario.noise
        self._fail_p = [
            [min(1.0, nz.failure_rate * n.flakiness[t.platform]) for t in self.world.targets]
            for n in self.world.networks
        ]
        self.count = 0  # lines produced so far, duplicates included
        assert isinstance(scenario.end, datetime)
        self._end = scenario.end.timestamp()

    # envelope pieces ---------------------------------------------------------------------------------------

    def _styles(self) -> tuple[str, ...]:
        return (self._style, layout.OONI_05) if self._share_05 else (self._style,)

    def _envelope_head(self, style: str, im_test: str | None = None) -> bytes:
        name, version = SOFTWARE[style]
        test = im_test or "web_connectivity"
        test_version = IM_TEST_VERSION[im_test] if im_test else layout.TEST_VERSION[style]
        return (
            b'","data_format_version":"0.2.0","test_name":"'
            + test.encode()
            + b'","test_version":"'
            + test_version.encode()
            + b'","software_name":"'
            + name
            + b'","software_version":"'
            + version
            + b'","measurement_start_time":"'
        )

    def _envelope_body(self, p: Probe, t: Target, style: str, im_test: str | None = None) -> bytes:
        n = p.net
        # the annotations and test helper our probe (observatory/probe/runner.py) or OONI's records
        annotations: dict[str, Any] = {}
        if p.probe_id is not None and style == layout.OWN:  # ooniprobe has no stable identity
            annotations["probe_id"] = p.probe_id
        annotations["engine_name"] = ENGINE[style]
        annotations["region"] = p.region
        annotations["platform"] = t.platform
        rest = {
            "probe_cc": n.cc,
            "probe_asn": f"AS{n.asn}",
            "probe_network_name": n.network.name,
            "resolver_asn": f"AS{n.asn}",
            "resolver_ip": n.resolver_ip,
            "resolver_network_name": n.network.name,
            "input": None if im_test else t.url,  # IM tests take no input: their endpoints are fixed
            "annotations": annotations,
            "test_helpers": {} if im_test else {"backend": {"address": HELPER[style], "type": "https"}},
        }
        encoded = msgspec.json.encode(rest)
        return b"," + encoded[1:-1] + b',"test_keys":'

    def _test_keys(self, net: int, target: int, outcome: str, variant: int, style: str) -> tuple[bytes, bytes]:
        key = (net, target, outcome, variant, style)
        got = self._keys.get(key)
        if got is None:
            tk = obs.test_keys_json(
                self.world.networks[net], self.world.targets[target], outcome, variant, self.scenario.seed, style
            )
            got = self._keys[key] = (b"%.3f" % obs.runtime(tk), tk + b"}")
        return got

    def _im_body(self, p: Probe, i: int, test: str) -> bytes:
        got = self._im_bodies.get((p.index, i))
        if got is None:
            got = self._im_bodies[(p.index, i)] = self._envelope_body(p, self.world.targets[i], layout.OONI_04, test)
        return got

    def _im_keys(self, net: int, target: int, outcome: str, variant: int, test: str) -> tuple[bytes, bytes]:
        key = (net, target, outcome, variant, "im:" + test)
        got = self._keys.get(key)
        if got is None:
            tk = im_test_keys_json(
                test, self.world.networks[net], self.world.targets[target], outcome, variant, self.scenario.seed
            )
            got = self._keys[key] = (b"%.3f" % obs.runtime(tk), tk + b"}")
        return got

    # the stream --------------------------------------------------------------------------------------------

    def lines(self) -> Iterator[tuple[float, bytes]]:
        sc = self.scenario
        assert isinstance(sc.start, datetime) and isinstance(sc.end, datetime)
        start, end = sc.start.timestamp(), sc.end.timestamp()
        step = sc.interval.total_seconds()
        rng = self.rng
        random_ = rng.random
        late: list[tuple[float, int, bytes]] = []
        seq = 0
        faults = [0.0] * len(self.world.probes)
        fault_p = sc.noise.probe_fault_rate * step / 3600
        probes = sorted(self.world.probes, key=lambda p: (p.offset, p.index))
        zones = {c.code: ZoneInfo(c.timezone) for c in sc.countries}
        volunteer = self.activity == VOLUNTEER
        run_p = VOLUNTEER_RUNS_PER_DAY * step / 86400 / _MEAN_WEIGHT
        modelled = not self.model.is_default
        dup_share = sc.noise.duplicate_share if self.model.duplicate_share is None else self.model.duplicate_share
        t = start
        while t < end:
            while late and late[0][0] <= t:
                due, _, held = heapq.heappop(late)
                yield due, held
            hours = self._local_hours(t, zones)
            weekend = self._weekend_factor(t, zones) if modelled else None
            active = [e for e in self.events if e.start < t + step and e.end > t]
            for p in probes:
                if t < p.joins or t >= p.leaves:
                    continue
                if p.absences and any(a <= t < b for a, b in p.absences):
                    continue  # the probe is gone for days (unplugged, uninstalled, travelling)
                hour = hours[p.net.cc]
                # a probe fault: the installation fails everything for 1-6 hours
                if faults[p.index] <= t and random_() < fault_p:
                    faults[p.index] = t + rng.uniform(3600, 6 * 3600)
                if modelled:
                    assert weekend is not None
                    if not self._runs_now(p, (hour + p.zone_shift) % 24, weekend[p.net.cc], step):
                        continue
                    run = t + (random_() * step if volunteer else p.offset)
                elif volunteer:
                    if random_() >= run_p * p.rate * EVENING_WEIGHTS[hour]:
                        continue
                    run = t + random_() * step
                else:
                    if p.net.network.is_mobile and random_() >= MOBILE_ONLINE[hour]:
                        continue
                    run = t + p.offset
                if run >= end:
                    continue
                evs = [e for e in active if p.index in e.probes] if active else None
                for upload, line in self._run(p, run, evs, faults[p.index]):
                    if upload <= run + 600:
                        yield upload, line
                    else:
                        seq += 1
                        heapq.heappush(late, (upload, seq, line))
                    if random_() < dup_share:
                        seq += 1
                        heapq.heappush(late, (upload + rng.uniform(60, 3600), seq, line))
            t += step
        while late:
            due, _, held = heapq.heappop(late)
            yield due, held

    def _runs_now(self, p: Probe, hour: int, weekend: float, step: float) -> bool:
        """Whether a modelled probe runs in this interval: volunteers by their habit's hour, weekday and rate;
        dedicated probes always, except phones asleep at night (along the same habit)."""
        w = p.shape[hour]
        if self.activity == VOLUNTEER:
            mean = sum(p.shape) / 24
            return self.rng.random() < VOLUNTEER_RUNS_PER_DAY * step / 86400 / mean * p.rate * w * weekend
        if p.net.network.is_mobile:
            return self.rng.random() < min(1.0, 0.55 + 0.45 * w / max(p.shape))
        return True

    def _weekend_factor(self, t: float, zones: dict[str, ZoneInfo]) -> dict[str, float]:
        """Per country: the model's weekend effect on Saturday and Sunday (local time), 1 otherwise."""
        when = datetime.fromtimestamp(t, UTC)
        out = {}
        for cc, zone in zones.items():
            out[cc] = self.model.weekend if when.astimezone(zone).weekday() >= 5 else 1.0
        return out

    def _local_hours(self, t: float, zones: dict[str, ZoneInfo]) -> dict[str, int]:
        when = datetime.fromtimestamp(t, UTC)
        out = {}
        for cc, zone in zones.items():
            off = zone.utcoffset(when.replace(tzinfo=None)) or timedelta(0)
            out[cc] = int((t + off.total_seconds()) // 3600 % 24)
        return out

    def _run(
        self, p: Probe, run: float, evs: list[_ActiveEvent] | None, fault_until: float
    ) -> Iterator[tuple[float, bytes]]:
        """One run of a probe: each target once, one after the other; yields (upload time, line)."""
        rng = self.rng
        random_ = rng.random
        bits = rng.getrandbits
        noise = self.scenario.noise
        net = p.net.index
        mid = self._mids[net]
        style = self._style
        if self._share_05 and random_() < self._share_05:
            style = layout.OONI_05  # this installation's app already runs web_connectivity 0.5
        bodies = self._bodies[p.index][style]
        # this run is ooniprobe's IM suite: the messaging platforms get their own tests
        im_run = bool(self._im_share) and random_() < self._im_share
        fail_p = self._fail_p[net]
        net_faults = self.world.faults.get(net)
        late_share = noise.late_share if self.model.late_share is None else self.model.late_share
        late_max = LATE_MAX_S if self.model.late_share is None else self.model.late_max_hours * 3600
        targets = self.world.targets
        skewed = int(run + p.skew)
        tst = ooni_time(skewed)
        rid = compact_time(skewed) + mid + b"%016x" % bits(64)
        head = self._heads[style]
        n = len(targets)
        run_end = run + n * STEP_SECONDS + 5
        for i in range(n):
            when = run + i * STEP_SECONDS
            upload = run_end
            outcome = obs.OK
            if fault_until > when:
                outcome = obs.FAULT
                upload = fault_until + random_() * 1800
            else:
                hit = None
                if evs:
                    plat = targets[i].platform
                    for e in evs:
                        if e.start <= when < e.end and (not e.platforms or plat in e.platforms):
                            hit = e
                            break
                if hit is not None and random_() < hit.coverage:
                    outcome = hit.outcome
                    if hit.offline:
                        # still cut off when the data ends: nothing taken during the cut reaches it (silence)
                        if hit.end >= self._end or random_() < DROP_AFTER_OUTAGE:
                            continue
                        upload = hit.end + random_() * 1800
                elif net_faults and (fault := _fault_at(net_faults, when)) and random_() < fault.share:
                    # a correlated fault: the network's resolver, or the network itself, fails for a while
                    outcome = fault.outcome or obs.NOISE[int(random_() * 4)]
                elif random_() < fail_p[i]:
                    outcome = obs.NOISE[int(random_() * 5)]
            if upload == run_end and random_() < late_share:
                upload = when + LATE_MIN_S + random_() * (late_max - LATE_MIN_S)
            im = self._im_tests[i] if im_run else None
            if im:
                rt, tk = self._im_keys(net, i, outcome, bits(3), im)
                line_mid, line_head, body = mid.replace(b"webconnectivity", im.encode()), self._im_heads[im], (
                    self._im_body(p, i, im)
                )
            else:
                rt, tk = self._test_keys(net, i, outcome, bits(3), style)
                line_mid, line_head, body = mid, head, bodies[i]
            stamp = int(when + p.skew)
            self.count += 1
            yield (
                upload,
                b"".join(
                    (
                        b'{"measurement_uid":"',
                        compact_time(stamp),
                        line_mid,
                        b"%016x" % bits(64),
                        b'","report_id":"',
                        rid,
                        line_head,
                        ooni_time(stamp),
                        b'","test_start_time":"',
                        tst,
                        b'","test_runtime":',
                        rt,
                        body,
                        tk,
                    )
                ),
            )


def _fault_at(faults: tuple[NetworkFault, ...], when: float) -> NetworkFault | None:
    for f in faults:
        if f.start <= when < f.end:
            return f
        if f.start > when:
            break
    return None


def generate(
    scenario: Scenario, activity: str = DEDICATED, model: Model | None = None
) -> Iterator[tuple[float, bytes]]:
    """(upload time, JSON line) pairs of the scenario, in upload order (`model`: drawn from the families)."""
    return Generator(scenario, activity, model).lines()
