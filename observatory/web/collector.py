"""The collector: `POST /api/v1/measurements`, where registered probes upload batches of measurements.

Contract (docs/contracts.md): `Authorization: Bearer <token>`, `X-Observatory-Signature: <hex HMAC-SHA256 of the
raw body with the probe's secret>`, body `{"measurements": [...]}`. 401 without/unknown/revoked token, 403 on a
bad signature, 413 over the size limit, 400/422 for malformed bodies. Each item is validated and classified;
the answer (accepted / duplicate / rejected with a reason, per item) is sent only after the store committed,
so a probe that got an answer may delete what it sent. Retries are idempotent: a measurement already stored
is a `duplicate`. The client's address is neither logged nor stored.

One credential is one witness (issue #22): every stored measurement records the credential that brought it,
and detection counts an upload's independent evidence by that credential, never by the `probe_id` it claims
(a relay, registered as one by the admin, is the exception: it vouches for the probes it carries). Items
claiming another country or network than the probe was registered for, or a time before OONI or in the
future, are rejected with the reason. A `measurement_uid` stored already by another credential does not make
this one a duplicate: it is stored under `<uid>-<hash of the credential>` and answered with `stored_as`, so
whoever sends a uid first can neither squat it nor overwrite it. Per-probe quotas bound what one probe may
store per hour and per day, in measurements and in bytes; only accepted new measurements refresh its heartbeat.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pyarrow as pa
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from observatory.errors import AuthError, ParseError, StoreError
from observatory.measurement import MAX_DOCUMENT_BYTES, Measurement, measurement_from_dict, time_problem
from observatory.store.base import BatchBuilder, ProbeCredential, Store, own_uid, values_of, with_credential
from observatory.verdict import classify
from observatory.web import auth, limits
from observatory.web.errors import Forbidden
from observatory.web.groupcommit import GroupCommit
from observatory.web.ratelimit import AddressKeys, KeyedLimiter

log = logging.getLogger("observatory.web.collector")

MAX_BODY_BYTES = 32 * 1024 * 1024
MAX_ITEMS = 10_000
SOURCE = "observatory"
# Flood limits: requests per second (with bursts) per address before authentication, measurements per second
# per probe after it, and how many batches may be written at once before callers are asked to come back.
ADDRESS_RATE, ADDRESS_BURST = 50.0, 200.0
PROBE_RATE, PROBE_BURST = 2_000.0, 50_000.0
MAX_CONCURRENT_BATCHES = 8
# A probe heard again from the same place this soon is not written down again: detection counts probes heard
# in windows of minutes (the lab's shortest is 3 x 20 s), and each heartbeat is its own store transaction,
# which concurrent uploads from one probe would otherwise pay on every batch.
HEARTBEAT_EVERY_SECONDS = 1.0
# How much older than the newest measurement stored an upload may be (a relay's replay excepted). A probe back
# from a long shutdown uploads its spool late; but one measurement from years ago would make every detection run
# re-examine those years. Relative to the data's own "now", so a
# replay of the past, or a test's fixed data, keeps working.
MAX_UPLOAD_AGE = timedelta(days=30)
OLDEST_CACHE_SECONDS = 10.0  # the store's newest time is read at most this often (a scan on ClickHouse)


Place = tuple[str, int, str | None]  # where a measurement was taken: country, network, region


def _error(status: int, message: str, **headers: str) -> JSONResponse:
    return JSONResponse({"error": message, "status": status}, status_code=status, headers=headers or None)


class _TooLarge(Exception):
    pass


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise _TooLarge
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise _TooLarge
    return bytes(body)


class _Upload(msgspec.Struct):
    """The body: each measurement is kept as the JSON text the probe sent, decoded once, by the item's parser."""

    measurements: list[msgspec.Raw]


_upload_decoder = msgspec.json.Decoder(_Upload)
_item_decoder = msgspec.json.Decoder()


def store_batch(store: Store, items: list[Any], writer: GroupCommit | None = None, *,
                cred: ProbeCredential | None = None, now: datetime | None = None) -> dict[str, Any]:
    """Validates, classifies and stores a batch; the per-item results, once the store has committed.

    Items are the JSON text of each measurement (msgspec.Raw, stored as received when nothing private must be
    removed from it) or already decoded values. With the uploading probe's `cred`, each row records it, counts
    as its witness, and must come from where it was registered; `now` is the receiving clock."""
    return _store_items(store, items, writer, cred, now)[0]


