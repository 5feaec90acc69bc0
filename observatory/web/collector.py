"""The collector: `POST /api/v1/measurements`, where registered probes upload batches of measurements.

Contract (CONTRACTS.md): `Authorization: Bearer <token>`, `X-Observatory-Signature: <hex HMAC-SHA256 of the
raw body with the probe's secret>`, body `{"measurements": [...]}`. 401 without/unknown/revoked token, 403 on a
bad signature, 413 over the size limit, 400/422 for malformed bodies. Each item is validated and classified;
the answer (accepted / duplicate / rejected with a reason, per item) is sent only after the store committed,
so a probe that got an answer may delete what it sent. Retries are idempotent: a measurement already stored
is a `duplicate`. The client's address is neither logged nor stored.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from datetime import UTC, datetime
from typing import Any

import msgspec
import pyarrow as pa
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from observatory.errors import AuthError, ParseError, StoreError
from observatory.measurement import Measurement, measurement_from_dict, parse_asn
from observatory.store.base import BatchBuilder, Store, values_of
from observatory.verdict import classify
from observatory.web import auth, limits
from observatory.web.errors import Forbidden
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
# in windows of minutes (the lab's shortest is 3 x 20 s), and each heartbeat is its own store transaction
# (~10 ms at 10 M rows), which concurrent uploads from one probe would otherwise pay on every batch.
HEARTBEAT_EVERY_SECONDS = 1.0


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


def _verdict(m: Measurement) -> tuple[str, float | None]:
    try:
        c = classify(m)
    except Exception:  # a bug in a verdict rule must not lose the measurement: store it unjudged
        log.exception("classifying %s failed; stored as unknown", m.uid)
        return "unknown", None
    return c.verdict, c.kbps


class GroupCommit:
    """Concurrent uploads share store transactions: whoever finds the store free writes every batch waiting.

    Each upload is still answered only after the transaction holding its measurements committed (or failed:
    then nothing of it was acknowledged), but N waiting uploads cost one transaction instead of N. A
    measurement sent in two uploads at once is accepted for the first one queued, a duplicate for the other.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._queue: list[tuple[Store, pa.Table, Future[set[str]]]] = []
        self._busy = False

    def write(self, store: Store, table: pa.Table) -> set[str]:
        """Stores the table; the uids it was the first to store."""
        fut: Future[set[str]] = Future()
        with self._cond:
            self._queue.append((store, table, fut))
            while self._busy and not fut.done():
                self._cond.wait()
            if fut.done():
                return fut.result()
            self._busy = True
            group, self._queue = self._queue, []
        try:
            self._commit(group)
        finally:
            with self._cond:
                self._busy = False
                self._cond.notify_all()
        return fut.result()

    @staticmethod
    def _commit(group: list[tuple[Store, pa.Table, Future[set[str]]]]) -> None:
        # one insert per store and table schema (documents arrive encoded once the store has a dictionary)
        parts: list[tuple[Store, pa.Schema, list[tuple[pa.Table, Future[set[str]]]]]] = []
        for st, table, fut in group:
            for s, schema, mine in parts:
                if s is st and schema.equals(table.schema):
                    mine.append((table, fut))
                    break
            else:
                parts.append((st, table.schema, [(table, fut)]))
        for st, _, mine in parts:
            try:
                result = st.insert_table(pa.concat_tables([t for t, _ in mine]) if len(mine) > 1 else mine[0][0])
            except BaseException as exc:
                for _, f in mine:
                    f.set_exception(exc)
                continue
            fresh = set(result.accepted_uids)
            for t, f in mine:
                firsts = set()
                for uid in values_of(t.column("uid")):
                    if uid in fresh:
                        fresh.discard(uid)
                        firsts.add(uid)
                f.set_result(firsts)


def store_batch(store: Store, items: list[Any], writer: GroupCommit | None = None) -> dict[str, Any]:
    """Validates, classifies and stores a batch; the per-item results, once the store has committed.

    Items are the JSON text of each measurement (msgspec.Raw, stored as received when nothing private must be
    removed from it) or already decoded values."""
    return _store_items(store, items, writer)[0]


