"""Files and streams of OONI-format measurements -> classified rows in the store.

Reads `.jsonl`, `.jsonl.gz`, `.json` (one measurement) and directories of them, in batches with bounded memory.
A bad line is never fatal: it is rejected with file:line and a reason (and written to a rejects file), and
every valid line around it is stored.
"""

from __future__ import annotations

import gzip
import json
import multiprocessing
import os
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any

from observatory.errors import ParseError
from observatory.measurement import MAX_DOCUMENT_BYTES, Measurement, parse_measurement
from observatory.store.base import InsertResult, Row, Store
from observatory.verdict import classify

BATCH_SIZE = 5000
READ_BUFFER = 1 << 20
# Files at least this large are parsed and classified by a pool of processes, one per core, in chunks.
POOL_MIN_BYTES = 32 << 20
POOL_CHUNK = 256
SUFFIXES = (".jsonl", ".jsonl.gz", ".json", ".json.gz", ".ndjson")


@dataclass(slots=True)
class Reject:
    file: str
    line: int
    reason: str
    text: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"file": self.file, "line": self.line, "reason": self.reason, "text": self.text}

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.reason}"


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


class _LineTooLong:
    """Marker for a line over the size limit; its bytes were skipped, not held in memory."""

    def __init__(self, size: int) -> None:
        self.size = size


