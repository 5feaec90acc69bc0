"""Follow OONI's public measurement stream into the store.

Two sources, one plan:
* `S3Source` (the default): OONI's public bucket, read anonymously (unsigned requests, no credentials), laid
  out as `raw/YYYYMMDD/HH/CC/<testname>/<YYYYMMDDHH>_<CC>_<testname>.n<host>.<i>.jsonl.gz`, where
  `<testname>` is the test's name without underscores (`webconnectivity`, `facebookmessenger`), plus the
  older `.tar.gz` "postcans" beside them (a tar of `<measurement_uid>.post` files, each the probe's upload
  `{"format": "json", "content": <measurement>}`). Each file is fetched once: the store keeps a ledger of the
  keys done (with their ETag), written only after the file's measurements are stored, so a restart skips
  them and redoes a file cut short (the store's idempotent inserts absorb what it had already stored).
* `ApiSource`: OONI's measurement API (list by country/test/time, then fetch each raw measurement), for
  small, targeted pulls.

Polite by default: bounded concurrency, retries with backoff on 5xx and timeouts, a clear error on 4xx.
"""

from __future__ import annotations

import json
import tarfile
import tempfile
import time
import zlib
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path, PurePosixPath
from typing import IO, Any, Protocol

import httpx

from observatory.errors import ConfigError, ObservatoryError
from observatory.ingest import Ingestor, IngestSummary, Reject

DEFAULT_BUCKET = "ooni-data-eu-fra"
DEFAULT_API = "https://api.ooni.io"
DEFAULT_TESTS = ("web_connectivity", "telegram", "whatsapp", "signal", "facebook_messenger")
STATE_PREFIX = "ooni-sync:"
JSONL_SUFFIXES = (".jsonl.gz", ".jsonl")
POSTCAN_SUFFIX = ".tar.gz"


def bucket_test_name(test: str) -> str:
    """The test's directory in OONI's bucket: its name without underscores (`web_connectivity` ->
    `webconnectivity`, `http_invalid_request_line` -> `httpinvalidrequestline`)."""
    return test.replace("_", "")