def _refusal(m: Measurement, cred: ProbeCredential | None, now: datetime,
             oldest: datetime | None = None) -> str | None:
    """Why this measurement cannot be stored for this probe (time, place); None when it can."""
    problem = time_problem(m.start_time, now)
    if problem is not None:
        return problem
    if oldest is not None and m.start_time < oldest:
        days = MAX_UPLOAD_AGE.total_seconds() / 86400
        return (f"measurement_start_time {m.start_time:%Y-%m-%d %H:%M:%S} is more than {days:g} days older than "
                f"the newest measurement stored ({oldest + MAX_UPLOAD_AGE:%Y-%m-%d %H:%M:%S} UTC)")
    if cred is None:
        return None
    if cred.country is not None and m.probe_cc != cred.country:
        return f"probe_cc {m.probe_cc} is not {cred.country}, the country probe {cred.name!r} was registered in"
    if cred.asns and m.probe_asn not in cred.asns:
        nets = ", ".join(f"AS{a}" for a in cred.asns)
        return f"probe_asn AS{m.probe_asn} is not a network probe {cred.name!r} was registered for ({nets})"
    return None


def _write(store: Store, table: pa.Table, writer: GroupCommit | None) -> set[str]:
    return writer.write(store, table) if writer else set(store.insert_table(table).accepted_uids)


def _unsquat(store: Store, table: pa.Table, fresh: set[str], cred: ProbeCredential,
             writer: GroupCommit | None) -> tuple[dict[str, str], set[str]]:
    """The rows whose uid another credential stored first, stored again under this credential's own uid:
    (uid -> the uid stored as, the uids of those newly stored). Costs a lookup only when a uid was not new."""
    uids = values_of(table.column("uid"))
    missed = sorted({u for u in uids if u not in fresh})
    if not missed:
        return {}, set()
    mine = cred.credential
    # a uid stored before credentials were recorded (None) stays a duplicate: most likely this probe's own retry
    squatted = {u for u, held in store.uid_credentials(missed).items() if held is not None and held != mine}
    if not squatted:
        return {}, set()
    renamed = {u: own_uid(u, mine) for u in squatted}
    rows = [i for i, u in enumerate(uids) if u in squatted]
    again = table.take(pa.array(rows, pa.int64()))
    again = again.set_column(again.column_names.index("uid"), "uid",
                             pa.array([renamed[uids[i]] for i in rows], pa.string()))
    log.warning("probe %s sent %d measurement_uid(s) another credential stored first: stored under its own",
                cred.name, len(squatted))
    return renamed, _write(store, again, writer)


def _store_items(store: Store, items: list[Any], writer: GroupCommit | None,
                 cred: ProbeCredential | None = None, now: datetime | None = None, oldest: datetime | None = None
                 ) -> tuple[dict[str, Any], tuple[Place | None, int]]:
    """store_batch's work; also where the first measurement accepted was taken (for the heartbeat) and the
    bytes accepted."""
    now = now or datetime.now(UTC)
    results: list[dict[str, Any]] = []
    builder = BatchBuilder()
    # index of a pending result -> (its place, its bytes); not the measurement: a batch's decoded documents kept
    # alive to the end would make every garbage collection walk them
    kept: dict[int, tuple[Place, int]] = {}
    for i, item in enumerate(items):
        where = f"measurements[{i}]"
        raw: bytes | None = None
        if isinstance(item, msgspec.Raw):
            raw = bytes(item)
            if len(raw) > MAX_DOCUMENT_BYTES:  # the same bound as a file's line (ingest)
                results.append({"index": i, "measurement_uid": None, "status": "rejected",
                                "reason": f"{where}: measurement of {len(raw)} bytes exceeds the "
                                          f"{MAX_DOCUMENT_BYTES} byte limit"})
                continue
            item = _decode_item(raw)
            if isinstance(item, _Refused):
                results.append({"index": i, "measurement_uid": None, "status": "rejected", "reason": item.reason})
                continue
        uid = item.get("measurement_uid") if isinstance(item, dict) else None
        try:
            m = measurement_from_dict(item, where=where, raw_json=raw)
        except ParseError as exc:
            results.append({"index": i, "measurement_uid": uid if isinstance(uid, str) else None,
                            "status": "rejected", "reason": str(exc)})
            continue
        reason = _refusal(m, cred, now, oldest)
        if reason is not None:
            results.append({"index": i, "measurement_uid": m.uid, "status": "rejected",
                            "reason": f"{where}: {reason}"})
            continue
        if cred is not None and not cred.relay:
            # one credential, one witness: whatever probe_id it claims
            m = msgspec.structs.replace(m, probe_key="c:" + cred.name)
        # classify never raises on what a probe wrote (an odd document is `unknown`): an exception here is a
        # bug of ours, and it fails the whole batch (500, logged) as it fails an ingest, rather than storing
        # rows with a verdict nobody decided
        c = classify(m)
        builder.add(m, c.verdict, c.kbps, SOURCE, c.rule, c.rules_version)
        kept[len(results)] = ((m.probe_cc, m.probe_asn, m.region),
                              len(raw) if raw is not None else len(m.document_json()))
        results.append({"index": i, "measurement_uid": m.uid, "status": "pending"})
    fresh: set[str] = set()
    renamed: dict[str, str] = {}
    if len(builder):
        # documents compressed here, in this upload's own thread, rather than in the store's one writer
        table = builder.take(store.document_encoder())
        if cred is not None:
            table = with_credential(table, cred.credential)
        fresh = _write(store, table, writer)
        if cred is not None:
            renamed, fresh_again = _unsquat(store, table, fresh, cred, writer)
            fresh |= fresh_again
    first: Place | None = None
    accepted_bytes = 0
    for n, r in enumerate(results):
        if r["status"] == "pending":
            stored_as = renamed.get(r["measurement_uid"], r["measurement_uid"])
            if stored_as != r["measurement_uid"]:
                r["stored_as"] = stored_as
            # the first item with a new uid was stored; repeats (in this batch or from a retry) are duplicates
            r["status"] = "accepted" if stored_as in fresh else "duplicate"
            fresh.discard(stored_as)
            if r["status"] == "accepted":
                place, size = kept[n]
                accepted_bytes += size
                first = first or place
    counts = {s: sum(1 for r in results if r["status"] == s) for s in ("accepted", "duplicate", "rejected")}
    return {"accepted": counts["accepted"], "duplicates": counts["duplicate"], "rejected": counts["rejected"],
            "results": results}, (first, accepted_bytes)


