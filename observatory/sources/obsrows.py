"""OONI's observation rows (`obs_web`) in: CSV, CSV.gz or Parquet, recognised by their header.

OONI's pipeline (v5) turns each measurement into one row per DNS query, TCP connect, TLS handshake and HTTP
request, and researchers dump those rows to CSV. Here the rows of each `measurement_uid` are gathered back
into one measurement: the envelope (country, network, time, test, report) from its rows, and the rows
themselves kept in the document under `x_obs_web` (with the file and lines they came from), so that an export
says where the measurement came from and its verdict (`verdict/obsweb.py`) can be recomputed.

Rows of one measurement need not be adjacent (OONI's dumps interleave them, and repeat rows not yet merged
by its ClickHouse tables): the file is read once, row by row, into compact per-measurement groups (exact
repeats dropped), and the measurements come out when the file is done, in order of first appearance.
A bad row is rejected with file:line and a reason; the rest of its measurement is kept, and can then not be
`ok` (the missing row could have been the failure).
"""

from __future__ import annotations

import csv
import gzip
import tempfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from observatory.catalog import platform_of
from observatory.csvrows import BadRow as BadRow  # what ingest reads a rejected row as
from observatory.csvrows import CsvRows
from observatory.errors import ObservatoryError, ParseError
from observatory.measurement import (
    TEST_PLATFORMS,
    Measurement,
    format_asn,
    format_time,
    parse_asn,
    parse_time,
    probe_key,
)
from observatory.verdict.obsweb import OBS_KEY

SOURCE = "ooni obs_web observation rows"
REQUIRED = ("measurement_uid", "test_name", "probe_cc", "probe_asn", "measurement_start_time")
OBSERVATION_COLUMNS = ("dns_failure", "tcp_failure", "tls_failure", "http_failure")
TABLE_SUFFIXES = (".csv", ".csv.gz", ".parquet")
# values the rows of one measurement must agree on
SHARED = ("test_name", "probe_cc", "probe_asn", "measurement_start_time", "report_id")
PARQUET_BATCH = 16_384


class NotObservationRows(ObservatoryError):
    """A table (CSV or Parquet) that does not have observation rows' columns."""


# --- cells ------------------------------------------------------------------------------------------------


def _text(v: Any) -> str | None:
    if v is None:
        return None
    s = v if isinstance(v, str) else str(v)
    return s or None


def _int(v: Any) -> int | None:
    """'443', '443.0' (a CSV written from a float column), 443 -> 443."""
    if v is None or v == "":
        return None
    if isinstance(v, bool):
        raise ValueError(f"{v!r} is not a number")
    if isinstance(v, int):
        return v
    try:
        f = float(v)
    except ValueError:
        raise ValueError(f"{v!r} is not a number") from None
    if not f.is_integer():
        raise ValueError(f"{v!r} is not a whole number")
    return int(f)


def _float(v: Any) -> float | None:
    if v is None or v == "":
        return None
    try:
        return float(v)
    except ValueError:
        raise ValueError(f"{v!r} is not a number") from None


_TRUE = frozenset({"1", "1.0", "true", "True", "TRUE"})
_FALSE = frozenset({"0", "0.0", "false", "False", "FALSE"})


def _bool(v: Any) -> bool | None:
    if v is None or v == "":
        return None
    if isinstance(v, bool):
        return v
    if isinstance(v, int | float):
        return bool(v)
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise ValueError(f"{v!r} is not a boolean")


# Each observation's fields kept in the document, typed; other columns (certificate details, OONI's own
# analyses such as `failure_class`) are left in the file.
ROW_FIELDS: dict[str, Callable[[Any], Any]] = {
    "hostname": _text, "ip": _text, "port": _int, "ip_asn": _int,
    "dns_engine": _text, "dns_failure": _text, "dns_answer": _text, "dns_answer_asn": _int,
    "tcp_success": _bool, "tcp_failure": _text,
    "tls_server_name": _text, "tls_success": _bool, "tls_failure": _text, "tls_is_certificate_valid": _bool,
    "tls_handshake_time": _float,
    "http_request_url": _text, "http_failure": _text, "http_response_status_code": _int,
    "http_response_body_length": _int, "http_runtime": _float,
}
ENVELOPE_FIELDS = ("report_id", "input", "test_name", "test_version", "probe_cc", "probe_asn", "probe_as_org_name",
                   "network_type", "measurement_start_time", "resolver_ip", "resolver_asn", "resolver_as_org_name",
                   "probe_analysis")