class SourceError(ObservatoryError):
    """A source answered with a client error, or kept failing after retries."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SyncPlan:
    countries: tuple[str, ...]
    tests: tuple[str, ...] = DEFAULT_TESTS
    since: datetime
    until: datetime | None = None  # None: up to now

    def hours(self, now: datetime) -> list[datetime]:
        end = min(self.until or now, now)
        t = self.since.replace(minute=0, second=0, microsecond=0)
        out = []
        while t < end:
            out.append(t)
            t += timedelta(hours=1)
        return out


@dataclass(frozen=True, slots=True)
class RemoteFile:
    key: str
    etag: str
    size: int


@dataclass(slots=True)
class SyncStats:
    files: int = 0
    skipped: int = 0
    failed: int = 0
    bytes: int = 0  # downloaded
    errors: list[str] = field(default_factory=list)
    ingest: IngestSummary = field(default_factory=IngestSummary)


class Source(Protocol):
    name: str

    def list_files(self, hour: datetime, cc: str, test: str) -> list[RemoteFile]: ...
    def fetch(self, f: RemoteFile, dest: Path) -> None: ...


def _retrying(call: Callable[[], Any], *, what: str, attempts: int = 5, base_delay: float = 0.5) -> Any:
    """Retries on server errors and timeouts with exponential backoff; a client error fails at once."""
    delay = base_delay
    for attempt in range(1, attempts + 1):
        try:
            return call()
        except httpx.HTTPStatusError as exc:
            code = exc.response.status_code
            if 400 <= code < 500 and code != 429:
                raise SourceError(f"{what}: HTTP {code} {exc.response.reason_phrase}") from None
            err: Exception = exc
        except (httpx.TransportError, TimeoutError) as exc:
            err = exc
        except Exception as exc:  # botocore errors, classified below
            boto_code = _boto_status(exc)
            if boto_code is not None and 400 <= boto_code < 500 and boto_code != 429:
                raise SourceError(f"{what}: HTTP {boto_code} ({exc})") from None
            if boto_code is None and not _is_boto_transient(exc):
                raise
            err = exc
        if attempt == attempts:
            raise SourceError(f"{what}: failed after {attempts} attempts: {err}") from None
        time.sleep(delay)
        delay = min(delay * 2, 30.0)
    raise AssertionError("unreachable")


def _boto_status(exc: Exception) -> int | None:
    resp = getattr(exc, "response", None)
    if isinstance(resp, dict):
        code = resp.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return int(code) if code else None
    return None


def _is_boto_transient(exc: Exception) -> bool:
    name = type(exc).__name__
    return name in {"EndpointConnectionError", "ConnectTimeoutError", "ReadTimeoutError", "ConnectionClosedError"}


class S3Source:
    name = "s3"

    def __init__(self, *, bucket: str = DEFAULT_BUCKET, endpoint: str | None = None) -> None:
        import boto3
        from botocore import UNSIGNED
        from botocore.config import Config

        self.bucket = bucket
        # a session of its own: the default one caches whatever credentials it first found, and this client
        # needs none (unsigned requests, as `aws s3 --no-sign-request`)
        self._s3 = boto3.session.Session().client(
            "s3",
            endpoint_url=endpoint,
            region_name="eu-central-1",
            config=Config(signature_version=UNSIGNED, retries={"max_attempts": 1}, connect_timeout=10,
                          read_timeout=60, max_pool_connections=8),
        )

    def list_files(self, hour: datetime, cc: str, test: str) -> list[RemoteFile]:
        prefix = f"raw/{hour:%Y%m%d}/{hour:%H}/{cc}/{bucket_test_name(test)}/"
        out: list[RemoteFile] = []
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix}
            if token:
                kwargs["ContinuationToken"] = token
            page = _retrying(partial(self._s3.list_objects_v2, **kwargs), what=f"list s3://{self.bucket}/{prefix}")
            for obj in page.get("Contents", []):
                if obj["Key"].endswith((*JSONL_SUFFIXES, POSTCAN_SUFFIX)):
                    out.append(RemoteFile(obj["Key"], obj.get("ETag", "").strip('"'), int(obj.get("Size", 0))))
            if not page.get("IsTruncated"):
                return out
            token = page.get("NextContinuationToken")

    def fetch(self, f: RemoteFile, dest: Path) -> None:
        what = f"get s3://{self.bucket}/{f.key}"
        _retrying(lambda: self._s3.download_file(self.bucket, f.key, str(dest)), what=what)
        got = dest.stat().st_size
        if f.size and got != f.size:  # cut short: not marked done, so the next run fetches it again
            raise SourceError(f"{what}: got {got} of {f.size} bytes")


class ApiSource:
    """OONI's measurement API: `/api/v1/measurements` to list, `/api/v1/raw_measurement` to fetch."""

    name = "api"
    page_size = 100

    def __init__(self, *, endpoint: str = DEFAULT_API, client: httpx.Client | None = None) -> None:
        self.endpoint = endpoint.rstrip("/")
        self._http = client or httpx.Client(timeout=30.0, headers={"User-Agent": "observatory-ooni-sync"})

    def _get(self, path: str, params: dict[str, Any]) -> Any:
        def call() -> Any:
            r = self._http.get(self.endpoint + path, params=params)
            r.raise_for_status()
            return r.json()

        return _retrying(call, what=f"GET {self.endpoint}{path}")

    def _list_uids(self, hour: datetime, cc: str, test: str) -> list[str]:
        uids: list[str] = []
        offset = 0
        while True:
            page = self._get("/api/v1/measurements", {
                "probe_cc": cc, "test_name": test, "since": f"{hour:%Y-%m-%dT%H:%M:%S}",
                "until": f"{hour + timedelta(hours=1):%Y-%m-%dT%H:%M:%S}", "limit": self.page_size,
                "offset": offset, "order_by": "measurement_start_time", "order": "asc",
            })
            results = page.get("results") or []
            uids += [r["measurement_uid"] for r in results if r.get("measurement_uid")]
            if len(results) < self.page_size:
                return uids
            offset += len(results)

    def list_files(self, hour: datetime, cc: str, test: str) -> list[RemoteFile]:
        """One pseudo-file per hour, country and test; its 'etag' changes when new measurements are listed."""
        uids = self._list_uids(hour, cc, test)
        if not uids:
            return []
        return [RemoteFile(f"api/{hour:%Y%m%d%H}/{cc}/{test}", f"{len(uids)}:{uids[-1]}", len(uids))]

    def fetch(self, f: RemoteFile, dest: Path) -> None:
        _, stamp, cc, test = f.key.split("/")
        hour = datetime.strptime(stamp, "%Y%m%d%H").replace(tzinfo=UTC)
        with open(dest, "w", encoding="utf-8") as fh:
            for uid in self._list_uids(hour, cc, test):
                doc = self._get("/api/v1/raw_measurement", {"measurement_uid": uid})
                if isinstance(doc, dict):
                    doc.setdefault("measurement_uid", uid)
                fh.write(json.dumps(doc, separators=(",", ":")) + "\n")