class _Refused(msgspec.Struct):
    reason: str


def _decode_item(raw: bytes) -> Any:
    """One item's value, or why it is refused: nested past the depth limit (the parser and every recursive walk
    after it would fail near 1,000 levels), or not JSON (an item cut out of a body refused as a whole)."""
    if limits.json_depth_exceeds(raw):
        return _Refused(f"measurement nests deeper than {limits.MAX_JSON_DEPTH} levels")
    try:
        return _item_decoder.decode(raw)
    except msgspec.DecodeError as exc:
        return _Refused(f"not JSON: {exc}")


class HeartbeatThrottle:
    """Whether a probe's heartbeat is due: not when it was recorded from the same place in the last `every` s."""

    def __init__(self, every: float = HEARTBEAT_EVERY_SECONDS, clock: Callable[[], float] = time.monotonic,
                 max_probes: int = 100_000) -> None:
        self.every, self.clock, self.max_probes = every, clock, max_probes
        self._last: dict[str, tuple[float, tuple[str, int, str | None]]] = {}
        self._lock = threading.Lock()

    def due(self, probe: str, place: tuple[str, int, str | None]) -> bool:
        now = self.clock()
        with self._lock:
            last = self._last.get(probe)
            if last is not None and last[1] == place and now - last[0] < self.every:
                return False
            if len(self._last) >= self.max_probes:
                self._last.clear()  # only costs a few heartbeats written again
            self._last[probe] = (now, place)
            return True


def _heartbeat(store: Store, probe: str, place: Place | None, throttle: HeartbeatThrottle | None = None) -> None:
    """When each probe was last heard from, and where it measures: the silence of a network's probes is a signal.

    Only from where a measurement accepted new was taken (`place`): a replayed batch, refused as duplicates,
    says nothing about the probe being alive now, and nor does a batch of rejected items."""
    if place is None:
        return
    if throttle is not None and not throttle.due(probe, place):
        return
    cc, asn, region = place
    store.record_heartbeat(probe=probe, time=datetime.now(UTC), country=cc, asn=asn, region=region)


