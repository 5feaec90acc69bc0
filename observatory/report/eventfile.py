"""Context events from files: CSV (`time,country,title[,url]`) or iCalendar (.ics VEVENTs).

Pure parsing, text in, events out. A bad row is an error naming the file, the line and what is wrong, raised
before anything is stored, so an import is all or nothing.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from observatory.errors import ParseError
from observatory.store.base import ContextEvent

CSV_COLUMNS = ("time", "country", "title")
_CC = re.compile(r"^[A-Za-z]{2}$")


def event_id(country: str, time: datetime, title: str) -> str:
    """Stable: importing the same event twice replaces it instead of duplicating it."""
    key = f"{country.upper()}|{time.astimezone(UTC).isoformat()}|{title.strip()}"
    return "ev-" + hashlib.sha256(key.encode()).hexdigest()[:16]


def parse_time(value: str, *, where: str) -> datetime:
    """ISO 8601; a time without a zone is UTC."""
    v = value.strip()
    try:
        t = datetime.fromisoformat(v.replace("Z", "+00:00"))
    except ValueError:
        raise ParseError(f"time {v!r}: expected ISO 8601 such as 2024-01-20T15:00:00Z", where=where) from None
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def make_event(*, country: str, time: datetime, title: str, url: str | None, where: str) -> ContextEvent:
    cc = country.strip()
    if not _CC.match(cc):
        raise ParseError(f"country {cc!r}: expected a two-letter ISO 3166 code such as PK", where=where)
    title = title.strip()
    if not title:
        raise ParseError("empty title", where=where)
    url = (url or "").strip() or None
    if url is not None and not re.match(r"^https?://", url):
        raise ParseError(f"url {url!r}: expected an http:// or https:// address", where=where)
    return ContextEvent(id=event_id(cc, time, title), country=cc.upper(), time=time, title=title, url=url)


def parse_csv(text: str, *, name: str = "events.csv") -> list[ContextEvent]:
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in CSV_COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise ParseError(f"missing column(s) {', '.join(missing)}; the header must be time,country,title[,url]",
                         where=f"{name}:1")
    out = []
    for row in reader:
        where = f"{name}:{reader.line_num}"
        out.append(make_event(country=row.get("country") or "", title=row.get("title") or "",
                              time=parse_time(row.get("time") or "", where=where), url=row.get("url"), where=where))
    return out


def _unfold(text: str) -> list[tuple[int, str]]:
    """RFC 5545 lines with continuation lines joined, each with its first line number."""
    out: list[tuple[int, str]] = []
    for n, line in enumerate(text.splitlines(), start=1):
        if line[:1] in (" ", "\t") and out:
            out[-1] = (out[-1][0], out[-1][1] + line[1:])
        elif line:
            out.append((n, line))
    return out


def _ics_time(params: str, value: str, *, where: str) -> datetime:
    tzid = re.search(r"TZID=([^;:]+)", params)
    try:
        if "VALUE=DATE" in params and "T" not in value:
            return datetime.strptime(value, "%Y%m%d").replace(tzinfo=UTC)
        t = datetime.strptime(value.rstrip("Z"), "%Y%m%dT%H%M%S")
    except ValueError:
        raise ParseError(f"DTSTART {value!r}: expected YYYYMMDDTHHMMSS[Z]", where=where) from None
    if value.endswith("Z") or not tzid:
        return t.replace(tzinfo=UTC)
    try:
        return t.replace(tzinfo=ZoneInfo(tzid.group(1))).astimezone(UTC)
    except (ZoneInfoNotFoundError, ValueError):
        raise ParseError(f"unknown TZID {tzid.group(1)!r}", where=where) from None


def _ics_text(value: str) -> str:
    return value.replace("\\n", " ").replace("\\N", " ").replace("\\,", ",").replace("\\;", ";").replace("\\\\", "\\")


def parse_ics(text: str, *, name: str = "events.ics", country: str | None = None) -> list[ContextEvent]:
    """VEVENTs with DTSTART and SUMMARY; the country from `country`, else an `X-COUNTRY` or a `LOCATION` that is
    a two-letter code."""
    out: list[ContextEvent] = []
    current: dict[str, str] | None = None  # the open VEVENT's properties
    start: datetime | None = None
    start_line = 0
    for n, line in _unfold(text):
        key, _, value = line.partition(":")
        name_part, _, params = key.partition(";")
        name_part = name_part.upper()
        if name_part == "BEGIN" and value.strip().upper() == "VEVENT":
            current, start, start_line = {}, None, n
        elif name_part == "END" and value.strip().upper() == "VEVENT" and current is not None:
            where = f"{name}:{start_line}"
            if start is None:
                raise ParseError("VEVENT without DTSTART", where=where)
            cc = country or current.get("X-COUNTRY") or current.get("LOCATION", "")
            out.append(make_event(country=cc, time=start, title=current.get("SUMMARY", ""),
                                  url=current.get("URL"), where=where))
            current = None
        elif current is not None:
            if name_part == "DTSTART":
                start = _ics_time(params, value.strip(), where=f"{name}:{n}")
            elif name_part in ("SUMMARY", "URL", "LOCATION", "X-COUNTRY"):
                current[name_part] = _ics_text(value.strip())
    if not out and "BEGIN:VCALENDAR" not in text.upper():
        raise ParseError("not an iCalendar file (no BEGIN:VCALENDAR)", where=f"{name}:1")
    return out
