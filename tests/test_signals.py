"""Outside-in signals: the CSV contract, detection of connectivity loss in signal series, fusion with the
probes' view, heartbeats, and the outside-in prober's safety (target list, rate limit)."""

from __future__ import annotations

import ipaddress
import math
import random
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from observatory.detect.outside import SignalConfig, fuse, heartbeat_points, series_outages, signal_incidents
from observatory.errors import ConfigError, ParseError
from observatory.incident import Assessment, Incident
from observatory.signals import SignalPoint, points_from_text, read_signals_file
from observatory.signals.pinger import (
    DOWN,
    UP,
    Block,
    NetProber,
    Pinger,
    RateLimiter,
    aggregate,
    read_blocks,
    tcp_alive,
)
from observatory.store import IncidentFilter

T0 = datetime(2024, 1, 16, tzinfo=UTC)
LAB_RANGES = [ipaddress.ip_network(n) for n in
              ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "198.18.0.0/15")]


def write_csv(path: Path, rows: list[str]) -> Path:
    path.write_text("time,country,region,asn,signal,value\n" + "\n".join(rows) + "\n")
    return path


# --- the CSV contract ------------------------------------------------------------------------------------


def test_csv_accepts_iso_and_unix_times_alpha3_and_optional_fields(tmp_path: Path) -> None:
    f = write_csv(tmp_path / "s.csv", [
        "2024-01-20T13:00:00Z,PAK,,,bgp,1200",
        "2024-01-20T18:00:00+05:00,PK,Punjab,AS17557,active_probing,0.93",
        "1705755600,pk,,45669,traffic,12.5",
    ])
    pts = list(read_signals_file(str(f), source="ioda"))
    assert all(isinstance(p, SignalPoint) for p in pts)
    a, b, c = pts  # type: ignore[misc]
    assert (a.country, a.region, a.asn, a.value) == ("PK", None, None, 1200.0)
    assert b.time == datetime(2024, 1, 20, 13, tzinfo=UTC) and (b.region, b.asn) == ("Punjab", 17557)
    assert c.time == datetime(2024, 1, 20, 13, tzinfo=UTC) and c.asn == 45669 and c.source == "ioda"


@pytest.mark.parametrize("row,reason", [
    ("2024-01-20 13:00:00,PK,,,bgp,1", "zone"),
    ("2024-01-20T13:00:00Z,Pakistan,,,bgp,1", "country"),
    ("2024-01-20T13:00:00Z,XYZ,,,bgp,1", "alpha-3"),
    ("2024-01-20T13:00:00Z,PK,,ASX,bgp,1", "asn"),
    ("2024-01-20T13:00:00Z,PK,,,bgp,lots", "value"),
    ("2024-01-20T13:00:00Z,PK,,,bgp,nan", "finite"),
    ("2024-01-20T13:00:00Z,PK,,,,1", "signal"),
    ("2024-01-20T13:00:00Z,PK,,,bgp", "fields"),
    ("99999999999,PK,,,bgp,1", "UNIX"),
])
def test_bad_row_is_rejected_with_file_line_and_the_rest_kept(tmp_path: Path, row: str, reason: str) -> None:
    f = write_csv(tmp_path / "s.csv", ["2024-01-20T12:00:00Z,PK,,,bgp,1", row, "2024-01-20T14:00:00Z,PK,,,bgp,1"])
    items = list(read_signals_file(str(f), source="x"))
    errors = [i for i in items if isinstance(i, ParseError)]
    assert len(errors) == 1 and len(items) == 3
    assert errors[0].where == f"{f}:3" and reason in errors[0].reason, errors[0]


def test_bad_header_and_empty_file_are_refused(tmp_path: Path) -> None:
    bad = tmp_path / "h.csv"
    bad.write_text("when,country,value\n2024-01-20T12:00:00Z,PK,1\n")
    [err] = list(read_signals_file(str(bad), source="x"))
    assert isinstance(err, ParseError)
    assert "missing column(s) time" in err.reason and "unknown column(s) when" in err.reason
    empty = tmp_path / "e.csv"
    empty.write_text("")
    [err] = list(read_signals_file(str(empty), source="x"))
    assert isinstance(err, ParseError) and "empty" in err.reason


def test_cli_import_counts_duplicates_and_rejects(tmp_path: Path) -> None:
    f = write_csv(tmp_path / "s.csv", ["2024-01-20T12:00:00Z,PK,,,bgp,1", "bad,PK,,,bgp,1"])
    cmd = [sys.executable, "-m", "observatory", "signals", "import", str(f), "--source", "ioda",
           "--db", str(tmp_path / "o.duckdb")]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert '"accepted": 1' in first.stdout and '"rejected": 1' in first.stdout and ":3:" in first.stderr
    assert first.returncode == 1  # done, the good row kept, but a row was rejected
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert '"accepted": 0' in again.stdout and '"duplicates": 1' in again.stdout and again.returncode == 1