class ProbeQuotas:
    """What each probe has had stored in the current clock hour and UTC day, in measurements and bytes.

    A batch reserves its upper bound (every item, the whole body) before it is stored, so concurrent batches
    of one probe cannot pass the check together; what was not accepted is given back afterwards. Kept in memory:
    a restart forgets the counts (the hourly and daily windows bound what that lets through)."""

    def __init__(self, *, per_hour: int = limits.PROBE_PER_HOUR, per_day: int = limits.PROBE_PER_DAY,
                 bytes_per_hour: int = limits.PROBE_BYTES_PER_HOUR, bytes_per_day: int = limits.PROBE_BYTES_PER_DAY,
                 clock: Callable[[], float] = time.time, max_probes: int = 100_000) -> None:
        self.limits = ((3600, per_hour, bytes_per_hour), (86400, per_day, bytes_per_day))
        self.clock, self.max_probes = clock, max_probes
        # probe -> per window: [window number, measurements, bytes]
        self._used: dict[str, list[list[int]]] = {}
        self._lock = threading.Lock()

    def _windows(self, probe: str, now: float) -> list[list[int]]:
        used = self._used.get(probe)
        if used is None:
            if len(self._used) >= self.max_probes:
                self._used.clear()
            used = self._used[probe] = [[-1, 0, 0] for _ in self.limits]
        for w, (seconds, _, _) in zip(used, self.limits, strict=True):
            number = int(now // seconds)
            if w[0] != number:
                w[:] = [number, 0, 0]
        return used

    def reserve(self, probe: str, items: int, nbytes: int) -> tuple[str | None, float]:
        """(None, 0) and the batch's upper bound counted; or why not, and seconds until the window ends."""
        now = self.clock()
        with self._lock:
            used = self._windows(probe, now)
            for w, (seconds, max_items, max_bytes) in zip(used, self.limits, strict=True):
                per = "hour" if seconds == 3600 else "day"
                wait = (w[0] + 1) * seconds - now
                if w[1] + items > max_items:
                    return (f"probe {probe} is over its quota of {max_items} measurements per {per} "
                            f"({w[1]} stored, {items} sent)"), wait
                if w[2] + nbytes > max_bytes:
                    return (f"probe {probe} is over its quota of {max_bytes} bytes per {per} "
                            f"({w[2]} stored, {nbytes} sent)"), wait
            for w in used:
                w[1] += items
                w[2] += nbytes
            return None, 0.0

    def settle(self, probe: str, reserved: tuple[int, int], used: tuple[int, int]) -> None:
        """Gives back what a reservation did not use (rejected items, duplicates, a failed write)."""
        with self._lock:
            for w in self._windows(probe, self.clock()):
                w[1] = max(0, w[1] - (reserved[0] - used[0]))
                w[2] = max(0, w[2] - (reserved[1] - used[1]))


def make_collector_router(get_store: Callable[[], Store], *, max_body_bytes: int = MAX_BODY_BYTES,
                          max_items: int = MAX_ITEMS, address_rate: float = ADDRESS_RATE,
                          address_burst: float = ADDRESS_BURST, probe_rate: float = PROBE_RATE,
                          probe_burst: float = PROBE_BURST,
                          max_concurrent: int = MAX_CONCURRENT_BATCHES,
                          quotas: ProbeQuotas | None = None) -> APIRouter:
    """The collector's routes, for `create_app` (or any FastAPI app) to include."""
    # pyarrow imports pandas the first time it converts a Python list, a slow import: paid here, at start-up, rather
    # than by the first probe to upload
    pa.array([], pa.string())
    router = APIRouter(tags=["collector"])
    by_address = KeyedLimiter(rate=address_rate, burst=address_burst)
    by_probe = KeyedLimiter(rate=probe_rate, burst=probe_burst)
    address_key = AddressKeys()
    writers = asyncio.Semaphore(max_concurrent)
    group = GroupCommit()
    beats = HeartbeatThrottle()
    quota = quotas or ProbeQuotas()
    oldest = OldestAccepted()

    @router.post(
        "/api/v1/measurements",
        summary="Upload a batch of measurements (registered probes)",
        description="Body `{\"measurements\": [...]}` of OONI-format measurements; `Authorization: Bearer "
                    "<token>` and `X-Observatory-Signature: <hex HMAC-SHA256 of the body with the probe's "
                    "secret>`. Answers per item: accepted, duplicate or rejected (with a reason).",
        responses={401: {"description": "missing, unknown or revoked token"},
                   403: {"description": "bad signature"}, 413: {"description": "body too large"},
                   400: {"description": "not JSON"}, 422: {"description": "not {\"measurements\": [...]}"},
                   503: {"description": "the store is unavailable: retry later"}},
    )
    async def upload(request: Request) -> Response:
        store = get_store()
        ok, wait = by_address.allow(address_key(request.client.host if request.client else ""))
        if not ok:
            return _error(429, "too many requests from this address: slow down",
                          **{"Retry-After": str(max(1, round(wait)))})
        try:
            cred = await run_in_threadpool(auth.authenticate, store, request.headers.get("authorization"))
        except AuthError as exc:
            return _error(401, str(exc), **{"WWW-Authenticate": "Bearer"})
        except StoreError as exc:
            return _error(503, f"store unavailable, retry later: {exc}")
        try:
            body = await _read_body(request, max_body_bytes)
        except _TooLarge:
            return _error(413, f"body over {max_body_bytes} bytes: send smaller batches")
        try:
            auth.check_signature(cred, body, request.headers.get(auth.SIGNATURE_HEADER))
        except Forbidden as exc:
            return _error(403, str(exc))
        try:
            items: list[Any] = _upload_decoder.decode(body).measurements
        except msgspec.ValidationError:
            return _error(422, 'body must be a JSON object {"measurements": [...]}')
        except RecursionError:  # some item nests too deep for the parser: the others are still stored
            texts = limits.batch_items(body) if len(body) <= limits.MAX_SPLIT_BYTES else None
            if texts is None:
                return _error(400, f"body nests deeper than {limits.MAX_JSON_DEPTH} levels (a body over "
                                   f"{limits.MAX_SPLIT_BYTES} bytes is not split to find which item)")
            items = [msgspec.Raw(t) for t in texts]
        except (msgspec.DecodeError, UnicodeDecodeError) as exc:
            return _error(400, f"body is not JSON: {exc}")
        if len(items) > max_items:
            return _error(413, f"{len(items)} measurements in one batch; at most {max_items}")
        # the service's own replay (`observatory demo`) is exempt; every outside probe is held to the rate
        ok, wait = ((True, 0.0) if cred.name in getattr(request.app.state, "unlimited_probes", ())
                    else by_probe.allow(cred.name, cost=max(1, len(items))))
        if not ok:
            return _error(429, f"probe {cred.name} is sending faster than {probe_rate:g} measurements/s",
                          **{"Retry-After": str(max(1, round(wait)))})
        reserved = (len(items), len(body))
        if not cred.relay:
            over, wait = quota.reserve(cred.name, *reserved)
            if over is not None:
                return _error(429, f"{over}: nothing from this batch was stored, retry later",
                              **{"Retry-After": str(max(1, round(wait)))})
        used = (0, 0)
        try:
            try:
                await asyncio.wait_for(writers.acquire(), timeout=30)
            except TimeoutError:
                return _error(503, "the collector is busy: nothing from this batch was acknowledged, retry later",
                              **{"Retry-After": "5"})
            try:
                result, accepted_bytes = await run_in_threadpool(_store_and_beat, store, cred, items, group, beats,
                                                                 oldest)
                used = (result["accepted"], accepted_bytes)
            except StoreError as exc:
                return _error(503, f"store unavailable, nothing from this batch was acknowledged: {exc}")
            except Exception:  # a bug (in classification, say): the probe keeps its batch, the log the details
                log.exception("probe %s: storing a batch of %d failed", cred.name, len(items))
                return _error(500, "internal error: nothing from this batch was acknowledged; the collector "
                                   "logged the details")
            finally:
                writers.release()
        finally:
            if not cred.relay:
                quota.settle(cred.name, reserved, used)
        log.info("probe %s uploaded %d: %d accepted, %d duplicate, %d rejected", cred.name, len(items),
                 result["accepted"], result["duplicates"], result["rejected"])
        return Response(msgspec.json.encode(result), media_type="application/json")

    return router


class OldestAccepted:
    """The oldest time an upload may carry: MAX_UPLOAD_AGE before the newest measurement stored (None: no
    bound, on an empty store), read from the store at most every OLDEST_CACHE_SECONDS."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._value: tuple[float, datetime | None] | None = None
        self._lock = threading.Lock()

    def __call__(self, store: Store) -> datetime | None:
        with self._lock:
            now = self.clock()
            # an empty store is asked again each time: its first measurements set the bound at once
            if self._value is None or self._value[1] is None or now - self._value[0] > OLDEST_CACHE_SECONDS:
                newest = store.latest_time()
                self._value = (now, None if newest is None else newest - MAX_UPLOAD_AGE)
            return self._value[1]


def _store_and_beat(store: Store, cred: ProbeCredential, items: list[Any], group: GroupCommit,
                    beats: HeartbeatThrottle, oldest: OldestAccepted | None = None) -> tuple[dict[str, Any], int]:
    """The batch stored, the heartbeat from its first accepted new measurement; the answer and bytes accepted."""
    floor = oldest(store) if oldest is not None and not cred.relay else None
    result, (first, accepted_bytes) = _store_items(store, items, group, cred, oldest=floor)
    _heartbeat(store, cred.name, first, beats)
    return result, accepted_bytes