# --- recognising the file ---------------------------------------------------------------------------------


def _head_line(path: Path) -> bytes:
    with open(path, "rb") as raw:
        magic = raw.read(2)
    try:
        opener: Any = gzip.open if magic == b"\x1f\x8b" else open
        with opener(path, "rb") as fh:
            return bytes(fh.readline(1 << 16))
    except (OSError, EOFError, zlib.error):
        return b""


def missing_columns(columns: list[str]) -> list[str]:
    have = set(columns)
    missing = [c for c in REQUIRED if c not in have]
    if not any(c in have for c in OBSERVATION_COLUMNS):
        missing.append("one of " + "/".join(OBSERVATION_COLUMNS))
    return missing


def sniff(path: Path) -> str | None:
    """'csv' or 'parquet' when the file holds observation rows; None when it is no table (JSON lines...).
    Raises NotObservationRows for a table with other columns (a CSV named .csv, any Parquet file)."""
    try:
        with open(path, "rb") as raw:
            magic = raw.read(4)
    except OSError:
        return None
    if magic == b"PAR1":
        import pyarrow.parquet as pq

        try:
            names = pq.read_schema(path).names
        except Exception as exc:  # pyarrow's errors for a damaged footer
            raise NotObservationRows(f"unreadable Parquet file: {exc}") from None
        if missing := missing_columns(names):
            raise NotObservationRows("a Parquet file without OONI observation rows' columns (obs_web): missing "
                                     + ", ".join(missing))
        return "parquet"
    head = _head_line(path).lstrip(b"\xef\xbb\xbf").strip()
    if not head or head[:1] in (b"{", b"["):
        return None
    try:
        columns = next(csv.reader([head.decode("utf-8", "replace")]), [])
    except csv.Error:  # a line no CSV reader takes (a bare CR inside it): not a header of observation rows
        columns = []
    if not (missing := missing_columns(columns)):
        return "csv"
    if path.name.lower().endswith((".csv", ".csv.gz")):
        raise NotObservationRows("a CSV whose header is not OONI observation rows (obs_web): missing "
                                 + ", ".join(missing))
    return None


# --- grouping ---------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Group:
    envelope: dict[str, Any]
    rows: list[dict[str, Any]] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)
    seen: set[tuple[Any, ...]] = field(default_factory=set)
    duplicates: int = 0