# --- detection on signal series ---------------------------------------------------------------------------


def series(signal: str, *, region: str | None = None, asn: int | None = None, days: float = 4, step_min: int = 60,
           level: float = 1000.0, diurnal: float = 0.2, noise: float = 0.03, outage: tuple[datetime, datetime] | None
           = None, depth: float = 0.2, seed: int = 1, source: str = "ioda") -> list[SignalPoint]:
    """An IODA-like series: a daily cycle, noise, and optionally an outage."""
    rnd = random.Random(seed)
    out = []
    t = T0
    while t < T0 + timedelta(days=days):
        v = level * (1 + diurnal * math.sin(2 * math.pi * (t.hour + t.minute / 60) / 24)) * (1 + rnd.gauss(0, noise))
        if outage and outage[0] <= t < outage[1]:
            v *= depth
        out.append(SignalPoint(time=t, country="PK", region=region, asn=asn, signal=signal, source=source, value=v))
        t += timedelta(minutes=step_min)
    return out


EVENT = (T0 + timedelta(days=3, hours=13), T0 + timedelta(days=3, hours=17))


def test_national_drop_in_two_signals_is_one_confirmed_national_connectivity_loss() -> None:
    pts = series("bgp", outage=EVENT, depth=0.4) + series("active_probing", outage=EVENT, depth=0.1, seed=2)
    [inc] = signal_incidents(pts)
    assert (inc.kind, inc.scope, inc.country, inc.status) == ("connectivity_loss", "national", "PK", "ended")
    assert abs((inc.start - EVENT[0]).total_seconds()) <= 3600
    assert inc.end is not None and abs((inc.end - EVENT[1]).total_seconds()) <= 3600
    assert inc.confirmed_at is not None and inc.confirmed_at <= EVENT[0] + timedelta(hours=1)
    assert {s["signal"] for s in inc.evidence["signals"]} == {"bgp", "active_probing"}


def test_only_some_regions_dropping_is_regional() -> None:
    pts = []
    for i, region in enumerate(["Punjab", "Sindh", "Balochistan", "Khyber Pakhtunkhwa"]):
        pts += series("active_probing", region=region, seed=10 + i,
                      outage=EVENT if region == "Balochistan" else None, depth=0.05)
    pts += series("active_probing", seed=3)  # the country as a whole barely moves
    [inc] = signal_incidents(pts)
    assert (inc.scope, inc.regions) == ("regional", ("Balochistan",))


def test_noise_alone_and_a_short_history_raise_nothing() -> None:
    assert signal_incidents(series("bgp", noise=0.05) + series("active_probing", noise=0.08, seed=4)) == []
    short = series("traffic", days=1.2, diurnal=0.4, noise=0.05, seed=5)  # barely a day of history
    assert signal_incidents(short) == []


def test_a_few_days_of_history_are_enough() -> None:
    event = (T0 + timedelta(days=2, hours=1), T0 + timedelta(days=2, hours=6))
    pts = series("traffic", days=2.5, outage=event, depth=0.1, step_min=30)
    [inc] = signal_incidents(pts)
    assert abs((inc.start - event[0]).total_seconds()) <= 1800


def test_shifting_a_series_in_time_shifts_its_incident() -> None:
    pts = series("bgp", outage=EVENT, depth=0.3) + series("active_probing", outage=EVENT, depth=0.1, seed=2)
    shift = timedelta(hours=7)
    moved = [SignalPoint(time=p.time + shift, country=p.country, region=p.region, asn=p.asn, signal=p.signal,
                         source=p.source, value=p.value) for p in pts]
    [a], [b] = signal_incidents(pts), signal_incidents(moved)
    assert b.start - a.start == shift and b.end and a.end and b.end - a.end == shift


def test_long_outage_does_not_drag_its_own_baseline_down() -> None:
    long_event = (T0 + timedelta(days=2), T0 + timedelta(days=4))
    pts = series("active_probing", days=5, outage=long_event, depth=0.1)
    outages = series_outages(pts)
    assert len(outages) == 1 and outages[0].end is not None
    assert abs((outages[0].end - long_event[1]).total_seconds()) <= 3600


