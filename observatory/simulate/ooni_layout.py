"""OONI's own document layouts for the simulator's measurements.

Our probe writes web_connectivity 0.4.3 keys plus `x_download`; an OONI probe writes no `x_download`, and the
body's transfer shows only in its timings (docs/measurement-format.md). `ooni_layout` rewrites the keys the
simulator built in our layout into OONI's 0.4.3 or 0.5.28, so that the verdict rules and the throughput track
meet what real OONI data holds.
"""

from __future__ import annotations

import random
from typing import Any

# Document layouts: our probe's (web_connectivity 0.4.3 keys plus our `x_download`), and OONI's own
# web_connectivity 0.4.3 and 0.5.28, which carry no `x_download`: their timings are in `network_events`
# (`read` events with `num_bytes` and `t`), `requests[].t` and `tls_handshakes[].t`.
OWN = "observatory"
OONI_04 = "ooni-0.4"
OONI_05 = "ooni-0.5"
STYLES = (OWN, OONI_04, OONI_05)
TEST_VERSION = {OWN: "0.4.3", OONI_04: "0.4.3", OONI_05: "0.5.28"}
# What an OONI probe reads of a body: v0.4.3 keeps a 128 KiB snapshot, v0.5 reads up to 512 KiB.
BODY_CAP = {OONI_04: 1 << 17, OONI_05: 1 << 19}
HTTP_TIMEOUT_05_S = 10.0  # v0.5's HTTP round trip timeout: a crawling body is cut there
RECORD_BYTES = 16384  # one TLS record: the size of a typical `read`
MAX_EVENTS = 64  # v0.5 keeps the first 64 network events of a connection
SAMPLE_S = 0.25  # v0.5's mean interval between `bytes_received_cumulative` samples


def ooni_layout(keys: dict[str, Any], style: str, rng: random.Random) -> dict[str, Any]:
    """Our probe's keys rewritten as an OONI probe records them: no `x_download` (here or in the control);
    the body's transfer in `network_events` and in `requests[0].t`; v0.5 adds tags and transaction ids."""
    download = keys.pop("x_download")
    keys["control"].pop("x_download", None)
    events: list[dict[str, Any]] = []
    tcp = keys["tcp_connect"]
    if tcp:
        c = tcp[0]
        events.append(_event("connect", c["t0"], c["t"], f"{c['ip']}:443", c["status"]["failure"]))
    tls = keys["tls_handshakes"]
    if tls:
        h = tls[0]
        events.append(_event("tls_handshake_start", h["t0"], h["t0"], h["address"], None))
        events.append(_event("tls_handshake_done", h["t"], h["t"], h["address"], h["failure"]))
    req = keys["requests"][0] if keys["requests"] else None
    if req is not None and req["response"] is not None and req["failure"] is None and tls:
        events += _body_transfer(keys, req, download, style, rng)
    if style == OONI_05:
        _tag_v05(keys, events)
    else:
        for e in events:  # v0.4 network events carry only the end of each operation
            e.pop("t0")
    keys["network_events"] = events
    return keys


def _event(op: str, t0: float, t: float, address: str, failure: str | None, num_bytes: int | None = None
           ) -> dict[str, Any]:
    e: dict[str, Any] = {"address": address, "failure": failure}
    if num_bytes is not None:
        e["num_bytes"] = num_bytes
    e.update({"operation": op, "proto": "tcp", "t0": round(t0, 6), "t": round(t, 6)})
    return e


def _body_transfer(
    keys: dict[str, Any], req: dict[str, Any], download: dict[str, Any], style: str, rng: random.Random
) -> list[dict[str, Any]]:
    """The request's write and the body's reads at the speed our download saw (throttled or not); the
    request ends with its last read. A v0.5 transfer still crawling at its timeout fails there."""
    address = keys["tls_handshakes"][0]["address"]
    size = min(int(download["bytes"]), BODY_CAP[style])
    bits_per_s = download["bytes"] * 8 / max(download["seconds"], 1e-6)
    seconds = size * 8 / bits_per_s
    t0 = req["t0"]
    first = req["t"]  # the response's first byte: the round trip plus the server's time
    events = [_event("write", t0, t0 + 0.0005, address, None, rng.randint(280, 420))]
    reads = max(1, min(MAX_EVENTS - 4, -(-size // RECORD_BYTES)))
    cut = style == OONI_05 and seconds > HTTP_TIMEOUT_05_S
    last = first
    for k in range(1, reads + 1):
        t = first + seconds * k / reads * rng.uniform(0.97, 1.0)
        if cut and t - t0 > HTTP_TIMEOUT_05_S:
            break
        last = max(last, t)
        events.append(_event("read", last - 0.0002, last, address, None, size // reads))
    if style == OONI_05:
        done = min(first + seconds, t0 + HTTP_TIMEOUT_05_S)
        received, t = 0, first
        while t < done and len(events) < MAX_EVENTS * 2:
            t += rng.uniform(0.025, 0.65)
            received = int(size * min(1.0, (min(t, done) - first) / seconds))
            events.append(_event("bytes_received_cumulative", t, t, address, None, received))
    if cut:
        req["failure"] = "generic_timeout_error"
        req["t"] = round(t0 + HTTP_TIMEOUT_05_S, 6)
        req["response"]["body_is_truncated"] = True
        keys["http_experiment_failure"] = "generic_timeout_error"
        keys["blocking"], keys["accessible"] = "http-failure", False
    else:
        req["t"] = round(last, 6)
    return events


def _tag_v05(keys: dict[str, Any], events: list[dict[str, Any]]) -> None:
    """v0.5 marks every step of a flow with its transaction id and tags, and reports its analysis flags."""
    tags = ["depth=0", "fetch_body=true"]
    for i, step in enumerate(keys["tcp_connect"] + keys["tls_handshakes"]):
        step["tags"], step["transaction_id"] = tags, 1 + i % max(1, len(keys["tcp_connect"]))
    for r in keys["requests"]:
        r["tags"], r["transaction_id"] = tags, 1
    for e in events:
        e["tags"], e["transaction_id"] = tags, 1
    for q in keys["queries"]:
        q["tags"] = ["depth=0"]
        if q["engine"] == "system":
            q["engine"] = "getaddrinfo"
    # 32: the analysis found the site accessible; the rest left to the verdict rules (no flags claimed)
    keys["x_blocking_flags"] = 32 if keys["accessible"] else 0
    keys["x_null_null_flags"] = 0
