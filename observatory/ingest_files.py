"""Reading files of OONI-format documents: which files a path names, and each document's bytes with its line.

Memory stays bounded whatever a file holds: a line over the size limit is skipped in chunks and reported by
its size, and a plain file can be read by byte ranges (one per pool worker) with exact line numbers. What
cannot be read (missing, empty, a corrupt or cut-short gzip stream) is a Reject at the place it happened,
after every document before it.
"""

from __future__ import annotations

import gzip
import os
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from observatory.errors import ParseError
from observatory.measurement import MAX_DOCUMENT_BYTES, parse_measurement
from observatory.sources import obsrows

READ_BUFFER = 1 << 20
# documents from the head of a large file from which the store may learn its encoding before the pool starts
ENCODER_SAMPLES = 1000
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


class LineTooLong:
    """Marker for a line over the size limit; its bytes were skipped, not held in memory."""

    def __init__(self, size: int) -> None:
        self.size = size


def expand_paths(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out.extend(sorted(f for f in p.rglob("*") if f.is_file() and (
                f.name.endswith(SUFFIXES) or (f.name.endswith(obsrows.TABLE_SUFFIXES) and holds_rows(f)))))
        else:
            out.append(p)
    return out


def bounded_lines(stream: IO[bytes], limit: int) -> Iterator[bytes | LineTooLong]:
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
            yield LineTooLong(size)
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
            for n, line in enumerate(bounded_lines(stream, limit), start=1):
                if isinstance(line, LineTooLong):
                    yield n, Reject(name, n, f"line of {line.size} bytes exceeds the {limit} byte limit")
                elif not line.isspace():  # a blank line is counted, not read
                    yield n, line
        except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
            broken = True
            yield n + 1, Reject(name, n + 1, f"compressed stream is corrupt or cut short after line {n}: {exc}")
        except OSError as exc:
            broken = True
            yield n + 1, Reject(name, n + 1, f"read error after line {n}: {exc}")
        if n == 0 and not broken:
            yield 0, Reject(name, 0, "empty file")


def range_lines(stream: IO[bytes], start: int, end: int, limit: int) -> Iterator[bytes | LineTooLong]:
    """The lines of a seekable stream that start in [start, end): the line in progress at `start` belongs to
    the range before, and the line in progress at `end` to this one."""
    pos = start
    if start > 0:
        stream.seek(start - 1)
        if stream.read(1) != b"\n":
            while True:
                more = stream.readline(1 << 20)
                pos += len(more)
                if not more or more.endswith(b"\n"):
                    break
    for line in bounded_lines(stream, limit):
        if pos >= end:
            return
        yield line
        pos += line.size if isinstance(line, LineTooLong) else len(line)


def holds_rows(path: Path) -> bool:
    """Whether a table found in a directory is OONI observation rows (other CSVs there are not ours to read)."""
    try:
        return obsrows.sniff(path) is not None
    except obsrows.NotObservationRows:
        return False


def sample_documents(path: Path, n: int = ENCODER_SAMPLES) -> list[bytes]:
    """The first `n` valid documents of a file, as they will be stored (the private fields gone)."""
    docs: list[bytes] = []
    for _, item in read_file(path):
        if len(docs) >= n:
            break
        if isinstance(item, bytes):
            try:
                docs.append(parse_measurement(item).document_json())
            except ParseError:
                continue
    return docs


def file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0