def expand_paths(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out.extend(sorted(f for f in p.rglob("*") if f.is_file() and f.name.endswith(SUFFIXES)))
        else:
            out.append(p)
    return out


def _bounded_lines(stream: IO[bytes], limit: int) -> Iterator[bytes | _LineTooLong]:
    """Lines of a binary stream; a line longer than `limit` is skipped in chunks and reported by size."""
    while True:
        line = stream.readline(limit + 1)
        if not line:
            return
        if len(line) > limit and not line.endswith(b"\n"):
            size = len(line)
            while True:
                more = stream.readline(1 << 20)
                size += len(more)
                if not more or more.endswith(b"\n"):
                    break
            yield _LineTooLong(size)
            continue
        yield line


def read_file(path: Path, *, limit: int = MAX_DOCUMENT_BYTES) -> Iterator[tuple[int, bytes | Reject]]:
    """(line number, document bytes) for each document of a file, or a Reject for what cannot be read."""
    name = str(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        yield 0, Reject(name, 0, f"cannot open: {exc.strerror or exc}")
        return
    if size == 0:
        yield 0, Reject(name, 0, "empty file")
        return
    gz = name.endswith(".gz")
    single = name.removesuffix(".gz").endswith(".json")
    try:
        # A large buffer: documents are kilobytes each, and each refill of a small one is a system call that
        # gives up the GIL to the batch writer thread and waits to get it back.
        raw: IO[bytes] = (gzip.open(path, "rb") if gz  # type: ignore[assignment]  # noqa: SIM115
                          else open(path, "rb", buffering=READ_BUFFER))
    except OSError as exc:
        yield 0, Reject(name, 0, f"cannot open: {exc.strerror or exc}")
        return
    with raw:
        stream = raw
        if single:
            data = stream.read(limit + 1)
            if len(data) > limit:
                yield 1, Reject(name, 1, f"document exceeds the {limit} byte limit")
            elif not data.strip():
                yield 0, Reject(name, 0, "empty file")
            else:
                yield 1, data
            return
        n = 0
        broken = False
        try:
            for n, line in enumerate(_bounded_lines(stream, limit), start=1):
                if isinstance(line, _LineTooLong):
                    yield n, Reject(name, n, f"line of {line.size} bytes exceeds the {limit} byte limit")
                elif line.strip():
                    yield n, line
        except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
            broken = True
            yield n + 1, Reject(name, n + 1, f"compressed stream is corrupt or cut short after line {n}: {exc}")
        except OSError as exc:
            broken = True
            yield n + 1, Reject(name, n + 1, f"read error after line {n}: {exc}")
        if n == 0 and not broken:
            yield 0, Reject(name, 0, "empty file")


def parse_lines(
    items: Iterable[tuple[str, int, bytes]]
) -> Iterator[Measurement | Reject]:
    for name, line, data in items:
        try:
            yield parse_measurement(data, where=f"{name}:{line}")
        except ParseError as exc:
            yield Reject(name, line, exc.reason, data[:500].decode("utf-8", "replace"))


def to_row(m: Measurement, *, source: str = "") -> Row:
    c = classify(m)
    src = source or ("observatory" if m.software_name == "observatory" else "ooni" if m.software_name else "")
    return Row(measurement=m, verdict=c.verdict, kbps=c.kbps, source=src)


def _settled(row: Row) -> Row:
    """The row as the store writes it: the document as JSON bytes, without its decoded tree.

    A batch keeps thousands of rows alive; each decoded tree is hundreds of dicts and lists, and Python's cycle
    collector walks every live one again and again while the next batch is decoded: it cost ingest most of
    its time. The store reads only `document_json()` and the envelope fields, so the batch keeps just those.
    """
    m = row.measurement
    return replace(row, measurement=replace(m, doc={}, raw_json=m.document_json()))


def _parse_chunk(name: str, source: str, items: list[tuple[int, bytes]]) -> list[Row | Reject]:
    """A pool worker's task: parse, validate and classify consecutive documents of one file, in order."""
    out: list[Row | Reject] = []
    for line, data in items:
        try:
            m = parse_measurement(data, where=f"{name}:{line}")
        except ParseError as exc:
            out.append(Reject(name, line, exc.reason, data[:500].decode("utf-8", "replace")))
            continue
        out.append(_settled(to_row(m, source=source)))
    return out


def _workers() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class Ingestor:
    """Batches measurements into the store; counts and records rejects. Use as a context manager.

    A full batch is written by a background thread while the next one is parsed (DuckDB and zstd release the
    GIL), one batch in flight at a time; each batch is still one transaction, and leaving the context waits
    for the last one. With `processes` > 1 a large file is parsed and classified by that many forked processes,
    its results taken in file order, so counts, rejects and batches are exactly those of a serial run
    (`ingest_paths`, the command's path, uses one per core; a long-running server keeps the default, serial).
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
    ) -> None:
        self.store = store
        self._processes = processes
        self._pool: ProcessPoolExecutor | None = None
        self.summary = IngestSummary()
        self.batch_size = batch_size
        self._batch: list[Row] = []
        self._rejects_path = Path(rejects_path) if rejects_path else None
        self._rejects_file: IO[str] | None = None
        self._on_progress = on_progress
        self._source = source
        self._writer: ThreadPoolExecutor | None = None
        self._in_flight: Future[InsertResult] | None = None

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

    def add(self, m: Measurement) -> None:
        self._add_row(_settled(to_row(m, source=self._source)))

    def _add_row(self, row: Row) -> None:
        self.summary.read += 1
        self._batch.append(row)
        if len(self._batch) >= self.batch_size:
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

    def flush(self) -> None:
        """Writes every pending row now, in the caller's thread, after the batch in flight."""
        self._settle()
        if not self._batch:
            return
        batch, self._batch = self._batch, []
        self._count(self.store.insert(batch))

    def _flush_behind(self) -> None:
        """Hands the full batch to the writer thread and returns, once the previous batch is stored."""
        self._settle()
        batch, self._batch = self._batch, []
        if self._writer is None:
            self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest-writer")
        self._in_flight = self._writer.submit(self.store.insert, batch)

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
        try:
            self.add(parse_measurement(data, where=f"{where}:{line}"))
        except ParseError as exc:
            self.reject(Reject(where, line, exc.reason, data[:500].decode("utf-8", "replace")))

    def ingest_file(self, path: Path) -> None:
        self.summary.files += 1
        if self._processes > 1 and _size(path) >= POOL_MIN_BYTES:
            self._ingest_file_pooled(path)
            return
        for line, item in read_file(path):
            if isinstance(item, Reject):
                self.reject(item)
            else:
                self.ingest_bytes(item, where=str(path), line=line)

    def _ingest_file_pooled(self, path: Path) -> None:
        if self._pool is None:
            # fork: the workers only parse and classify, never touching the store or the threads of the parent
            # (DuckDB's, the writer); spawn would re-run the caller's main module, which a script without a
            # __main__ guard does not survive
            method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
            self._pool = ProcessPoolExecutor(self._processes, mp_context=multiprocessing.get_context(method))
        name = str(path)
        pending: deque[Future[list[Row | Reject]]] = deque()
        chunk: list[tuple[int, bytes]] = []

        def take(future: Future[list[Row | Reject]]) -> None:
            for item in future.result():
                if isinstance(item, Reject):
                    self.reject(item)
                else:
                    self._add_row(item)

        for line, item in read_file(path):
            if isinstance(item, Reject):  # unreadable: reported in its place, after the lines before it
                if chunk:
                    pending.append(self._pool.submit(_parse_chunk, name, self._source, chunk))
                    chunk = []
                while pending:
                    take(pending.popleft())
                self.reject(item)
                continue
            chunk.append((line, item))
            if len(chunk) >= POOL_CHUNK:
                pending.append(self._pool.submit(_parse_chunk, name, self._source, chunk))
                chunk = []
                if len(pending) > 4 * self._processes:
                    take(pending.popleft())
        if chunk:
            pending.append(self._pool.submit(_parse_chunk, name, self._source, chunk))
        while pending:
            take(pending.popleft())


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


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
