"""One reader for the CSV files we take in: signal series (ours, IODA's export) and OONI's observation rows.

Each caller decides what its columns mean; this decides what a row is. The header is the first record (a
byte-order mark before it is dropped); every later record is either a row with the header's number of
fields, numbered by the line it ends on (a quoted field may span lines), or a BadRow naming that line and
why. A row of blank fields holds nothing and is skipped. A broken row never stops the rest: a file is
rejected whole only when its header cannot be read, or a compressed stream ends mid-file (then what came
before it is kept, and one BadRow says where it stopped).
"""

from __future__ import annotations

import csv
import gzip
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from observatory.errors import ParseError

BOM = "\ufeff"
# a rejected row's text is kept for the rejects file, up to this many characters
TEXT_KEPT = 500


@dataclass(slots=True)
class BadRow:
    """A row that cannot be used: its line, the reason, and the start of its text when there is one."""

    line: int
    reason: str
    text: str = ""


class CsvRows:
    """The header of a CSV stream, read on construction (ParseError when there is none), then its rows.

    `max_field`: a row with a longer field is a BadRow naming the column (a guard for values that are
    parsed further, such as times; the csv module's own limit, 128 KiB a field, applies to every file)."""

    def __init__(self, stream: Iterable[str], *, name: str, max_field: int | None = None) -> None:
        self.name = name
        self.max_field = max_field
        self._reader = csv.reader(stream)
        try:
            first = next(self._reader)
        except StopIteration:
            raise ParseError("empty file: no header", where=f"{name}:1") from None
        except csv.Error as exc:
            raise ParseError(f"unreadable header: {exc}", where=f"{name}:1") from None
        except (EOFError, zlib.error, OSError) as exc:
            raise ParseError(f"compressed stream is corrupt or cut short in the header: {exc}",
                             where=f"{name}:1") from None
        self.header = [first[0].removeprefix(BOM), *first[1:]] if first else []

    def rows(self) -> Iterator[tuple[int, list[str]] | BadRow]:
        """(line, fields) for each row of the header's width; a BadRow for each that is not one."""
        reader, width = self._reader, len(self.header)
        line = 1
        try:
            while True:
                try:
                    fields = next(reader)
                except StopIteration:
                    return
                except csv.Error as exc:
                    line = reader.line_num
                    yield BadRow(line, f"not a CSV row: {exc}")
                    continue
                line = reader.line_num
                if not any(f.strip() for f in fields):
                    continue
                problem = self._problem(fields, width)
                if problem is not None:
                    yield BadRow(line, problem, ",".join(fields)[:TEXT_KEPT])
                    continue
                yield line, fields
        except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
            yield BadRow(line + 1, f"compressed stream is corrupt or cut short after line {line}: {exc}")
        except OSError as exc:
            yield BadRow(line + 1, f"read error after line {line}: {exc}")

    def _problem(self, fields: list[str], width: int) -> str | None:
        if len(fields) != width:
            return f"{len(fields)} fields where the header has {width}"
        if self.max_field is not None:
            for column, value in zip(self.header, fields, strict=True):
                if len(value) > self.max_field:
                    return f"{column.strip()}: field longer than {self.max_field} characters"
        return None
