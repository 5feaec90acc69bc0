"""Files and streams of OONI-format measurements -> classified rows in the store.

Reads `.jsonl`, `.jsonl.gz`, `.json` (one measurement) and directories of them, in batches with bounded memory;
and OONI's observation rows (`obs_web` CSV, CSV.gz or Parquet, recognised by header: `sources/obsrows.py`).
A bad line is never fatal: it is rejected with file:line and a reason (and written to a rejects file), and
every valid line around it is stored.
"""

from __future__ import annotations

import gc
import json
import multiprocessing
import os
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import IO, Any

import pyarrow as pa

from observatory.errors import ParseError
from observatory.ingest_files import (
    READ_BUFFER,
    LineTooLong,
    Reject,
    expand_paths,
    file_size,
    range_lines,
    read_file,
    sample_documents,
)
from observatory.measurement import MAX_DOCUMENT_BYTES, Measurement, parse_measurement, time_problem
from observatory.sources import obsrows
from observatory.store.base import (
    BatchBuilder,
    DocumentEncoder,
    InsertResult,
    Row,
    Store,
    insert_beside_uploads,
    with_credential,
)
from observatory.verdict import classify

# what callers have always imported from here
__all__ = ["BATCH_SIZE", "IngestSummary", "Ingestor", "Reject", "expand_paths", "ingest_paths", "parse_sane",
           "read_file", "source_of", "to_row"]

BATCH_SIZE = 5000
# Files at least this large are parsed and classified by a pool of processes, one per core, in chunks.
POOL_MIN_BYTES = 32 << 20
POOL_CHUNK = 256
POOL_CHUNK_BYTES = 4 << 20  # and at most this many bytes of documents per chunk
# A plain (uncompressed) file is not read by the parent at all: each worker reads the lines that start in its
# own byte range of the file, and says how many it read (file:line stays exact).
POOL_RANGE_BYTES = 4 << 20


@dataclass(slots=True)
class IngestSummary:
    files: int = 0
    read: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    rejects: list[Reject] = field(default_factory=list)  # the first few, for display

    def to_json(self) -> dict[str, Any]:
        return {"files": self.files, "read": self.read, "accepted": self.accepted,
                "duplicates": self.duplicates, "rejected": self.rejected}


def parse_sane(data: bytes, *, where: str = "", now: datetime | None = None) -> Measurement:
    """parse_measurement, and a ParseError for a time before OONI or ahead of the present (issue #22: a year-1
    or year-9999 measurement in a file must not reach the store, where it would break detection)."""
    m = parse_measurement(data, where=where)
    problem = time_problem(m.start_time, now or datetime.now(UTC))
    if problem is not None:
        raise ParseError(problem, where=where)
    return m


def parse_or_reject(name: str, line: int, data: bytes, now: datetime | None = None) -> Measurement | Reject:
    """One document parsed and validated, or its Reject (file:line, the reason, the start of its text).

    No `where` is formatted into the error: the Reject carries the place, and this runs once per document."""
    try:
        return parse_sane(data, now=now)
    except ParseError as exc:
        return Reject(name, line, exc.reason, data[:500].decode("utf-8", "replace"))


def source_of(m: Measurement, source: str = "") -> str:
    return source or ("observatory" if m.software_name == "observatory" else "ooni" if m.software_name else "")


def to_row(m: Measurement, *, source: str = "") -> Row:
    c = classify(m)
    return Row(measurement=m, verdict=c.verdict, kbps=c.kbps, source=source_of(m, source), rule=c.rule,
               rules_version=c.rules_version)


def _add_classified(builder: BatchBuilder, m: Measurement, source: str) -> None:
    c = classify(m)
    builder.add(m, c.verdict, c.kbps, source_of(m, source), c.rule, c.rules_version)


# a pool worker's answer: the rows (one Arrow table), the rejects in file order, the lines it read, and the
# read error that stopped it (None if none)
_ChunkResult = tuple[pa.Table, list[Reject], int, str | None]


