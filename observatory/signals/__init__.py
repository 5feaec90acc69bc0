"""Outside-in signals: series that show a network's connectivity from outside it.

Sources: imported CSV series (IODA's BGP / active probing / telescope, Cloudflare Radar traffic, any
connectivity index), our own outside-in prober (`pinger.py`), and probe heartbeats seen by the collector.
A signal is a number where higher means more connectivity, for a country, optionally a region or a network.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from importlib import resources

from observatory.csvrows import BadRow, CsvRows
from observatory.errors import ParseError

CSV_COLUMNS = ("time", "country", "region", "asn", "signal", "value")
MAX_FIELD = 256
# Series that are not a level of connectivity (IODA's loss and latency rise when things go wrong; Mozilla's
# count is sparse, hourly, and its meaning differs between IODA's views): stored and listed, never judged as a
# drop nor drawn as a share of a usual level. A sub-series (`name.subtype`) is known by its name.
NOT_LEVELS = frozenset({"mozilla", "ping-slash24-loss", "ping-slash24-latency", "upstream-delay-penult-asns",
                        "upstream-delay-penult-e2e-latency", "outages"})


def is_level(signal: str) -> bool:
    """Whether a signal is a level of connectivity (higher = more), the kind detection and charts use."""
    return signal.split(".", 1)[0] not in NOT_LEVELS


@dataclass(frozen=True, slots=True, kw_only=True)
class SignalPoint:
    time: datetime
    country: str
    region: str | None
    asn: int | None
    signal: str
    source: str
    value: float

    @property
    def key(self) -> tuple[str, str, str, str, int]:
        """The series this point belongs to."""
        return (self.source, self.signal, self.country, self.region or "", self.asn or 0)


@dataclass(frozen=True, slots=True, kw_only=True)
class SignalSeries:
    """One stored series: what `signals list` shows and what bounds detection's look at the whole history."""

    source: str
    signal: str
    country: str
    region: str | None
    asn: int | None
    first: datetime
    last: datetime
    points: int

    def as_json(self) -> dict[str, object]:
        return {"source": self.source, "signal": self.signal, "country": self.country, "region": self.region,
                "asn": f"AS{self.asn}" if self.asn else None, "first": _iso(self.first), "last": _iso(self.last),
                "points": self.points}


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@cache
def _alpha3_to_alpha2() -> dict[str, str]:
    text = resources.files("observatory").joinpath("data/countries.csv").read_text(encoding="utf-8")
    rows = csv.DictReader(line for line in text.splitlines() if not line.startswith("#"))
    return {r["alpha3"].upper(): r["alpha2"].upper() for r in rows if r.get("alpha3")}


def country_code(value: str) -> str:
    """ISO 3166-1 alpha-2 from alpha-2 or alpha-3."""
    v = value.strip().upper()
    if len(v) == 2 and v.isalpha():
        return v
    if len(v) == 3 and v.isalpha():
        cc = _alpha3_to_alpha2().get(v)
        if cc:
            return cc
        raise ValueError(f"country {value!r}: unknown alpha-3 code")
    raise ValueError(f"country {value!r}: expected an ISO 3166-1 alpha-2 or alpha-3 code")


def parse_signal_time(value: str) -> datetime:
    v = value.strip()
    try:
        secs = float(v)
    except ValueError:
        pass
    else:
        if not math.isfinite(secs) or not 0 <= secs < 4_102_444_800:
            raise ValueError(f"time {value!r}: not a plausible UNIX time")
        return datetime.fromtimestamp(secs, UTC)
    try:
        t = datetime.fromisoformat(v.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"time {value!r}: expected ISO 8601 with a zone or UNIX seconds") from None
    if t.tzinfo is None:
        raise ValueError(f"time {value!r}: ISO 8601 times need a zone (Z or +05:00)")
    return t.astimezone(UTC)


def _asn(value: str) -> int | None:
    v = value.strip().upper().removeprefix("AS")
    if not v:
        return None
    if not v.isdigit() or int(v) >= 2**32:
        raise ValueError(f"asn {value!r}: expected a number such as 17557 or AS17557")
    return int(v)


def parse_asn(value: str) -> int | None:
    """A network number from 17557 or AS17557 (None when empty); ValueError otherwise."""
    return _asn(value)


def _value(value: str) -> float:
    try:
        x = float(value)
    except ValueError:
        raise ValueError(f"value {value!r}: not a number") from None
    if not math.isfinite(x):
        raise ValueError(f"value {value!r}: not a finite number")
    return x


def parse_row(row: dict[str, str], *, source: str) -> SignalPoint:
    for k, v in row.items():
        if v is not None and len(v) > MAX_FIELD:
            raise ValueError(f"{k}: field longer than {MAX_FIELD} characters")
    signal = (row.get("signal") or "").strip()
    if not signal:
        raise ValueError("signal: empty")
    region = (row.get("region") or "").strip() or None
    return SignalPoint(time=parse_signal_time(row.get("time") or ""), country=country_code(row.get("country") or ""),
                       region=region, asn=_asn(row.get("asn") or ""), signal=signal, source=source,
                       value=_value(row.get("value") or ""))


def read_signals_csv(text: Iterable[str], *, source: str, name: str = "<csv>") -> Iterator[SignalPoint | ParseError]:
    """Points of a signals CSV (docs/contracts.md); a bad row yields a ParseError naming file:line, the rest go on."""
    try:
        table = CsvRows(text, name=name, max_field=MAX_FIELD)
    except ParseError as exc:
        reason = exc.reason
        if reason.startswith("empty file"):
            reason = f"empty file: expected a header {','.join(CSV_COLUMNS)}"
        yield ParseError(reason, where=exc.where)
        return
    header = table.header = [h.strip().lower() for h in table.header]
    problem = _header_problem(header)
    if problem is not None:
        yield ParseError(problem, where=f"{name}:1")
        return
    for row in table.rows():
        if isinstance(row, BadRow):
            yield ParseError(row.reason, where=f"{name}:{row.line}")
            continue
        line, fields = row
        try:
            yield parse_row(dict(zip(header, fields, strict=True)), source=source)
        except ValueError as exc:
            yield ParseError(str(exc), where=f"{name}:{line}")


def _header_problem(header: list[str]) -> str | None:
    """What is wrong with the header of our signals CSV, or None."""
    missing = [c for c in CSV_COLUMNS if c not in header]
    unknown = [c for c in header if c not in CSV_COLUMNS]
    duplicated = len(set(header)) != len(header)
    if not (missing or unknown or duplicated):
        return None
    problems = []
    if missing:
        problems.append("missing column(s) " + ", ".join(missing))
    if unknown:
        problems.append("unknown column(s) " + ", ".join(unknown))
    if duplicated:
        problems.append("duplicate columns")
    return "; ".join(problems) + f" (expected {','.join(CSV_COLUMNS)})"


def read_signals_file(path: str, *, source: str) -> Iterator[SignalPoint | ParseError]:
    try:
        with open(path, encoding="utf-8", newline="") as fh:
            yield from read_signals_csv(fh, source=source, name=path)
    except UnicodeDecodeError as exc:
        yield ParseError(f"not UTF-8 text: {exc}", where=path)


def points_from_text(text: str, *, source: str) -> list[SignalPoint]:
    out = []
    for p in read_signals_csv(io.StringIO(text), source=source):
        if isinstance(p, ParseError):
            raise p
        out.append(p)
    return out