def _store_items(store: Store, items: list[Any], writer: GroupCommit | None) -> tuple[dict[str, Any], Any]:
    """store_batch's work; also the first item that is a JSON object (for the heartbeat), decoded once."""
    results: list[dict[str, Any]] = []
    builder = BatchBuilder()
    first: Any = None
    for i, item in enumerate(items):
        where = f"measurements[{i}]"
        raw: bytes | None = None
        if isinstance(item, msgspec.Raw):
            raw = bytes(item)
            item = _decode_item(raw)
            if isinstance(item, _Refused):
                results.append({"index": i, "measurement_uid": None, "status": "rejected", "reason": item.reason})
                continue
        if first is None and isinstance(item, dict):
            first = item
        uid = item.get("measurement_uid") if isinstance(item, dict) else None
        try:
            m = measurement_from_dict(item, where=where, raw_json=raw)
        except ParseError as exc:
            results.append({"index": i, "measurement_uid": uid if isinstance(uid, str) else None,
                            "status": "rejected", "reason": str(exc)})
            continue
        verdict, kbps = _verdict(m)
        builder.add(m, verdict, kbps, SOURCE)
        results.append({"index": i, "measurement_uid": m.uid, "status": "pending"})
    fresh: set[str] = set()
    if len(builder):
        # documents compressed here, in this upload's own thread, rather than in the store's one writer
        table = builder.take(store.document_encoder())
        fresh = writer.write(store, table) if writer else set(store.insert_table(table).accepted_uids)
    for r in results:
        if r["status"] == "pending":
            # the first item with a new uid was stored; repeats (in this batch or from a retry) are duplicates
            r["status"] = "accepted" if r["measurement_uid"] in fresh else "duplicate"
            fresh.discard(r["measurement_uid"])
    counts = {s: sum(1 for r in results if r["status"] == s) for s in ("accepted", "duplicate", "rejected")}
    return {"accepted": counts["accepted"], "duplicates": counts["duplicate"], "rejected": counts["rejected"],
            "results": results}, first


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


def _heartbeat(store: Store, probe: str, items: list[Any], throttle: HeartbeatThrottle | None = None) -> None:
    """When each probe was last heard from, and where it measures: the silence of a network's probes is a signal."""
    first = next((i for i in items if isinstance(i, dict)), None)
    if first is None:
        return
    ann_value = first.get("annotations")
    ann: dict[str, Any] = ann_value if isinstance(ann_value, dict) else {}
    try:
        asn = parse_asn(first.get("probe_asn"))
    except ParseError:
        return
    cc = first.get("probe_cc")
    if isinstance(cc, str) and len(cc) == 2:
        region = ann.get("region") if isinstance(ann.get("region"), str) else None
        if throttle is not None and not throttle.due(probe, (cc.upper(), asn, region)):
            return
        store.record_heartbeat(probe=probe, time=datetime.now(UTC), country=cc.upper(), asn=asn, region=region)


def make_collector_router(get_store: Callable[[], Store], *, max_body_bytes: int = MAX_BODY_BYTES,
                          max_items: int = MAX_ITEMS, address_rate: float = ADDRESS_RATE,
                          address_burst: float = ADDRESS_BURST, probe_rate: float = PROBE_RATE,
                          probe_burst: float = PROBE_BURST,
                          max_concurrent: int = MAX_CONCURRENT_BATCHES) -> APIRouter:
    """The collector's routes, for `create_app` (or any FastAPI app) to include."""
    # pyarrow imports pandas the first time it converts a Python list (~1 s): paid here, at start-up, rather
    # than by the first probe to upload
    pa.array([], pa.string())
    router = APIRouter(tags=["collector"])
    by_address = KeyedLimiter(rate=address_rate, burst=address_burst)
    by_probe = KeyedLimiter(rate=probe_rate, burst=probe_burst)
    address_key = AddressKeys()
    writers = asyncio.Semaphore(max_concurrent)
    group = GroupCommit()
    beats = HeartbeatThrottle()

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
        try:
            await asyncio.wait_for(writers.acquire(), timeout=30)
        except TimeoutError:
            return _error(503, "the collector is busy: nothing from this batch was acknowledged, retry later",
                          **{"Retry-After": "5"})
        try:
            result = await run_in_threadpool(_store_and_beat, store, cred.name, items, group, beats)
        except StoreError as exc:
            return _error(503, f"store unavailable, nothing from this batch was acknowledged: {exc}")
        finally:
            writers.release()
        log.info("probe %s uploaded %d: %d accepted, %d duplicate, %d rejected", cred.name, len(items),
                 result["accepted"], result["duplicates"], result["rejected"])
        return Response(msgspec.json.encode(result), media_type="application/json")

    return router


def _store_and_beat(store: Store, probe: str, items: list[Any], group: GroupCommit,
                    beats: HeartbeatThrottle) -> dict[str, Any]:
    result, first = _store_items(store, items, group)
    _heartbeat(store, probe, [first], beats)
    return result
