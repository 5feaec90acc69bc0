"""Where simulated measurements go: a .jsonl[.gz] file, stdout in accelerated real time, or a collector.

`--speed N` replays N scenario-seconds per wall-second, pacing each line by its upload time; to a collector
the lines are POSTed in batches exactly as our probes upload (`POST /api/v1/measurements`, bearer token and an
HMAC-SHA256 signature of the body).
"""

from __future__ import annotations

import gzip
import hashlib
import hmac
import json
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import httpx

from observatory.errors import ConfigError
from observatory.simulate.families import Model
from observatory.simulate.generator import Generator
from observatory.simulate.scenario import Scenario
from observatory.simulate.truth import truth
from observatory.simulate.world import ACTIVITIES, DEDICATED

WRITE_BATCH = 2048
COLLECTOR_PATH = "/api/v1/measurements"
SIGNATURE_HEADER = "X-Observatory-Signature"


@dataclass(frozen=True, slots=True)
class SimulationSummary:
    measurements: int  # lines written, duplicates included
    seconds: float

    @property
    def per_second(self) -> float:
        return self.measurements / self.seconds if self.seconds > 0 else 0.0


def _check(scenario: Scenario, activity: str, speed: float | None) -> None:
    if activity not in ACTIVITIES:
        raise ConfigError(f"--activity {activity!r}: choose one of {', '.join(ACTIVITIES)}")
    if speed is not None and speed <= 0:
        raise ConfigError(f"--speed {speed}: must be a positive number of scenario-seconds per second")
    if not scenario.is_resolved:
        raise ConfigError(f"{scenario.path}: the scenario gives offsets; resolve it to a start time first")


def paced(
    items: Iterable[tuple[float, bytes]],
    start: float,
    speed: float | None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[tuple[float, bytes]]:
    """The items, each released when the accelerated clock reaches its upload time (as fast as possible
    when speed is None)."""
    if speed is None:
        yield from items
        return
    wall0 = clock()
    for upload, line in items:
        due = wall0 + (upload - start) / speed
        wait = due - clock()
        if wait > 0:
            sleep(wait)
        yield upload, line


def stream_to_file(
    scenario: Scenario,
    fh: IO[bytes],
    *,
    activity: str = DEDICATED,
    speed: float | None = None,
    model: Model | None = None,
    upload_times: list[float] | None = None,
) -> SimulationSummary:
    """Writes the scenario's measurements, one per line in upload order. When paced, each line is flushed as
    it is released (a gzip stream is not: a sync flush per line would change its bytes and bloat it).
    `upload_times`, when given, receives each written line's upload time (epoch seconds), in the same order."""
    _check(scenario, activity, speed)
    gen = Generator(scenario, activity, model)
    assert isinstance(scenario.start, datetime)
    live = speed is not None and not isinstance(fh, gzip.GzipFile)
    t0 = time.perf_counter()
    buf: list[bytes] = []
    count = 0
    for upload, line in paced(gen.lines(), scenario.start.timestamp(), speed):
        buf.append(line)
        count += 1
        if upload_times is not None:
            upload_times.append(upload)
        if live or len(buf) >= WRITE_BATCH:
            buf.append(b"")
            fh.write(b"\n".join(buf))
            buf.clear()
            if live:
                fh.flush()
    if buf:
        buf.append(b"")
        fh.write(b"\n".join(buf))
    fh.flush()
    return SimulationSummary(count, time.perf_counter() - t0)


def write_truth(scenario: Scenario, path: str | Path) -> list[dict[str, Any]]:
    incidents = truth(scenario)
    Path(path).write_text(json.dumps(incidents, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return incidents


def write_simulation(
    scenario: Scenario,
    *,
    out: str | Path,
    truth_path: str | Path | None = None,
    activity: str = DEDICATED,
    speed: float | None = None,
    stdout: IO[bytes] | None = None,
    model: Model | None = None,
    upload_times: list[float] | None = None,
) -> SimulationSummary:
    """Writes measurements to `out` (.jsonl, .jsonl.gz, or "-" for stdout) and the truth beside them;
    `upload_times`, when given, receives each line's upload time (epoch seconds), line for line."""
    _check(scenario, activity, speed)
    if truth_path is not None:
        write_truth(scenario, truth_path)
    if str(out) == "-":
        import sys

        return stream_to_file(
            scenario, stdout or sys.stdout.buffer, activity=activity, speed=speed, model=model,
            upload_times=upload_times,
        )
    path = Path(out)
    try:
        raw = open(path, "wb")
    except OSError as exc:
        raise ConfigError(f"--out {out}: cannot write: {exc.strerror or exc}") from None
    with raw:
        if path.name.endswith(".gz"):
            # mtime=0 and no file name in the header: the same scenario gives byte-identical files
            with gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=1, mtime=0) as gz:
                return stream_to_file(
                    scenario, gz, activity=activity, speed=speed, model=model,  # type: ignore[arg-type]
                    upload_times=upload_times,
                )
        return stream_to_file(scenario, raw, activity=activity, speed=speed, model=model,
                              upload_times=upload_times)


def sign(body: bytes, secret: str) -> str:
    """The hex HMAC-SHA256 of the body with the probe's secret (X-Observatory-Signature)."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def stream_to_collector(
    scenario: Scenario,
    url: str,
    token: str,
    secret: str,
    speed: float | None = None,
    activity: str = DEDICATED,
    *,
    batch_size: int = 200,
    max_wait: float = 1.0,
    client: httpx.Client | None = None,
) -> SimulationSummary:
    """POSTs the scenario's measurements to a collector in batches of up to `batch_size` lines, sending at
    least every `max_wait` wall-seconds when paced. Raises ConfigError if the collector refuses a batch."""
    _check(scenario, activity, speed)
    assert isinstance(scenario.start, datetime)
    endpoint = url.rstrip("/") + COLLECTOR_PATH
    own = client is None
    http = client or httpx.Client(timeout=30.0)
    gen = Generator(scenario, activity)
    t0 = time.perf_counter()
    count = 0
    batch: list[bytes] = []
    last_sent = time.monotonic()
    try:
        for _, line in paced(gen.lines(), scenario.start.timestamp(), speed):
            batch.append(line)
            count += 1
            if len(batch) >= batch_size or (speed is not None and time.monotonic() - last_sent >= max_wait):
                _post(http, endpoint, batch, token, secret)
                batch.clear()
                last_sent = time.monotonic()
        if batch:
            _post(http, endpoint, batch, token, secret)
    finally:
        if own:
            http.close()
    return SimulationSummary(count, time.perf_counter() - t0)


def _post(http: httpx.Client, endpoint: str, lines: list[bytes], token: str, secret: str) -> None:
    body = b'{"measurements":[' + b",".join(lines) + b"]}"
    headers = {
        "Authorization": f"Bearer {token}",
        SIGNATURE_HEADER: sign(body, secret),
        "Content-Type": "application/json",
    }
    try:
        resp = http.post(endpoint, content=body, headers=headers)
    except httpx.HTTPError as exc:
        raise ConfigError(f"--collector {endpoint}: {type(exc).__name__}: {exc}") from None
    if resp.status_code >= 400:
        raise ConfigError(f"--collector {endpoint}: HTTP {resp.status_code}: {resp.text[:200]}")
