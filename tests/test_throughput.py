"""Throughput from OONI's own timings (issue #19, item 3), and throttling found from it end to end.

The measurements are real ones (tests/data/ooni/measurements.jsonl; sources in tests/data/ooni/index.csv): a
web_connectivity 0.5.26 of https://www.youtube.com/ (ooni/probe-cli, internal/minipipeline/testdata), a
web_connectivity 0.4.1 (ooni/explorer fixtures) and the IM tests (ooni/backend fastpath test data, ooni/explorer).
For the end-to-end test, copies of two of them are given other times, networks and probes, and their timings
are stretched: a throttled path delivers the same bytes more slowly, so every `t`/`t0` grows by the same factor.
"""

from __future__ import annotations

import copy
import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from observatory.detect.config import DetectConfig
from observatory.detect.cusum import scan_throughput
from observatory.detect.series import Obs
from observatory.ingest import ingest_paths
from observatory.measurement import parse_measurement
from observatory.service import run_detection, stored_incidents
from observatory.store import open_store
from observatory.verdict import classify
from observatory.verdict.throughput import KbpsSource, network_events, steps, throughput

DATA = Path(__file__).parent / "data" / "ooni" / "measurements.jsonl"


def _doc(line: int) -> dict[str, Any]:
    with DATA.open() as fh:
        for i, text in enumerate(fh, 1):
            if i == line:
                return json.loads(text)
    raise LookupError(line)


YOUTUBE_05, WEB_04, TELEGRAM_03, TELEGRAM_02, SIGNAL_022, WHATSAPP_09 = 35, 48, 58, 47, 16, 27


# --- the derivation, on the real measurements ------------------------------------------------------------------


@pytest.mark.parametrize(("line", "source"), [
    (YOUTUBE_05, KbpsSource.HTTP_BODY),  # requests[].t0/t of the 512 KiB body
    (WEB_04, KbpsSource.HTTP_RUNTIME),  # 0.4: no t0, the body over x_http_runtime
    (TELEGRAM_03, KbpsSource.NETWORK_EVENTS),
    (SIGNAL_022, KbpsSource.NETWORK_EVENTS),
    (WHATSAPP_09, KbpsSource.NETWORK_EVENTS),
])
def test_throughput_of_real_measurements_is_plausible_and_names_its_source(line: int, source: KbpsSource) -> None:
    doc = _doc(line)
    tp = throughput(doc["test_name"], doc["test_keys"])
    assert tp.source == source
    assert tp.kbps is not None and 10 < tp.kbps < 1_000_000  # between a bad mobile link and 1 Gbit/s
    # the transfer took part of the measurement, never more than all of it
    assert tp.seconds is not None and 0 < tp.seconds <= doc["test_runtime"]
    assert tp.nbytes is not None and tp.kbps == pytest.approx(tp.nbytes * 8 / 1000 / tp.seconds)
    c = classify(parse_measurement(json.dumps(doc)))
    assert c.verdict == "ok" and c.kbps == tp.kbps and c.kbps_source == source.value


def test_youtube_body_rate_is_the_bytes_over_the_transaction() -> None:
    doc = _doc(YOUTUBE_05)
    req = doc["test_keys"]["requests"][0]
    tp = throughput("web_connectivity", doc["test_keys"])
    assert tp.nbytes == len(req["response"]["body"].encode())
    assert tp.seconds == pytest.approx(req["t"] - req["t0"])
    assert 1000 < tp.kbps < 100_000  # type: ignore[operator]  # a residential line in Italy: a few Mbit/s


def test_steps_list_handshakes_and_connections_with_their_fields() -> None:
    old = steps(_doc(WEB_04)["test_keys"])  # 0.4: handshakes only in network_events
    assert {s.step for s in old} == {"tls_handshake", "connection"}
    assert all(0 < s.seconds < 1 for s in old)
    assert all(s.source.startswith("network_events") for s in old)
    new = steps(_doc(YOUTUBE_05)["test_keys"])  # 0.5: t0/t on every step
    assert {"http", "tls_handshake", "tcp_connect"} <= {s.step for s in new}
    assert all(s.source.endswith("t0/t") for s in new if s.step != "connection")


@pytest.mark.parametrize("line", [TELEGRAM_03, TELEGRAM_02, SIGNAL_022, WHATSAPP_09, 66, 38])  # 38: 0.5, ids
def test_the_one_pass_over_network_events_groups_connections_as_steps_do(line: int) -> None:
    tk = _doc(line)["test_keys"]
    conns = [s for s in steps(tk) if s.step == "connection"]
    tp = network_events(tk)
    assert tp.nbytes == sum(s.nbytes or 0 for s in conns) > 0
    assert tp.seconds is not None and tp.seconds <= sum(s.seconds for s in conns) + 1e-9  # overlaps once


