"""Files and streams of OONI-format measurements -> classified rows in the store.

Reads `.jsonl`, `.jsonl.gz`, `.json` (one measurement) and directories of them, in batches with bounded memory.
A bad line is never fatal: it is rejected with file:line and a reason (and written to a rejects file), and
every valid line around it is stored.
"""

from __future__ import annotations

import gzip
import json
import os
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from observatory.errors import ParseError
from observatory.measurement import MAX_DOCUMENT_BYTES, Measurement, parse_measurement
from observatory.store.base import Row, Store
from observatory.verdict import classify

BATCH_SIZE = 5000
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
        raw: IO[bytes] = gzip.open(path, "rb") if gz else open(path, "rb")  # noqa: SIM115
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


class Ingestor:
    """Batches measurements into the store; counts and records rejects. Use as a context manager."""

    def __init__(
        self,
        store: Store,
        *,
        rejects_path: str | os.PathLike[str] | None = None,
        batch_size: int = BATCH_SIZE,
        on_progress: Callable[[IngestSummary], None] | None = None,
        source: str = "",
    ) -> None:
        self.store = store
        self.summary = IngestSummary()
        self.batch_size = batch_size
        self._batch: list[Row] = []
        self._rejects_path = Path(rejects_path) if rejects_path else None
        self._rejects_file: IO[str] | None = None
        self._on_progress = on_progress
        self._source = source

    def __enter__(self) -> Ingestor:
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None:
            self.flush()
        if self._rejects_file:
            self._rejects_file.close()

    def add(self, m: Measurement) -> None:
        self.summary.read += 1
        self._batch.append(to_row(m, source=self._source))
        if len(self._batch) >= self.batch_size:
            self.flush()

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
        if not self._batch:
            return
        result = self.store.insert(self._batch)
        self._batch = []
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
        for line, item in read_file(path):
            if isinstance(item, Reject):
                self.reject(item)
            else:
                self.ingest_bytes(item, where=str(path), line=line)


def ingest_paths(
    store: Store,
    paths: Iterable[str | os.PathLike[str]],
    *,
    rejects_path: str | os.PathLike[str] | None = None,
    on_progress: Callable[[IngestSummary], None] | None = None,
    batch_size: int = BATCH_SIZE,
) -> IngestSummary:
    with Ingestor(store, rejects_path=rejects_path, on_progress=on_progress, batch_size=batch_size) as ing:
        for path in expand_paths(paths):
            ing.ingest_file(path)
    return ing.summary