def test_fusion_joins_outside_evidence_and_leaves_restrictions_alone() -> None:
    outside = signal_incidents(series("bgp", outage=EVENT, depth=0.4) +
                               series("active_probing", outage=EVENT, depth=0.1, seed=2))
    probes_loss = Incident(id="PK-probes", country="PK", kind="connectivity_loss", scope="network", asns=(17557,),
                           regions=(), platforms=(), techniques=("unreachable",),
                           start=EVENT[0] + timedelta(minutes=20),
                           end=None, status="suspected", confirmed_at=None, confidence=0.5,
                           assessment=Assessment(deliberate=0.5))
    restriction = probes_loss.with_(id="PK-r", kind="platform_restriction", platforms=("twitter",),
                                    start=EVENT[0] - timedelta(days=1), end=EVENT[0] - timedelta(hours=20))
    fused = fuse([probes_loss, restriction], outside)
    assert len(fused) == 2
    loss = next(i for i in fused if i.kind == "connectivity_loss")
    assert loss.id == "PK-probes" and loss.scope == "national" and loss.status != "suspected"
    assert loss.start <= EVENT[0] + timedelta(hours=1) and "signals" in loss.evidence
    assert restriction in fused


def test_heartbeats_going_silent_at_once_is_a_dropping_series() -> None:
    beats = []
    end = T0 + timedelta(days=3)
    silent = (T0 + timedelta(days=2, hours=10), T0 + timedelta(days=2, hours=12))
    for probe in range(6):
        t = T0 + timedelta(minutes=probe)
        while t < end:
            if not (silent[0] <= t < silent[1]):
                beats.append((f"p{probe}", t, "PK", 17557, "Punjab"))
            t += timedelta(minutes=5)
    pts = heartbeat_points(beats, since=T0, until=end, bucket_seconds=900, window_seconds=900)
    [inc] = signal_incidents(pts)
    assert inc.kind == "connectivity_loss" and abs((inc.start - silent[0]).total_seconds()) <= 1800


# --- the outside-in prober --------------------------------------------------------------------------------


def lab_blocks(tmp_path: Path) -> list[Block]:
    f = tmp_path / "blocks.csv"
    f.write_text("prefix,asn,country,region\n198.18.1.0/28,17557,PK,Punjab\n198.18.2.0/28,17557,PK,Sindh\n"
                 "198.18.3.0/28,45669,PK,Punjab\n203.0.113.64/28,24499,PAK,\n")
    return read_blocks(str(f))


def test_pinger_only_ever_targets_the_listed_blocks(tmp_path: Path) -> None:
    blocks = lab_blocks(tmp_path)
    p = Pinger(blocks, probe=lambda a: True, rate=10_000)
    assert p.targets and all(any(ipaddress.ip_address(a) in n for n in LAB_RANGES) for a in p.targets)
    assert all(any(ipaddress.ip_address(a) in b.prefix for b in blocks) for a in p.targets)
    for _ in range(3):
        p.run_round()
    assert set(p.sent) <= set(p.targets)


def test_trinocular_belief_up_down_and_the_aggregate(tmp_path: Path) -> None:
    blocks = lab_blocks(tmp_path)
    dead = {b.prefix for b in blocks if b.region == "Sindh"}
    p = Pinger(blocks, probe=lambda a: not any(ipaddress.ip_address(a) in n for n in dead), rate=10_000)
    for _ in range(2):
        points = p.run_round(now=T0)
    states = {st.block.region: st.state for st in p.states() if st.block.asn == 17557}
    assert states == {"Punjab": UP, "Sindh": DOWN}
    up_blocks_cost = [len([a for a in p.sent if ipaddress.ip_address(a) in b.prefix]) for b in blocks
                      if b.prefix not in dead]
    assert max(up_blocks_cost) <= 4, "a live block needs few probes per round"
    by = {(pt.region, pt.asn): pt.value for pt in points}
    assert by[(None, None)] == 0.75 and by[("Sindh", None)] == 0.0 and by[(None, 17557)] == 0.5
    assert aggregate([], T0) == []


def test_rate_limit_holds_when_measured() -> None:
    limiter = RateLimiter(rate=100.0)
    t0 = time.monotonic()
    for _ in range(51):
        limiter.acquire()
    elapsed = time.monotonic() - t0
    assert elapsed >= 0.45, f"51 probes at 100/s took only {elapsed:.3f}s"
    with pytest.raises(ConfigError):
        RateLimiter(rate=0)


def test_the_network_prober_is_paced_per_packet_not_per_address() -> None:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    closed = srv.getsockname()[1]
    srv.close()  # nothing listens: a RST, which proves the host is there
    paced: list[int] = []
    assert tcp_alive("127.0.0.1", [closed], 0.5, pace=lambda: paced.append(1)) and len(paced) == 1
    # a timeout of a second or more lets the kernel retransmit the SYN once: two packets, paced twice
    assert tcp_alive("127.0.0.1", [closed], 1.0, pace=lambda: paced.append(1)) and len(paced) == 3
    prober = NetProber(ports=(closed,), timeout=0.5, icmp=False)
    p = Pinger([Block(prefix=ipaddress.ip_network("127.0.0.1/32"), asn=1, country="PK")], prober, rate=10_000)
    assert prober.pace != NetProber().pace, "the pinger's limiter paces the prober's packets"
    p.run_round(now=T0)
    assert p.sent == ["127.0.0.1"]