def make_source(kind: str, *, endpoint: str | None = None, bucket: str = DEFAULT_BUCKET) -> Source:
    if kind == "s3":
        return S3Source(bucket=bucket, endpoint=endpoint)
    if kind == "api":
        return ApiSource(endpoint=endpoint or DEFAULT_API)
    raise ConfigError(f"--source {kind!r}: choose s3 or api")


class Syncer:
    """Lists the plan's hours, fetches each new file once (a few at a time) and ingests it in order."""

    def __init__(self, store: Any, source: Source, *, concurrency: int = 4,
                 on_progress: Callable[[SyncStats], None] | None = None,
                 on_start: Callable[[list[RemoteFile]], None] | None = None) -> None:
        self.store = store
        self.source = source
        self.concurrency = max(1, concurrency)
        self.stats = SyncStats()
        self._on_progress = on_progress
        self._on_start = on_start  # told the files about to be fetched (a progress bar's totals)

    def _state_key(self, f: RemoteFile) -> str:
        return f"{STATE_PREFIX}{self.source.name}:{f.key}"

    def pending(self, plan: SyncPlan, now: datetime) -> list[RemoteFile]:
        """The plan's files not in the ledger, in time order. The listings (one per hour, country and test: a
        month of one country's five tests is 3,600 of them) run a few at a time."""
        prefixes = [(hour, cc, test) for hour in plan.hours(now) for cc in plan.countries for test in plan.tests]
        todo: list[RemoteFile] = []
        with ThreadPoolExecutor(self.concurrency) as pool:
            for files in pool.map(lambda p: self.source.list_files(*p), prefixes):
                for f in files:
                    if self.store.get_state(self._state_key(f)) == f.etag:
                        self.stats.skipped += 1
                    else:
                        todo.append(f)
        return todo

    def run_once(self, plan: SyncPlan, *, now: datetime | None = None) -> int:
        """Ingests every new file of the plan; returns how many files were ingested."""
        todo = self.pending(plan, now or datetime.now(UTC))
        if not todo:
            return 0
        if self._on_start:
            self._on_start(todo)
        with tempfile.TemporaryDirectory(prefix="observatory-ooni-") as tmp, \
                ThreadPoolExecutor(self.concurrency) as pool, \
                Ingestor(self.store, source="ooni") as ingestor:
            futures = [(f, pool.submit(self._download, f, Path(tmp))) for f in todo]
            for f, fut in futures:
                try:
                    path, unreadable = fut.result()
                except SourceError as exc:
                    self.stats.failed += 1
                    self.stats.errors.append(str(exc))
                    continue
                # the API's "size" counts measurements; its bytes are those of the file it was written to
                self.stats.bytes += f.size if self.source.name == "s3" else path.stat().st_size
                before = ingestor.summary.rejected
                for r in unreadable:
                    ingestor.reject(r)
                ingestor.ingest_file(path)
                ingestor.flush()  # durable before the file is marked as done
                path.unlink(missing_ok=True)
                broken = [r for r in ingestor.summary.rejects[-5:]
                          if "compressed stream" in r.reason or r.reason.startswith("postcan")]
                if ingestor.summary.rejected > before and broken:
                    # a file the bucket holds cut short or corrupt: what could be read is stored, and the
                    # file is left out of the ledger, so that a later run tries it again
                    self.stats.failed += 1
                    self.stats.errors.append(f"{f.key}: {broken[-1].reason}")
                else:
                    self.store.set_state(self._state_key(f), f.etag)
                self.stats.files += 1
                self.stats.ingest = ingestor.summary
                if self._on_progress:
                    self._on_progress(self.stats)
        return len(todo)

    def _download(self, f: RemoteFile, tmp: Path) -> tuple[Path, list[Reject]]:
        """The file fetched into `tmp`, as JSON lines (a postcan is unpacked), and what of it cannot be read."""
        name = f.key.replace("/", "_")
        if name.endswith(POSTCAN_SUFFIX):
            can = tmp / name
            self.source.fetch(f, can)
            dest = tmp / (name.removesuffix(POSTCAN_SUFFIX) + ".jsonl")
            try:
                return dest, unpack_postcan(can, dest, where=f.key)
            finally:
                can.unlink(missing_ok=True)
        if not name.endswith(JSONL_SUFFIXES):
            name += ".jsonl"
        dest = tmp / name
        self.source.fetch(f, dest)
        return dest, []

    def follow(self, plan: SyncPlan, *, poll_seconds: float, after_batch: Callable[[], object] | None = None,
               rounds: int | None = None, sleep: Callable[[float], None] = time.sleep) -> None:
        """Keeps polling for new hours (OONI uploads hourly); runs `after_batch` (detection) after each batch."""
        done = 0
        while rounds is None or done < rounds:
            if self.run_once(plan) and after_batch:
                after_batch()
            done += 1
            if rounds is None or done < rounds:
                sleep(poll_seconds)