def test_x_download_is_kept_where_our_probe_records_it() -> None:
    tk = copy.deepcopy(_doc(YOUTUBE_05)["test_keys"])
    tk["x_download"] = {"url": "https://www.youtube.com/", "bytes": 1_000_000, "seconds": 2.0, "failure": None}
    tp = throughput("web_connectivity", tk)
    assert (tp.source, tp.kbps) == (KbpsSource.X_DOWNLOAD, 4000.0)
    tk["x_download"]["failure"] = "connection_reset"  # the censor cut it: no figure, and no other method mixed in
    assert throughput("web_connectivity", tk).kbps is None


def test_blocked_or_untimed_measurements_give_no_throughput() -> None:
    blocked = _doc(TELEGRAM_02)  # RU, web.telegram.org blocked
    c = classify(parse_measurement(json.dumps(blocked)))
    assert c.verdict != "ok" and c.kbps is None and c.kbps_source is None
    assert throughput("facebook_messenger", _doc(43)["test_keys"]).kbps is None  # 0.5.0: no timings recorded


# --- end to end: real documents, stretched timings, through the store and the detector ------------------------

T0 = datetime(2024, 3, 1, tzinfo=UTC)
ONSET = T0 + timedelta(days=2)
END = ONSET + timedelta(days=1)
THROTTLED, ONE_SLOW_PROBE, ALWAYS_SLOW = 12389, 8402, 31213
PROBES = 6


def _stretch(doc: dict[str, Any], factor: float) -> None:
    """Every timing of the measurement `factor` times longer: the same bytes, delivered more slowly."""
    tk = doc["test_keys"]
    for name in ("network_events", "requests", "tls_handshakes", "tcp_connect", "queries"):
        for item in tk.get(name) or ():
            for key in ("t", "t0"):
                if isinstance(item.get(key), int | float):
                    item[key] *= factor
    for key in ("x_dns_runtime", "x_th_runtime", "x_tcptls_runtime", "x_http_runtime"):
        if isinstance(tk.get(key), int | float):
            tk[key] = int(tk[key] * factor)
    doc["test_runtime"] *= factor


def _smaller(doc: dict[str, Any]) -> dict[str, Any]:
    """The YouTube measurement with its body cut to 16 KiB (its transaction shortened in proportion, so the rate
    stays the measured one) and one certificate per handshake: 40x fewer bytes for thousands of copies."""
    doc = copy.deepcopy(doc)
    for r in doc["test_keys"]["requests"]:
        body = r["response"].get("body")
        if isinstance(body, str) and len(body) > 16384:
            share = 16384 / len(body.encode())
            r["response"]["body"] = body[:16384]
            r["t"] = r["t0"] + (r["t"] - r["t0"]) * share
    for h in doc["test_keys"]["tls_handshakes"]:
        h["peer_certificates"] = (h.get("peer_certificates") or [])[:1]
    return doc


def _world(seed: int = 5) -> list[str]:
    rng = random.Random(seed)
    templates = [_smaller(_doc(YOUTUBE_05)), _doc(TELEGRAM_03)]
    lines = []
    n = 0
    for asn in (THROTTLED, ONE_SLOW_PROBE, ALWAYS_SLOW):
        for p in range(PROBES):
            offset = rng.randrange(0, 7200)
            t = T0 + timedelta(seconds=offset)
            while t < END + timedelta(hours=12):
                for template in templates:
                    doc = copy.deepcopy(template)
                    factor = rng.uniform(0.7, 1.4)  # an ordinary line's ups and downs
                    during = ONSET <= t < END
                    if asn == THROTTLED and during:
                        factor *= 20
                    elif asn == ONE_SLOW_PROBE and p == 0 and during:
                        factor *= 20  # one volunteer's own link degrades
                    elif asn == ALWAYS_SLOW:
                        factor *= 15  # a network slower than the others, always
                    _stretch(doc, factor)
                    n += 1
                    doc.pop("probe_ip", None)
                    doc.update(probe_cc="RU", probe_asn=f"AS{asn}", probe_network_name=f"Network {asn}",
                               report_id=f"r-{asn}-{p}", measurement_uid=f"u{n:06d}",
                               measurement_start_time=(t + timedelta(seconds=30)).strftime("%Y-%m-%d %H:%M:%S"),
                               test_start_time=t.strftime("%Y-%m-%d %H:%M:%S"))
                    lines.append(json.dumps(doc))
                if asn == ONE_SLOW_PROBE and p == 0:
                    t += timedelta(seconds=600)  # a dedicated probe: every 10 minutes, most buckets its own
                else:
                    t += timedelta(seconds=7200 + rng.randrange(-600, 600))
    return lines


