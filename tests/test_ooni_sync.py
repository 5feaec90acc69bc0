"""Following OONI's public stream: a real S3-compatible server (moto) and a local OONI-API-shaped server,
both on loopback, loaded with real OONI measurements laid out in OONI's bucket layout."""

from __future__ import annotations

import gzip
import io
import json
import logging
import socket
import subprocess
import sys
import tarfile
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from observatory.errors import ObservatoryError
from observatory.sources.ooni import (
    ApiSource,
    RemoteFile,
    S3Source,
    SourceError,
    Syncer,
    SyncPlan,
    bucket_test_name,
    unpack_postcan,
)
from observatory.store import MeasurementFilter
from observatory.store.duckdb import DuckDBStore

DATA = Path(__file__).parent / "data" / "ooni"
BUCKET = "ooni-test-bucket"
TESTS = ("web_connectivity", "telegram", "whatsapp", "signal", "facebook_messenger", "http_invalid_request_line")
HOUR0 = datetime(2024, 2, 12, 18, tzinfo=UTC)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def real_documents() -> list[dict]:
    docs = [json.loads(x) for x in (DATA / "measurements.jsonl").read_text().splitlines() if x.strip()]
    docs += [json.loads(p.read_text()) for p in sorted(DATA.glob("netem_qa/*/measurement.json"))]
    docs = [d for d in docs if d.get("probe_cc") and d.get("test_name") in TESTS]
    # OONI's backend gives every measurement its uid (a postcan carries it only in the post's file name)
    return [dict(d, measurement_uid=d.get("measurement_uid") or f"20240212180000.{i:06d}_{d['probe_cc']}_x")
            for i, d in enumerate(docs)]


def layout(docs: list[dict]) -> dict[str, list[dict]]:
    """OONI's bucket, as it is: raw/YYYYMMDD/HH/CC/<testname>/<YYYYMMDDHH>_<CC>_<testname>.n1.<i>.jsonl.gz
    with the test's name written without underscores, over 5 hours; every fourth measurement is in a
    `.tar.gz` postcan beside the JSON lines instead."""
    files: dict[str, list[dict]] = {}
    for i, d in enumerate(docs):
        hour = HOUR0 + timedelta(hours=i % 5)
        cc, test = d["probe_cc"], d["test_name"].replace("_", "")
        ext = "tar.gz" if i % 4 == 3 else "jsonl.gz"
        key = f"raw/{hour:%Y%m%d}/{hour:%H}/{cc}/{test}/{hour:%Y%m%d%H}_{cc}_{test}.n1.0.{ext}"
        files.setdefault(key, []).append(d)
    return files