def unpack_postcan(can: Path, dest: Path, *, where: str) -> list[Reject]:
    """Writes the measurements of a postcan to `dest` as JSON lines; returns a Reject for each post that
    holds none, and one for a tar cut short or corrupt (the posts before it are kept).

    A post's measurement_uid is its file name (`.../20210614004521.999962_JO_signal_68eb19b439326d60.post`)
    when its content has none. Some postcans named `.tar.gz` are plain tars: the mode detects it.
    """
    rejects: list[Reject] = []
    n = 0
    with open(dest, "wb") as out:
        try:
            with tarfile.open(can, mode="r:*") as tar:
                for member in tar:
                    if not member.isfile():
                        continue
                    n += 1
                    doc, reason = _post_measurement(member.name, tar.extractfile(member))
                    if doc is None:
                        rejects.append(Reject(f"{where}:{member.name}", n, reason))
                        continue
                    out.write(json.dumps(doc, separators=(",", ":")).encode() + b"\n")
        except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
            rejects.append(Reject(where, n + 1, f"postcan is corrupt or cut short after {n} posts: {exc}"))
    return rejects


def _post_measurement(name: str, fh: IO[bytes] | None) -> tuple[dict[str, Any] | None, str]:
    if not name.endswith(".post") or fh is None:
        return None, f"{name!r} is not a .post file"
    try:
        post = json.loads(fh.read())
    except (ValueError, UnicodeDecodeError) as exc:
        return None, f"invalid JSON in post: {exc}"
    fmt = post.get("format") if isinstance(post, dict) else None
    content = post.get("content") if isinstance(post, dict) else None
    if fmt != "json" or not isinstance(content, dict):
        # YAML-era posts are not measurements in the OONI JSON format we read
        return None, f"a post of format {fmt!r}, not a JSON measurement"
    content.setdefault("measurement_uid", PurePosixPath(name).name.removesuffix(".post"))
    return content, ""


def parse_list(value: str, *, flag: str, upper: bool = False) -> tuple[str, ...]:
    items = tuple(v.strip().upper() if upper else v.strip() for v in value.split(",") if v.strip())
    if not items:
        raise ConfigError(f"{flag}: give at least one value")
    return items


def iter_countries(value: str) -> Sequence[str]:
    ccs = parse_list(value, flag="--country", upper=True)
    for cc in ccs:
        if len(cc) != 2 or not cc.isalpha():
            raise ConfigError(f"--country {cc!r}: expected ISO 3166-1 alpha-2 codes such as PK,IR")
    return ccs