@pytest.fixture(scope="module")
def detected(tmp_path_factory: pytest.TempPathFactory) -> list[Any]:
    tmp = tmp_path_factory.mktemp("throttle")
    path = tmp / "ru.jsonl"
    path.write_text("\n".join(_world()) + "\n")
    store = open_store(str(tmp / "obs.duckdb"))
    ingest_paths(store, [path], rejects_path=tmp / "rejects.jsonl")
    run_detection(store, full=True)
    incidents = stored_incidents(store)
    store.close()
    return incidents


def test_throttled_network_gives_a_throttling_incident_for_its_platforms(detected: list[Any]) -> None:
    throttling = [i for i in detected if i.kind == "throttling"]
    assert throttling, f"no throttling incident among {[(i.kind, i.asns) for i in detected]}"
    assert {p for i in throttling for p in i.platforms} == {"youtube", "telegram"}
    for inc in throttling:
        assert inc.asns == (THROTTLED,) and inc.scope == "network"
        assert ONSET - timedelta(hours=1) <= inc.start <= ONSET + timedelta(hours=3)
        assert inc.status in ("confirmed", "ended")


def test_no_incident_from_one_slow_probe_an_always_slow_network_or_the_baseline(detected: list[Any]) -> None:
    assert not [i for i in detected if set(i.asns) & {ONE_SLOW_PROBE, ALWAYS_SLOW}]
    assert not [i for i in detected if i.start < ONSET - timedelta(hours=1)]
    assert all(i.kind == "throttling" for i in detected)


# --- the throughput test on plain tracks ------------------------------------------------------------------------

STEP = 300


def _track(hours: float, probes: int, kbps: Any, every: int = 4) -> list[Obs]:
    """A (network, platform) track: `probes` probes, one of them reporting in turn every bucket (each probe
    every `probes` buckets), at kbps(t, probe)."""
    out = []
    for i in range(int(hours * 3600 / STEP)):
        t = int(T0.timestamp()) + i * STEP
        p = i % probes
        v = kbps(t, p)
        out.append(Obs(t=t, n=1, kbps=[v], probe_kbps=[(f"p:{p}", "web_connectivity", v)]))
    return out


def _at(hours: float) -> int:
    return int((T0 + timedelta(hours=hours)).timestamp())


def test_a_throttling_longer_than_the_baseline_window_stays_throttling() -> None:
    cfg = DetectConfig()
    days = cfg.baseline_seconds / 86400
    onset, hours = _at(12), 12 + 24 * (days + 2)  # throttled from 12 h on, for two days past the window
    obs = _track(hours, 6, lambda t, p: 4000.0 * (1 + 0.1 * (p % 3)) / (20 if t >= onset else 1))
    [alarm] = scan_throughput(obs, cfg, now=obs[-1].t + STEP)
    assert abs(alarm.start - onset) <= 2 * STEP
    assert alarm.end is None or alarm.end >= obs[-1].t  # still throttled at the end of the data
    assert set().union(*alarm.slow.values()) == {f"p:{p}" for p in range(6)}


def test_one_probe_alone_is_no_baseline() -> None:
    cfg = DetectConfig()
    obs = _track(24, 1, lambda t, p: 4000.0 / (20 if t >= _at(12) else 1))
    assert scan_throughput(obs, cfg, now=obs[-1].t + STEP) == []


def test_each_test_has_its_own_baseline_on_a_platform() -> None:
    """WhatsApp measured two ways on one network: web_connectivity fetches web.whatsapp.com's page (Mbit/s), and
    from the second day an app version that also runs the whatsapp test, which times 300-byte exchanges (some
    200 kbit/s). Neither is slow against its own kind."""
    cfg = DetectConfig()
    obs = []
    for i in range(int(48 * 3600 / STEP)):
        t = int(T0.timestamp()) + i * STEP
        web = (f"p:{i % 6}", "web_connectivity", 4000.0 * (1 + 0.1 * (i % 3)))
        values = [web] if t < _at(24) else [web, (f"p:{6 + i % 6}", "whatsapp", 200.0 * (1 + 0.1 * (i % 2)))]
        obs.append(Obs(t=t, n=len(values), kbps=[v for *_, v in values], probe_kbps=values))
    assert scan_throughput(obs, cfg, now=obs[-1].t + STEP) == []
    # and a throttling of both is still found, on each test's own scale
    onset = _at(36)
    for o in obs:
        if o.t >= onset:
            o.probe_kbps = [(k, test, v / 20) for k, test, v in o.probe_kbps]
    [alarm] = scan_throughput(obs, cfg, now=obs[-1].t + STEP)
    assert abs(alarm.start - onset) <= 2 * STEP
    assert {k for keys in alarm.slow.values() for k in keys} == {f"p:{i}" for i in range(12)}