class Grouper:
    """Gathers rows into measurements by `measurement_uid`, whatever their order in the file."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.groups: dict[str, _Group] = {}
        self.rejected: dict[str, int] = {}

    def add(self, line: int, cell: Callable[[str], Any]) -> BadRow | None:
        """One row (its cells by column name); a BadRow when it cannot be used."""
        uid = _text(cell("measurement_uid"))
        if uid is None:
            return BadRow(line, "measurement_uid is empty: the row belongs to no measurement")
        try:
            row = {k: conv(cell(k)) for k, conv in ROW_FIELDS.items()}
        except (ValueError, TypeError) as exc:
            self.rejected[uid] = self.rejected.get(uid, 0) + 1
            return BadRow(line, f"measurement {uid}: {_which(cell, exc)}")
        group = self.groups.get(uid)
        if group is None:
            try:
                envelope = _envelope(cell)
            except ParseError as exc:
                self.rejected[uid] = self.rejected.get(uid, 0) + 1
                return BadRow(line, f"measurement {uid}: {exc.reason}")
            group = self.groups[uid] = _Group(envelope)
        else:
            for k in SHARED:
                mine = _text(cell(k))
                if mine != group.envelope["raw"][k]:
                    self.rejected[uid] = self.rejected.get(uid, 0) + 1
                    return BadRow(line, f"measurement {uid}: {k} {mine!r} differs from its earlier rows' "
                                        f"{group.envelope['raw'][k]!r}")
        key = tuple(row.values())
        if key in group.seen:  # the same observation twice (OONI's tables merge repeats later)
            group.duplicates += 1
            return None
        group.seen.add(key)
        group.rows.append({k: v for k, v in row.items() if v is not None})
        group.lines.append(line)
        return None

    def measurements(self) -> Iterator[Measurement]:
        for uid, group in self.groups.items():
            yield _measurement(uid, group, self.name, self.rejected.get(uid, 0))
        self.groups.clear()


def _which(cell: Callable[[str], Any], exc: Exception) -> str:
    """Names the column whose cell could not be read."""
    for k, conv in ROW_FIELDS.items():
        try:
            conv(cell(k))
        except (ValueError, TypeError) as bad:
            return f"{k}: {bad}"
    return str(exc)


def _envelope(cell: Callable[[str], Any]) -> dict[str, Any]:
    """The measurement's envelope from its first row, validated (raises ParseError)."""
    raw = {k: _text(cell(k)) for k in ENVELOPE_FIELDS}
    test_name = raw["test_name"]
    if not test_name:
        raise ParseError("test_name is empty")
    cc = (raw["probe_cc"] or "").upper()
    if len(cc) != 2 or not cc.isalpha():
        raise ParseError(f"probe_cc {raw['probe_cc']!r} is not an ISO 3166-1 alpha-2 code")
    asn = parse_asn(_asn_text(raw["probe_asn"]))
    resolver = raw["resolver_asn"]
    return {"raw": raw, "cc": cc, "asn": asn, "time": parse_time(raw["measurement_start_time"]),
            "resolver_asn": parse_asn(_asn_text(resolver), where="resolver_asn") if resolver else None}


def _asn_text(v: str | None) -> str | None:
    """The rows give ASNs as numbers, sometimes written from a float column ('15808.0')."""
    if v is not None and v.endswith(".0") and v[:-2].isdigit():
        return v[:-2]
    return v


def _measurement(uid: str, group: _Group, name: str, rejected: int) -> Measurement:
    env = group.envelope
    raw = env["raw"]
    asn, resolver_asn = env["asn"], env["resolver_asn"]
    doc: dict[str, Any] = {
        "measurement_uid": uid, "report_id": raw["report_id"], "test_name": raw["test_name"],
        "test_version": raw["test_version"], "input": raw["input"], "probe_cc": env["cc"],
        "probe_asn": format_asn(asn), "probe_network_name": raw["probe_as_org_name"],
        "measurement_start_time": format_time(env["time"]), "resolver_ip": raw["resolver_ip"],
        "resolver_asn": format_asn(resolver_asn) if resolver_asn is not None else None,
        "resolver_network_name": raw["resolver_as_org_name"],
        "annotations": {"network_type": raw["network_type"], "source": SOURCE},
        OBS_KEY: {"source": SOURCE, "file": name, "lines": group.lines, "duplicate_rows": group.duplicates,
                  "rejected_rows": rejected, "probe_analysis": raw["probe_analysis"], "rows": group.rows},
    }
    doc = {k: v for k, v in doc.items() if v is not None}
    test_name = raw["test_name"]
    return Measurement(
        uid=uid, start_time=env["time"], probe_cc=env["cc"], probe_asn=asn,
        network_name=raw["probe_as_org_name"] or "", region=None,
        probe_key=probe_key(doc, {}, asn),  # report_id: the independent witness in public data
        resolver_asn=resolver_asn, test_name=test_name, test_version=raw["test_version"] or "",
        software_name="", input=raw["input"],
        platform=TEST_PLATFORMS.get(test_name) or platform_of(raw["input"]), doc=doc,
    )


# --- reading ----------------------------------------------------------------------------------------------