def _parse_chunk(name: str, source: str, items: list[tuple[int, bytes]],
                 encoder: DocumentEncoder | None) -> _ChunkResult:
    """A pool worker's task: parse, validate and classify consecutive documents of one file, in order.

    The rows come back as one Arrow table (pickled as Arrow IPC: a few buffers, however many rows), with the
    documents already compressed when the store gave an `encoder`; the rejects in file order. Nothing decoded
    crosses the process boundary.
    """
    builder = BatchBuilder()
    rejects: list[Reject] = []
    now = datetime.now(UTC)
    for line, data in items:
        item = parse_or_reject(name, line, data, now)
        if isinstance(item, Reject):
            rejects.append(item)
        else:
            _add_classified(builder, item, source)
    return builder.take(encoder), rejects, len(items), None


def _parse_range(name: str, source: str, start: int, end: int, encoder: DocumentEncoder | None,
                 limit: int = MAX_DOCUMENT_BYTES) -> _ChunkResult:
    """A pool worker's task on a plain file: reads, parses, validates and classifies the lines that start in
    [start, end). Line numbers in the rejects count from the range's first line (the parent, which takes the
    answers in file order, knows how many came before)."""
    builder = BatchBuilder()
    rejects: list[Reject] = []
    n = 0
    error = None
    now = datetime.now(UTC)
    try:
        with open(name, "rb", buffering=READ_BUFFER) as stream:
            for n, line in enumerate(range_lines(stream, start, end, limit), start=1):  # noqa: B007
                if isinstance(line, LineTooLong):
                    rejects.append(Reject(name, n, f"line of {line.size} bytes exceeds the {limit} byte limit"))
                    continue
                if line.isspace():
                    continue
                item = parse_or_reject(name, n, line, now)
                if isinstance(item, Reject):
                    rejects.append(item)
                else:
                    _add_classified(builder, item, source)
    except OSError as exc:
        error = str(exc.strerror or exc)
    return builder.take(encoder), rejects, n, error


def _worker_init() -> None:
    """A pool worker's garbage collector: what it inherited from the parent is frozen (never scanned, and its
    pages stay shared), and young collections run less often. Each decoded document is freed by reference
    counting as soon as its row is built; a collection every 700 allocations only re-walks the document in hand."""
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)