def _lab_like_rounds(dead_at: Callable[[int], set[str]], rounds: int = 10) -> list[SignalPoint]:
    """A pinger over two networks x three regions, one round per 20 s; `dead_at(k)` names what is cut in
    round k: region names or 'AS<n>'."""
    blocks = [Block(prefix=ipaddress.ip_network(f"198.19.{16 * n + r}.16/28"), asn=asn, country="IN", region=region)
              for n, asn in enumerate((9829, 55836)) for r, region in enumerate(("Manipur", "Delhi", "Maharashtra"))]
    where = {a: b for b in blocks for a in map(str, b.prefix.hosts())}
    k = 0
    p = Pinger(blocks, probe=lambda a: not {where[a].region, f"AS{where[a].asn}"} & dead_at(k), rate=10_000)
    points = []
    for k in range(rounds):  # the probe reads k
        points += p.run_round(now=T0 + timedelta(seconds=20 * k))
    return points


LAB_SIGNALS = SignalConfig(history=timedelta(hours=1), min_history_points=3, min_history_span=timedelta(seconds=60),
                           merge_gap=timedelta(seconds=40))


def test_one_region_cut_on_every_network_is_regional_and_names_the_networks() -> None:
    pts = _lab_like_rounds(lambda k: {"Manipur"} if 5 <= k < 8 else set())
    [inc] = signal_incidents(pts, LAB_SIGNALS)
    assert (inc.scope, inc.regions, inc.asns) == ("regional", ("Manipur",), (9829, 55836))
    assert inc.start == T0 + timedelta(seconds=100) and inc.confirmed_at == T0 + timedelta(seconds=120)
    assert inc.end == T0 + timedelta(seconds=160)


def test_a_country_wide_drop_with_a_region_still_answering_is_regional() -> None:
    # two regions of three cut: the country-wide share falls under half, yet Maharashtra answers throughout
    pts = _lab_like_rounds(lambda k: {"Manipur", "Delhi"} if 5 <= k < 8 else set())
    [inc] = signal_incidents(pts, LAB_SIGNALS)
    assert (inc.scope, inc.regions) == ("regional", ("Delhi", "Manipur"))
    every = _lab_like_rounds(lambda k: {"Manipur", "Delhi", "Maharashtra"} if 5 <= k < 8 else set())
    assert [i.scope for i in signal_incidents(every, LAB_SIGNALS)] == ["national"]


def test_one_network_cut_everywhere_is_a_network_outage() -> None:
    pts = _lab_like_rounds(lambda k: {"AS9829"} if 5 <= k < 8 else set())
    [inc] = signal_incidents(pts, LAB_SIGNALS)
    assert (inc.scope, inc.asns) == ("network", (9829,))


def test_tcp_probe_of_a_live_host_on_loopback() -> None:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    try:
        assert tcp_alive("127.0.0.1", [srv.getsockname()[1]], 1.0)
    finally:
        srv.close()


def test_blocks_file_errors_name_the_line(tmp_path: Path) -> None:
    f = tmp_path / "b.csv"
    f.write_text("prefix,asn,country,region\n198.18.0.0/24,17557,PK,\nnot-a-prefix,1,PK,\n")
    with pytest.raises(ConfigError, match=r"b.csv:3"):
        read_blocks(str(f))
    f.write_text("prefix,asn,country,region\n10.0.0.0/8,1,PK,\n")
    with pytest.raises(ConfigError, match="larger than a /16"):
        read_blocks(str(f))


def test_points_from_text_raises_on_bad_rows() -> None:
    with pytest.raises(ParseError):
        points_from_text("time,country,region,asn,signal,value\nx,PK,,,bgp,1\n", source="x")


def test_detection_reports_a_shutdown_from_imported_signals_alone(tmp_path: Path) -> None:
    """No measurement arrives during a shutdown; the imported series alone give the incident, in the store."""
    from observatory.service import run_detection
    from observatory.store.duckdb import DuckDBStore

    store = DuckDBStore(str(tmp_path / "o.duckdb"))
    try:
        store.insert_signals(series("bgp", outage=EVENT, depth=0.4) +
                             series("active_probing", outage=EVENT, depth=0.1, seed=2))
        first = run_detection(store)
        [inc] = [i for i in first.saved if i.kind == "connectivity_loss"]
        assert inc.country == "PK" and inc.scope == "national" and inc.status == "ended"
        again = run_detection(store)
        assert again.saved == () and [i.id for i in store.incidents(IncidentFilter())] == [inc.id]
    finally:
        store.close()