def read_measurements(path: Path, kind: str, *, partitions: int | None = None) -> Iterator[Measurement | BadRow]:
    """The measurements of an observation-rows file, after the rows that could not be used.

    A file too large to group in memory is first split by measurement_uid into `partitions` temporary files
    (all the rows of a measurement land in the same one), each then grouped on its own: memory is bounded by a
    partition, not by the file. By default the number follows the file's size (`partitions_for`).
    """
    reader = _read_parquet if kind == "parquet" else _read_csv
    n = partitions if partitions is not None else partitions_for(path)
    if n <= 1:
        grouper = Grouper(path.name)
        for line, cell in reader(path):
            bad = cell if isinstance(cell, BadRow) else grouper.add(line, cell)
            if bad is not None:
                yield bad
        yield from grouper.measurements()
        return
    with tempfile.TemporaryDirectory(prefix="observatory-obs-") as tmp:
        parts = [Path(tmp) / f"{i}.csv" for i in range(n)]
        with ExitStack() as stack:
            writers = [csv.writer(stack.enter_context(open(p, "w", encoding="utf-8", newline=""))) for p in parts]
            for line, cell in reader(path):
                if isinstance(cell, BadRow):
                    yield cell
                    continue
                uid = _text(cell("measurement_uid")) or ""
                writers[zlib.crc32(uid.encode()) % n].writerow([line, *(_spilled(cell(c)) for c in SPILLED)])
        index = {c: i for i, c in enumerate(SPILLED, start=1)}
        for part in parts:
            grouper = Grouper(path.name)
            with open(part, encoding="utf-8", newline="") as fh:
                for fields in csv.reader(fh):
                    bad = grouper.add(int(fields[0]), _cells(index, fields))
                    if bad is not None:
                        yield bad
            part.unlink()
            yield from grouper.measurements()


# the columns a partition keeps: what the grouping reads
SPILLED = tuple(dict.fromkeys(("measurement_uid", *ENVELOPE_FIELDS, *ROW_FIELDS)))
# input bytes per partition, for a few hundred MB of grouped rows each: grouped rows take about the memory of the
# CSV text they came from, and gzip shrinks OONI's rows about thirtyfold
PARTITION_BYTES = {"plain": 256 << 20, "compressed": 8 << 20}


def partitions_for(path: Path) -> int:
    try:
        size = path.stat().st_size
    except OSError:
        return 1
    with open(path, "rb") as fh:
        plain = fh.read(2) != b"\x1f\x8b" and not path.name.endswith(".parquet")
    return max(1, -(-size // PARTITION_BYTES["plain" if plain else "compressed"]))


def _spilled(v: Any) -> str:
    """A cell as a partition file keeps it: text, as a CSV would have it (None -> empty)."""
    if v is None:
        return ""
    if isinstance(v, bool):
        return "1" if v else "0"
    return v if isinstance(v, str) else str(v)


Cell = Callable[[str], Any]


def _read_csv(path: Path) -> Iterator[tuple[int, Cell | BadRow]]:
    gz = _is_gzip(path)
    fh: IO[str] = (gzip.open(path, "rt", encoding="utf-8", errors="replace", newline="")  # noqa: SIM115
                   if gz else open(path, encoding="utf-8", errors="replace", newline=""))  # noqa: SIM115
    with fh:
        try:
            table = CsvRows(fh, name=path.name)
        except ParseError as exc:  # sniff read the header already: only a stream cut inside it gets here
            yield 1, BadRow(1, exc.reason)
            return
        index = {h: i for i, h in enumerate(table.header)}
        for row in table.rows():
            if isinstance(row, BadRow):
                yield row.line, row
            else:
                yield row[0], _cells(index, row[1])


def _cells(index: dict[str, int], fields: list[str]) -> Cell:
    def cell(name: str) -> Any:
        i = index.get(name)
        return fields[i] if i is not None else None
    return cell


def _read_parquet(path: Path) -> Iterator[tuple[int, Cell | BadRow]]:
    """Rows numbered from 1 in file order (a Parquet file has no lines)."""
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(path)
    wanted = [c for c in (*ROW_FIELDS, *ENVELOPE_FIELDS, "measurement_uid") if c in pf.schema_arrow.names]
    n = 0
    for batch in pf.iter_batches(batch_size=PARQUET_BATCH, columns=list(dict.fromkeys(wanted))):
        for record in batch.to_pylist():
            n += 1
            yield n, record.get


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(2) == b"\x1f\x8b"