def _workers() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class Ingestor:
    """Batches measurements into the store; counts and records rejects. Use as a context manager.

    Rows are gathered column by column (BatchBuilder) and a full batch is handed to the store as one Arrow
    table by a background thread while the next one is parsed (DuckDB and zstd release the GIL), one batch in
    flight at a time; each batch is still one transaction, and leaving the context waits for the last one.
    With `processes` > 1 a large file is parsed and classified by that many forked processes, its results
    taken in file order, so counts and rejects are exactly those of a serial run (`ingest_paths`, the
    command's path, uses one per core; a long-running server keeps the default, serial).
    """

    def __init__(
        self,
        store: Store,
        *,
        rejects_path: str | os.PathLike[str] | None = None,
        batch_size: int = BATCH_SIZE,
        on_progress: Callable[[IngestSummary], None] | None = None,
        source: str = "",
        processes: int = 1,
        credential: str | None = None,
    ) -> None:
        self.store = store
        self._processes = processes
        self._pool: ProcessPoolExecutor | None = None
        self.summary = IngestSummary()
        self.batch_size = batch_size
        self._builder = BatchBuilder()
        self._tables: list[pa.Table] = []  # parsed by the pool, not yet written
        self._pending_rows = 0
        self._rejects_path = Path(rejects_path) if rejects_path else None
        self._rejects_file: IO[str] | None = None
        self._on_progress = on_progress
        self._source = source
        self._writer: ThreadPoolExecutor | None = None
        self._in_flight: Future[InsertResult] | None = None
        # provenance (issue #22): what each row records as the credential that brought it. A file's own name
        # (`file:<name>`) unless the caller names the source; OONI's public bucket is `ooni-s3`
        self._credential = credential or ("ooni-s3" if source == "ooni" else None)
        self._current = self._credential or "import"
        self._row_credentials: list[str] = []  # one per row in the builder

    def __enter__(self) -> Ingestor:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if exc[0] is None:
                self.flush()
                self._settle()
            elif self._in_flight is not None:
                self._in_flight.exception()  # let the batch in flight finish (or fail) before unwinding
        finally:
            if self._writer is not None:
                self._writer.shutdown(wait=True)
                self._writer = None
            if self._pool is not None:
                self._pool.shutdown(wait=True, cancel_futures=True)
                self._pool = None
            if self._rejects_file:
                self._rejects_file.close()

    def add(self, m: Measurement, *, source: str | None = None) -> None:
        self.summary.read += 1
        _add_classified(self._builder, m, self._source if source is None else source)
        self._row_credentials.append(self._current)
        self._pending_rows += 1
        if self._pending_rows >= self.batch_size:
            self._flush_behind()

    def _add_table(self, table: pa.Table) -> None:
        if not table.num_rows:
            return
        table = with_credential(table, self._current)
        self.summary.read += table.num_rows
        if self._tables and self._tables[-1].schema != table.schema:
            self._flush_behind()  # documents as JSON before the store had a dictionary, encoded after
        self._tables.append(table)
        self._pending_rows += table.num_rows
        if self._pending_rows >= self.batch_size:
            self._flush_behind()

    def reject(self, r: Reject) -> None:
        self.summary.rejected += 1
        if r.line > 0:
            self.summary.read += 1
        if len(self.summary.rejects) < 50:
            self.summary.rejects.append(r)
        if self._rejects_path is not None:
            if self._rejects_file is None:
                self._rejects_path.parent.mkdir(parents=True, exist_ok=True)
                self._rejects_file = open(self._rejects_path, "a", encoding="utf-8")  # noqa: SIM115
            self._rejects_file.write(json.dumps(r.to_json()) + "\n")
            self._rejects_file.flush()

    def _take_batch(self) -> pa.Table | None:
        if len(self._builder):
            creds, self._row_credentials = self._row_credentials, []
            self._tables.append(with_credential(self._builder.take(), creds))
        if not self._tables:
            return None
        tables, self._tables, self._pending_rows = self._tables, [], 0
        return tables[0] if len(tables) == 1 else pa.concat_tables(tables)

    def flush(self) -> None:
        """Writes every pending row now, in the caller's thread, after the batch in flight."""
        self._settle()
        batch = self._take_batch()
        if batch is not None:
            self._count(insert_beside_uploads(self.store, batch))

    def _flush_behind(self) -> None:
        """Hands the full batch to the writer thread and returns, once the previous batch is stored."""
        self._settle()
        batch = self._take_batch()
        if batch is None:
            return
        if self._writer is None:
            self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest-writer")
        self._in_flight = self._writer.submit(insert_beside_uploads, self.store, batch)

    def _settle(self) -> None:
        """Waits for the batch in flight and counts it; its error, if any, is raised here."""
        if self._in_flight is None:
            return
        future, self._in_flight = self._in_flight, None
        self._count(future.result())

    def _count(self, result: InsertResult) -> None:
        self.summary.accepted += result.accepted
        self.summary.duplicates += result.duplicates
        if self._on_progress:
            self._on_progress(self.summary)

    def ingest_bytes(self, data: bytes, *, where: str, line: int) -> None:
        item = parse_or_reject(where, line, data)
        if isinstance(item, Reject):
            self.reject(item)
        else:
            self.add(item)

    def ingest_file(self, path: Path) -> None:
        self.summary.files += 1
        self._current = self._credential or f"file:{Path(path).name}"
        if self._ingest_observation_rows(path):
            return
        if self._processes > 1 and file_size(path) >= POOL_MIN_BYTES:
            self._ingest_file_pooled(path)
            return
        for line, item in read_file(path):
            if isinstance(item, Reject):
                self.reject(item)
            else:
                self.ingest_bytes(item, where=str(path), line=line)

    def _ingest_observation_rows(self, path: Path) -> bool:
        """OONI's observation rows (a CSV or Parquet table, recognised by its header), grouped into measurements;
        False when the file is not such a table (JSON, read as before)."""
        try:
            kind = obsrows.sniff(path)
        except obsrows.NotObservationRows as exc:
            self.reject(Reject(str(path), 0, str(exc)))
            return True
        if kind is None:
            return False
        for item in obsrows.read_measurements(path, kind):
            if isinstance(item, obsrows.BadRow):
                self.reject(Reject(str(path), item.line, item.reason, item.text))
            else:
                self.add(item, source="ooni")
        return True

    def _ingest_file_pooled(self, path: Path) -> None:
        if self._pool is None:
            # fork: the workers only parse and classify, never touching the store or the threads of the parent
            # (DuckDB's, the writer); spawn would re-run the caller's main module, which a script without a
            # __main__ guard does not survive
            method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
            # pyarrow imports pandas (when installed) on its first array, a slow import: once here, before the fork,
            # rather than once in every worker
            BatchBuilder().take()
            self._pool = ProcessPoolExecutor(self._processes, mp_context=multiprocessing.get_context(method),
                                             initializer=_worker_init)
        # a store that learns its encoding (a zstd dictionary) does so from the head of the file before the
        # workers start, so that they compress from the first document on: else the first batches would cross
        # the pipe as JSON, to be compressed in this process
        self.store.document_encoder(partial(sample_documents, path))
        name, size = str(path), file_size(path)
        if size and not name.endswith(".gz") and not name.endswith(".json"):
            self._ingest_ranges(self._pool, name, size)
        else:  # compressed, one document, or empty or unreadable (read_file says which)
            self._ingest_chunks(self._pool, path)

    def _ingest_ranges(self, pool: ProcessPoolExecutor, name: str, size: int) -> None:
        """A plain file: each worker reads its own byte ranges; the answers are taken in file order."""
        pending: deque[Future[_ChunkResult]] = deque()
        lines = 0  # of the file, before the range whose answer is taken next
        broken = False

        def take(future: Future[_ChunkResult]) -> None:
            nonlocal lines, broken
            table, rejects, n, error = future.result()
            if broken:
                return
            for r in rejects:
                self.reject(Reject(r.file, lines + r.line, r.reason, r.text) if r.line else r)
            self._add_table(table)
            if error is not None:
                broken = True
                self.reject(Reject(name, lines + n + 1, f"read error after line {lines + n}: {error}"))
            lines += n

        for start in range(0, size, POOL_RANGE_BYTES):
            pending.append(pool.submit(_parse_range, name, self._source, start,
                                       min(start + POOL_RANGE_BYTES, size), self.store.document_encoder()))
            # bounded: at most a few ranges per worker are in work ahead of what has been taken back
            if len(pending) > 2 * self._processes:
                take(pending.popleft())
            if broken:
                break
        while pending:
            take(pending.popleft())

    def _ingest_chunks(self, pool: ProcessPoolExecutor, path: Path) -> None:
        """A compressed or single-document file: read here, parsed in chunks of lines by the workers."""
        name = str(path)
        pending: deque[Future[_ChunkResult]] = deque()
        chunk: list[tuple[int, bytes]] = []
        chunk_bytes = 0

        def take(future: Future[_ChunkResult]) -> None:
            table, rejects, _, _ = future.result()
            for r in rejects:
                self.reject(r)
            self._add_table(table)

        def submit() -> None:
            pending.append(pool.submit(_parse_chunk, name, self._source, chunk, self.store.document_encoder()))

        for line, item in read_file(path):
            if isinstance(item, Reject):  # unreadable: reported in its place, after the lines before it
                if chunk:
                    submit()
                    chunk, chunk_bytes = [], 0
                while pending:
                    take(pending.popleft())
                self.reject(item)
                continue
            chunk.append((line, item))
            chunk_bytes += len(item)
            if len(chunk) >= POOL_CHUNK or chunk_bytes >= POOL_CHUNK_BYTES:
                submit()
                chunk, chunk_bytes = [], 0
                # bounded: at most a few chunks per worker are read ahead of what has been taken back
                if len(pending) > 2 * self._processes:
                    take(pending.popleft())
        if chunk:
            submit()
        while pending:
            take(pending.popleft())


def ingest_paths(
    store: Store,
    paths: Iterable[str | os.PathLike[str]],
    *,
    rejects_path: str | os.PathLike[str] | None = None,
    on_progress: Callable[[IngestSummary], None] | None = None,
    batch_size: int = BATCH_SIZE,
    processes: int | None = None,
) -> IngestSummary:
    """Ingests files and directories; `processes` parse large files in parallel (default: one per core)."""
    with Ingestor(store, rejects_path=rejects_path, on_progress=on_progress, batch_size=batch_size,
                  processes=_workers() if processes is None else processes) as ing:
        for path in expand_paths(paths):
            ing.ingest_file(path)
    return ing.summary
