"""Time-to-complete and effective throughput of one measurement, from the timings the document records.

Our probe writes `x_download` (a bounded download timed end to end). OONI's measurements do not, but they time
every step: `requests[]` (`t`, and `t0` since web_connectivity 0.5), `tls_handshakes[]` and `tcp_connect[]`
(`t`, `t0` in 0.5), `network_events` (each read and write with `num_bytes`, `t`; 0.5 adds `t0`,
`transaction_id` and `bytes_received_cumulative` samples) and the runtimes `x_http_runtime` & co (0.4, ns).
A throttled flow shows in all of them: bytes arrive slower, so each step takes longer.

`throughput(test_name, test_keys)` returns the measurement's one figure, kbit/s, and the source it came from
(`KbpsSource`), most direct first:
1. `x_download`: our probe's download.
2. `http_body`: the final HTTP response body's bytes over its transaction's span (`requests[].t - t0`, 0.5).
3. `http_runtime`: the same bytes over the whole HTTP step (`x_http_runtime`, 0.4; it includes connecting).
4. `network_events`: every byte read, over the time during which some connection was between its first write
   (the request or the ClientHello) and its last read (0.4's TLS checks, the IM tests).
A figure is compared only with the same network's history for the same platform, so what matters is that a
test version measures the same way each time, not that sources agree with each other.

`steps(...)` lists each timed step with its duration and bytes, for inspection (`observatory classify`).
Pure and tolerant: any malformed part of the document is treated as absent, never raised on.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from observatory import failure as F

# Timings finer than this are clock noise (several events of one read share a timestamp).
MIN_SECONDS = 0.001
# A transfer that ended in a timeout still measured a rate (a throttled body often ends that way); one that was
# refused or reset measured the censor, not the path.
RATE_FAILURES = frozenset({None, F.GENERIC_TIMEOUT})


class KbpsSource(StrEnum):
    X_DOWNLOAD = "x_download"
    HTTP_BODY = "http_body"
    HTTP_RUNTIME = "http_runtime"
    NETWORK_EVENTS = "network_events"


@dataclass(frozen=True, slots=True)
class Throughput:
    kbps: float | None = None
    source: KbpsSource | None = None
    seconds: float | None = None  # time to complete the step the figure came from
    nbytes: int | None = None


NONE = Throughput()


@dataclass(frozen=True, slots=True)
class Step:
    """One timed step of a measurement: what, from which fields, how long, how many bytes (None: not a transfer)."""

    step: str  # "download", "http", "tls_handshake", "tcp_connect", "connection"
    source: str  # the field(s) it was read from
    seconds: float
    nbytes: int | None = None
    target: str = ""  # address or URL

    @property
    def kbps(self) -> float | None:
        return rate(self.nbytes, self.seconds)


def rate(nbytes: int | None, seconds: float | None) -> float | None:
    if not nbytes or nbytes <= 0 or seconds is None or seconds < MIN_SECONDS:
        return None
    return nbytes * 8 / 1000 / seconds


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def _body_bytes(resp: Any) -> int:
    """Length in bytes of a recorded body: a string, or OONI's {"format": "base64", "data": ...}."""
    if not isinstance(resp, dict):
        return 0
    body = resp.get("body")
    if isinstance(body, str):
        # isascii() reads a flag: most bodies are ASCII and need no 512 KiB encode to be measured
        return len(body) if body.isascii() else len(body.encode("utf-8", "surrogatepass"))
    if isinstance(body, dict) and body.get("format") == "base64" and isinstance(body.get("data"), str):
        data = body["data"].rstrip()
        # the decoded length, without decoding: 3 bytes per 4 characters, less the padding
        return max(0, len(data) * 3 // 4 - (len(data) - len(data.rstrip("="))))
    return 0


# --- the one figure ---------------------------------------------------------------------------------------------


def x_download(tk: dict[str, Any]) -> Throughput:
    dl = tk.get("x_download")
    if not isinstance(dl, dict) or dl.get("failure") not in RATE_FAILURES:
        return NONE
    nbytes, seconds = dl.get("bytes"), _num(dl.get("seconds"))
    if not isinstance(nbytes, int) or isinstance(nbytes, bool):
        return NONE
    kbps = rate(nbytes, seconds)
    return Throughput(kbps, KbpsSource.X_DOWNLOAD, seconds, nbytes) if kbps is not None else NONE


def _final_request(tk: dict[str, Any]) -> dict[str, Any] | None:
    """The response the page was read from: the first listed (OONI lists the last hop first) that got a status;
    in 0.5, which fetches one hop over several connections, the largest body among the answered ones."""
    best: tuple[int, dict[str, Any]] | None = None
    reqs = tk.get("requests")
    if not isinstance(reqs, list):
        return None
    for r in reqs:
        if not isinstance(r, dict) or r.get("failure") not in RATE_FAILURES:
            continue
        resp = r.get("response")
        code = resp.get("code") if isinstance(resp, dict) else None
        if not isinstance(code, int) or code <= 0:
            continue
        size = _body_bytes(resp)
        if "t0" not in r:
            return r if size > 0 else None  # 0.4: the last hop, listed first
        if best is None or size > best[0]:
            best = (size, r)
    return best[1] if best is not None and best[0] > 0 else None


def http_body(tk: dict[str, Any]) -> Throughput:
    reqs = tk.get("requests")
    first = reqs[0] if isinstance(reqs, list) and reqs else None
    if not isinstance(first, dict) or ("t0" not in first and _num(tk.get("x_http_runtime")) is None):
        return NONE  # nothing times the transfer (web_connectivity before 0.4): do not even read the bodies
    r = _final_request(tk)
    if r is None:
        return NONE
    nbytes = _body_bytes(r.get("response"))
    t0, t = _num(r.get("t0")), _num(r.get("t"))
    if t0 is not None and t is not None:
        kbps = rate(nbytes, t - t0)
        return Throughput(kbps, KbpsSource.HTTP_BODY, t - t0, nbytes) if kbps is not None else NONE
    runtime = _num(tk.get("x_http_runtime"))
    if runtime is not None:
        seconds = runtime / 1e9
        kbps = rate(nbytes, seconds)
        return Throughput(kbps, KbpsSource.HTTP_RUNTIME, seconds, nbytes) if kbps is not None else NONE
    return NONE


def _connections(events: list[Any]) -> list[list[dict[str, Any]]]:
    """network_events grouped by connection: by `transaction_id` where recorded (0.5), else in order, a new
    connection at each `connect` (older probes log one connection's events together)."""
    by_id: dict[Any, list[dict[str, Any]]] = {}
    seq: list[list[dict[str, Any]]] = []
    for e in events:
        if not isinstance(e, dict):
            continue
        tid = e.get("transaction_id")
        if tid is not None:
            by_id.setdefault(tid, []).append(e)
        elif e.get("operation") == "connect" or not seq:
            seq.append([e])
        else:
            seq[-1].append(e)
    return list(by_id.values()) + seq


def _connection_transfer(conn: list[dict[str, Any]]) -> tuple[int, float, float] | None:
    """Bytes read on one connection, its first write and its last read (None: no reads)."""
    first_write = last_read = None
    nbytes = 0
    cumulative = 0
    for e in conn:
        op, t, n = e.get("operation"), _num(e.get("t")), e.get("num_bytes")
        if t is None or not isinstance(n, int) or isinstance(n, bool) or n <= 0 or e.get("failure") is not None:
            continue
        if op == "write":
            first_write = t if first_write is None else min(first_write, t)
        elif op == "read":
            nbytes += n
            last_read = t if last_read is None else max(last_read, t)
        elif op == "bytes_received_cumulative":
            # 0.5 samples the running total instead of logging each read (after its first 64 events)
            if n > cumulative:
                cumulative = n
                last_read = t if last_read is None else max(last_read, t)
    nbytes = max(nbytes, cumulative)
    if first_write is None or last_read is None or nbytes <= 0 or last_read - first_write < MIN_SECONDS:
        return None
    return nbytes, first_write, last_read


def _covered(spans: list[tuple[float, float]]) -> float:
    """Seconds during which at least one of the spans was open: connections run in parallel, and bytes that
    arrive at the same time over two of them took that time once."""
    total, end = 0.0, None
    for a, b in sorted(spans):
        if end is None or a > end:
            total += b - a
            end = b
        elif b > end:
            total += b - end
            end = b
    return total


_TRANSFER_OPS = frozenset({"read", "write", "bytes_received_cumulative"})


def network_events(tk: dict[str, Any]) -> Throughput:
    """One pass over the events (an IM test logs a hundred or more), grouping them as `_connections` does:
    per connection, [first write, last read, bytes read, largest cumulative sample]."""
    events = tk.get("network_events")
    if not isinstance(events, list) or not events:
        return NONE
    conns: list[list[Any]] = []
    by_id: dict[Any, list[Any]] = {}
    current: list[Any] | None = None
    for e in events:
        if type(e) is not dict:
            continue
        op = e.get("operation")
        tid = e.get("transaction_id")
        if tid is None and (op == "connect" or current is None):
            current = [None, None, 0, 0]
            conns.append(current)
        if op not in _TRANSFER_OPS:
            continue
        t, n = e.get("t"), e.get("num_bytes")
        if type(n) is not int or n <= 0 or type(t) not in (float, int) or e.get("failure") is not None:
            continue
        if tid is None:
            if current is None:  # pragma: no cover - set above for every event without an id
                continue
            c = current
        elif tid in by_id:
            c = by_id[tid]
        else:
            c = by_id[tid] = [None, None, 0, 0]
            conns.append(c)
        if op == "write":
            if c[0] is None or t < c[0]:
                c[0] = t
        elif op == "read":
            c[2] += n
            if c[1] is None or t > c[1]:
                c[1] = t
        elif n > c[3]:  # 0.5 samples the running total instead of logging each read (after its first 64 events)
            c[3] = n
            if c[1] is None or t > c[1]:
                c[1] = t
    total, spans = 0, []
    for first_write, last_read, nbytes, cumulative in conns:
        got = max(nbytes, cumulative)
        if first_write is None or last_read is None or got <= 0 or last_read - first_write < MIN_SECONDS:
            continue
        total += got
        spans.append((first_write, last_read))
    seconds = _covered(spans)
    kbps = rate(total, seconds)
    return Throughput(kbps, KbpsSource.NETWORK_EVENTS, seconds, total) if kbps is not None else NONE


def throughput(test_name: str, tk: dict[str, Any]) -> Throughput:
    """The measurement's effective throughput and its source (NONE when nothing was timed)."""
    if "x_download" in tk:
        return x_download(tk)  # our probe: its own download, always, so its series never mixes methods
    got = NONE
    if test_name == "web_connectivity":
        got = http_body(tk)
    if got.kbps is None:
        got = network_events(tk)
    return got


# --- every step, for inspection ---------------------------------------------------------------------------------


def _span(item: dict[str, Any]) -> float | None:
    t0, t = _num(item.get("t0")), _num(item.get("t"))
    return t - t0 if t0 is not None and t is not None and t >= t0 else None


def steps(tk: dict[str, Any]) -> list[Step]:
    """Each timed step the document records: downloads, HTTP transactions, TLS handshakes, TCP connects, and
    the transfers of each connection in `network_events`."""
    out: list[Step] = []
    dl = x_download(tk)
    if dl.seconds is not None:
        out.append(Step("download", "x_download", dl.seconds, dl.nbytes))
    for r in tk.get("requests") or ():
        if isinstance(r, dict) and (span := _span(r)) is not None:
            url = r.get("request", {}).get("url", "") if isinstance(r.get("request"), dict) else ""
            out.append(Step("http", "requests[].t0/t", span, _body_bytes(r.get("response")) or None,
                            url if isinstance(url, str) else ""))
    for h in tk.get("tls_handshakes") or ():
        if isinstance(h, dict) and (span := _span(h)) is not None:
            out.append(Step("tls_handshake", "tls_handshakes[].t0/t", span, None, str(h.get("address") or "")))
    for c in tk.get("tcp_connect") or ():
        if isinstance(c, dict) and (span := _span(c)) is not None:
            out.append(Step("tcp_connect", "tcp_connect[].t0/t", span, None, str(c.get("ip") or "")))
    events = tk.get("network_events")
    for conn in _connections(events if isinstance(events, list) else []):
        start = next((_num(e.get("t")) for e in conn if e.get("operation") == "tls_handshake_start"), None)
        done = next((_num(e.get("t")) for e in conn if e.get("operation") == "tls_handshake_done"), None)
        where = next((str(e.get("address")) for e in conn if e.get("address")), "")
        if start is not None and done is not None and done >= start and not any("t0" in e for e in conn):
            out.append(Step("tls_handshake", "network_events tls_handshake_start/done", done - start, None, where))
        got = _connection_transfer(conn)
        if got is not None:
            out.append(Step("connection", "network_events read/write", got[2] - got[1], got[0], where))
    return out