def postcan(docs: list[dict]) -> bytes:
    """A postcan: a gzipped tar of `<measurement_uid>.post` files, each the probe's upload, uid-less."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for d in docs:
            post = json.dumps({"format": "json", "content": {k: v for k, v in d.items()
                                                               if k != "measurement_uid"}}).encode()
            info = tarfile.TarInfo(f"2024021218/{d['measurement_uid']}.post")
            info.size = len(post)
            tar.addfile(info, io.BytesIO(post))
    return buf.getvalue()


def body_of(key: str, docs: list[dict]) -> bytes:
    if key.endswith(".tar.gz"):
        return postcan(docs)
    return gzip.compress(("\n".join(json.dumps(d) for d in docs) + "\n").encode())


def count_docs(cc: str, tests: tuple[str, ...] = TESTS) -> int:
    return sum(1 for d in real_documents() if d["probe_cc"] == cc and d["test_name"] in tests)


IT_ALL = count_docs("IT")
IT_WEB = count_docs("IT", ("web_connectivity",))


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def bucket(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    import boto3

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    s3.create_bucket(Bucket=BUCKET)
    for key, docs in layout(real_documents()).items():
        s3.put_object(Bucket=BUCKET, Key=key, Body=body_of(key, docs), ACL="public-read")  # OONI's bucket is public
    yield s3
    for obj in s3.list_objects_v2(Bucket=BUCKET).get("Contents", []):
        s3.delete_object(Bucket=BUCKET, Key=obj["Key"])
    s3.delete_bucket(Bucket=BUCKET)


def _plan(cc: str = "IT", first: int = 19, last: int = 20) -> SyncPlan:
    return SyncPlan(countries=(cc,), tests=TESTS, since=HOUR0.replace(hour=first),
                    until=HOUR0.replace(hour=last) + timedelta(hours=1))


def test_sync_of_one_country_and_range_ingests_exactly_those(bucket: object, s3_endpoint: str,
                                                             duck: DuckDBStore) -> None:
    syncer = Syncer(duck, S3Source(bucket=BUCKET, endpoint=s3_endpoint))
    syncer.run_once(_plan())
    docs = real_documents()
    want = {json.dumps(d, sort_keys=True) for k, ds in layout(docs).items() for d in ds
            if k.split("/")[3] == "IT" and k.split("/")[2] in ("19", "20")}
    assert len(want) >= 8
    got = [json.loads(x) for x in duck.documents(MeasurementFilter())]
    assert {json.dumps({k: v for k, v in d.items()}, sort_keys=True) for d in got} == {
        json.dumps({k: v for k, v in json.loads(w).items() if k not in ("probe_ip", "probe_city")}, sort_keys=True)
        for w in want}
    assert all(d["software_name"] for d in got), "OONI's origin is kept"
    assert duck.stats()["by_country"] == {"IT": len(want)}


class _CrashAfter:
    """A source whose third download dies like a killed process."""

    def __init__(self, inner: S3Source, n: int) -> None:
        self.inner, self.n, self.name = inner, n, inner.name

    def list_files(self, hour: datetime, cc: str, test: str) -> list[RemoteFile]:
        return self.inner.list_files(hour, cc, test)

    def fetch(self, f: RemoteFile, dest: Path) -> None:
        self.n -= 1
        if self.n < 0:
            raise KeyboardInterrupt
        self.inner.fetch(f, dest)


def test_restart_mid_sync_resumes_without_duplicates(bucket: object, s3_endpoint: str, duck: DuckDBStore) -> None:
    plan = _plan(first=18, last=22)
    crashing = Syncer(duck, _CrashAfter(S3Source(bucket=BUCKET, endpoint=s3_endpoint), 2), concurrency=1)
    with pytest.raises(KeyboardInterrupt):
        crashing.run_once(plan)
    partial = duck.count()
    assert 0 < partial < IT_ALL
    again = Syncer(duck, S3Source(bucket=BUCKET, endpoint=s3_endpoint))
    again.run_once(plan)
    assert again.stats.skipped >= 1, "files finished before the crash are not fetched again"
    assert duck.count() == IT_ALL
    assert again.stats.ingest.duplicates == 0
    third = Syncer(duck, S3Source(bucket=BUCKET, endpoint=s3_endpoint))
    assert third.run_once(plan) == 0 and duck.count() == IT_ALL


def test_corrupt_file_is_reported_with_its_key_and_skipped(bucket: object, s3_endpoint: str,
                                                           duck: DuckDBStore) -> None:
    s3 = bucket
    keys = sorted(k for k in layout(real_documents()) if "/IT/" in k)
    bad_key = keys[0]
    whole = s3.get_object(Bucket=BUCKET, Key=bad_key)["Body"].read()  # type: ignore[attr-defined]
    s3.put_object(Bucket=BUCKET, Key=bad_key, Body=whole[: len(whole) // 2],  # type: ignore[attr-defined]
                  ACL="public-read")
    syncer = Syncer(duck, S3Source(bucket=BUCKET, endpoint=s3_endpoint))
    syncer.run_once(_plan(first=18, last=22))
    assert syncer.stats.failed == 1
    assert bad_key in syncer.stats.errors[0]
    lost = len(layout(real_documents())[bad_key])
    assert duck.count() >= IT_ALL - lost, "the other files are all ingested"
    # the broken file is left out of the ledger: the next run tries it again (and only it)...
    again = Syncer(duck, S3Source(bucket=BUCKET, endpoint=s3_endpoint))
    assert again.run_once(_plan(first=18, last=22)) == 1 and again.stats.failed == 1
    # ...and once the bucket holds it whole, it is all in
    s3.put_object(Bucket=BUCKET, Key=bad_key, Body=whole, ACL="public-read")  # type: ignore[attr-defined]
    third = Syncer(duck, S3Source(bucket=BUCKET, endpoint=s3_endpoint))
    assert third.run_once(_plan(first=18, last=22)) == 1 and third.stats.failed == 0
    assert duck.count() == IT_ALL


def test_follow_picks_up_an_hour_added_while_it_runs(bucket: object, s3_endpoint: str, duck: DuckDBStore) -> None:
    s3 = bucket
    late_hour = HOUR0 + timedelta(hours=6)
    doc = dict(real_documents()[-1], measurement_uid="late-hour-uid")
    late_key = (f"raw/{late_hour:%Y%m%d}/{late_hour:%H}/IT/webconnectivity/"
                f"{late_hour:%Y%m%d%H}_IT_webconnectivity.n1.0.jsonl.gz")
    plan = SyncPlan(countries=("IT",), tests=("web_connectivity",), since=HOUR0, until=late_hour + timedelta(hours=1))
    detections: list[int] = []

    def sleep(_: float) -> None:  # while the follower waits, OONI publishes a new hour
        s3.put_object(Bucket=BUCKET, Key=late_key,  # type: ignore[attr-defined]
                      Body=gzip.compress((json.dumps(doc) + "\n").encode()), ACL="public-read")

    syncer = Syncer(duck, S3Source(bucket=BUCKET, endpoint=s3_endpoint))
    syncer.follow(plan, poll_seconds=0, rounds=2, sleep=sleep, after_batch=lambda: detections.append(duck.count()))
    assert duck.count() == IT_WEB + 1
    assert detections == [IT_WEB, IT_WEB + 1], "detection runs after each batch"


def test_cli_sync_against_s3(bucket: object, s3_endpoint: str, tmp_path: Path) -> None:
    db = tmp_path / "o.duckdb"
    args = [sys.executable, "-m", "observatory", "ooni", "sync", "--db", str(db), "--country", "IT",
            "--since", "2024-02-12T18:00:00Z", "--until", "2024-02-12T23:00:00Z", "--endpoint", s3_endpoint,
            "--bucket", BUCKET]
    out = subprocess.run(args, capture_output=True, text=True, timeout=120, check=True)
    assert len(out.stdout.strip().splitlines()) == 1, "not a terminal: the JSON summary and nothing else"
    summary = json.loads(out.stdout)
    assert summary["measurements"] == IT_ALL and summary["failed"] == 0
    again = subprocess.run(args, capture_output=True, text=True, timeout=120, check=True)
    assert json.loads(again.stdout.strip().splitlines()[-1])["files"] == 0


def test_cli_sync_shows_a_progress_bar_on_a_terminal(bucket: object, s3_endpoint: str, tmp_path: Path) -> None:
    import os
    import pty

    args = [sys.executable, "-m", "observatory", "ooni", "sync", "--db", str(tmp_path / "o.duckdb"), "--country",
            "IT", "--since", "2024-02-12T18:00:00Z", "--until", "2024-02-12T23:00:00Z", "--endpoint", s3_endpoint,
            "--bucket", BUCKET]
    leader, follower = pty.openpty()
    env = dict(os.environ, COLUMNS="160", TERM="xterm")
    proc = subprocess.Popen(args, stdin=follower, stdout=follower, stderr=follower, env=env)
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 65536)
        except OSError:  # the terminal closed with the process
            break
        if not data:
            break
        chunks.append(data)
    assert proc.wait(timeout=120) == 0
    os.close(leader)
    screen = b"".join(chunks).decode("utf-8", "replace")
    files = len({k for k in layout(real_documents()) if "/IT/" in k})
    assert f"files {files}/{files}" in screen and f"measurements {IT_ALL}" in screen, screen[-2000:]


def test_cli_rejects_bad_flags(tmp_path: Path) -> None:
    base = [sys.executable, "-m", "observatory", "ooni", "sync", "--db", str(tmp_path / "o.duckdb")]
    for extra, msg in [(["--country", "Pakistan", "--since", "2024-01-01"], "--country"),
                       (["--country", "PK", "--since", "yesterday"], "--since"),
                       (["--country", "PK", "--since", "2024-01-02", "--until", "2024-01-01"], "--until"),
                       (["--country", "PK", "--since", "2024-01-01", "--source", "ftp"], "--source")]:
        p = subprocess.run(base + extra, capture_output=True, text=True, timeout=60)
        assert p.returncode != 0 and msg in p.stderr, (extra, p.stderr)


# --- the API source -------------------------------------------------------------------------------------


class _OoniApi(BaseHTTPRequestHandler):
    docs: list[dict] = []
    fail_next: list[int] = []
    calls: list[str] = []

    def log_message(self, *args: object) -> None:
        pass

    def _send(self, code: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802
        url = urlsplit(self.path)
        q = {k: v[0] for k, v in parse_qs(url.query).items()}
        self.calls.append(url.path)
        if self.fail_next:
            self._send(self.fail_next.pop(0), {"error": "try again"})
            return
        if url.path == "/api/v1/measurements":
            since = datetime.fromisoformat(q["since"]).replace(tzinfo=UTC)
            until = datetime.fromisoformat(q["until"]).replace(tzinfo=UTC)
            rows = [d for d in self.docs if d["probe_cc"] == q["probe_cc"] and d["test_name"] == q["test_name"]
                    and since <= _api_time(d) < until]
            off, lim = int(q.get("offset", 0)), int(q.get("limit", 100))
            page = rows[off:off + lim]
            self._send(200, {"metadata": {"count": len(rows), "offset": off, "limit": lim},
                             "results": [{"measurement_uid": d["measurement_uid"], "probe_cc": d["probe_cc"],
                                          "test_name": d["test_name"], "report_id": d.get("report_id"),
                                          "measurement_start_time": d["measurement_start_time"]} for d in page]})
        elif url.path == "/api/v1/raw_measurement":
            match = [d for d in self.docs if d["measurement_uid"] == q.get("measurement_uid")]
            self._send(200, match[0]) if match else self._send(404, {"error": "measurement not found"})
        else:
            self._send(404, {"error": "not found"})


def _api_time(d: dict) -> datetime:
    return datetime.strptime(d["measurement_start_time"], "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)


def _api_expected(plan: SyncPlan) -> int:
    """What the API lists for the plan: its country and tests, measured within its hours."""
    assert plan.until is not None
    return sum(1 for d in _OoniApi.docs if d["probe_cc"] in plan.countries and d["test_name"] in plan.tests
               and plan.since <= _api_time(d) < plan.until)


@pytest.fixture
def ooni_api() -> Iterator[str]:
    docs = []
    for i, d in enumerate(d for d in real_documents() if d["probe_cc"] == "IT"):
        d = dict(d, measurement_uid=d.get("measurement_uid") or f"20240212_IT_{i:04d}")
        docs.append(d)
    _OoniApi.docs, _OoniApi.fail_next, _OoniApi.calls = docs, [], []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _OoniApi)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_api_source_ingests_the_range_and_resumes(ooni_api: str, duck: DuckDBStore) -> None:
    source = ApiSource(endpoint=ooni_api)
    source.page_size = 7  # several pages per hour
    plan = SyncPlan(countries=("IT",), tests=("web_connectivity",), since=HOUR0, until=HOUR0 + timedelta(hours=5))
    Syncer(duck, source).run_once(plan)
    assert duck.count() == _api_expected(plan) > 7
    again = Syncer(duck, source)
    assert again.run_once(plan) == 0 and again.stats.skipped >= 1
    assert duck.count() == _api_expected(plan)


def test_api_source_retries_server_errors_and_fails_clearly_on_client_errors(ooni_api: str,
                                                                             duck: DuckDBStore) -> None:
    import observatory.sources.ooni as mod

    plan = SyncPlan(countries=("IT",), tests=("web_connectivity",), since=HOUR0, until=HOUR0 + timedelta(hours=5))
    _OoniApi.fail_next[:] = [503, 502]
    orig = mod._retrying

    def fast(call, *, what, attempts=5, base_delay=0.5):  # type: ignore[no-untyped-def]
        return orig(call, what=what, attempts=attempts, base_delay=0.01)

    mod._retrying = fast  # keep the test quick: same logic, shorter waits
    try:
        Syncer(duck, ApiSource(endpoint=ooni_api)).run_once(plan)
        assert duck.count() == _api_expected(plan)
        _OoniApi.fail_next[:] = [403]
        with pytest.raises(SourceError, match="HTTP 403"):
            Syncer(duck, ApiSource(endpoint=ooni_api)).pending(plan, datetime.now(UTC))
    finally:
        mod._retrying = orig
    assert issubclass(SourceError, ObservatoryError)


# --- the bucket as it is: test names without underscores, postcans, anonymous access --------------------


def test_bucket_test_names_are_written_without_underscores() -> None:
    assert [bucket_test_name(t) for t in ("web_connectivity", "facebook_messenger", "http_invalid_request_line",
                                          "telegram")] == \
        ["webconnectivity", "facebookmessenger", "httpinvalidrequestline", "telegram"]


def test_sync_finds_every_test_under_its_bucket_name_and_reads_postcans(
        bucket: object, s3_endpoint: str, duck: DuckDBStore, monkeypatch: pytest.MonkeyPatch) -> None:
    # no credentials anywhere: OONI's bucket is read with unsigned requests
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    docs = real_documents()
    plan = SyncPlan(countries=tuple(sorted({d["probe_cc"] for d in docs})), tests=TESTS, since=HOUR0,
                    until=HOUR0 + timedelta(hours=5))
    syncer = Syncer(duck, S3Source(bucket=BUCKET, endpoint=s3_endpoint))
    syncer.run_once(plan)
    assert syncer.stats.failed == 0 and syncer.stats.ingest.rejected == 0
    assert duck.count() == len(docs)
    assert syncer.stats.bytes == sum(len(body_of(k, ds)) for k, ds in layout(docs).items())
    by_test = duck.stats()["by_test"]
    assert {"web_connectivity", "facebook_messenger", "http_invalid_request_line"} <= set(by_test)
    in_cans = {d["measurement_uid"] for k, ds in layout(docs).items() if k.endswith(".tar.gz") for d in ds}
    assert len(in_cans) >= 5
    stored = {json.loads(x)["measurement_uid"] for x in duck.documents(MeasurementFilter())}
    assert in_cans <= stored, "a postcan's measurements keep the uid of their post's file name"
    # the instant-messaging tests have no input: their platform is the test's, so that detection sees them
    platforms = dict(duck._con.execute("SELECT DISTINCT test_name, platform FROM measurements "
                                       "WHERE test_name IN ('telegram', 'facebook_messenger', 'signal')").fetchall())
    assert platforms == {"telegram": "telegram", "facebook_messenger": "facebook", "signal": "signal"}


def test_postcan_posts_that_hold_no_measurement_are_rejected_with_their_name(tmp_path: Path) -> None:
    doc = real_documents()[0]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, body in [(f"x/{doc['measurement_uid']}.post", json.dumps({"format": "json", "content": doc})),
                           ("x/old.post", json.dumps({"format": "yaml", "content": "---"})),
                           ("x/broken.post", "{not json")]:
            info = tarfile.TarInfo(name)
            info.size = len(body.encode())
            tar.addfile(info, io.BytesIO(body.encode()))
    can = tmp_path / "c.tar.gz"
    can.write_bytes(buf.getvalue())
    rejects = unpack_postcan(can, tmp_path / "c.jsonl", where="raw/k.tar.gz")
    assert [json.loads(x)["measurement_uid"] for x in (tmp_path / "c.jsonl").read_text().splitlines()] == \
        [doc["measurement_uid"]]
    assert [(r.file, r.line) for r in rejects] == [("raw/k.tar.gz:x/old.post", 2), ("raw/k.tar.gz:x/broken.post", 3)]
    assert "format 'yaml'" in rejects[0].reason and "invalid JSON" in rejects[1].reason
    can.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    cut = unpack_postcan(can, tmp_path / "d.jsonl", where="raw/k.tar.gz")
    assert cut and cut[-1].reason.startswith("postcan is corrupt or cut short")


def test_a_download_cut_short_is_not_marked_done_and_is_fetched_again(bucket: object, s3_endpoint: str,
                                                                      duck: DuckDBStore) -> None:
    cut = S3Source(bucket=BUCKET, endpoint=s3_endpoint)
    real_download = cut._s3.download_file

    def download_half(bucket_name: str, key: str, dest: str) -> None:  # a connection dropped mid-file
        real_download(bucket_name, key, dest)
        data = Path(dest).read_bytes()
        Path(dest).write_bytes(data[: len(data) // 2])

    cut._s3.download_file = download_half
    plan = _plan(first=18, last=22)
    first = Syncer(duck, cut)
    first.run_once(plan)
    files = len({k for k in layout(real_documents()) if "/IT/" in k})
    assert first.stats.failed == files and "bytes" in first.stats.errors[0] and duck.count() == 0
    again = Syncer(duck, S3Source(bucket=BUCKET, endpoint=s3_endpoint))
    assert again.run_once(plan) == files and again.stats.failed == 0
    assert duck.count() == IT_ALL
