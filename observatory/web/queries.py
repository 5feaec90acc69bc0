"""Query parameters -> typed filters, with a clear 400 for anything a caller got wrong.

Every value that reaches the store passes through here first: a country is two letters of ISO 3166, a platform
is in the catalog, a kind or status is in the vocabulary, times parse and are in order, pages are bounded. A
SQL-ish string therefore never reaches a query; it is simply not a country, platform or kind.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from importlib import resources

from observatory import catalog
from observatory.measurement import parse_time
from observatory.store import IncidentFilter
from observatory.vocab import IncidentKind, Status
from observatory.web.errors import BadRequest

_CC = re.compile(r"^[A-Za-z]{2}$")
_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw]?)\s*$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}

MIN_BUCKET_SECONDS = 300
MAX_BUCKETS = 2000
WINDOWS = {"24h": timedelta(hours=24), "3d": timedelta(days=3), "7d": timedelta(days=7),
           "30d": timedelta(days=30), "90d": timedelta(days=90)}


@cache
def country_names() -> dict[str, str]:
    """ISO 3166-1 alpha-2 code -> English short name (the tz database's iso3166.tab, bundled)."""
    text = resources.files("observatory.web").joinpath("static/iso3166.tab").read_text(encoding="utf-8")
    names: dict[str, str] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            code, _, name = line.partition("\t")
            names[code.strip()] = name.strip()
    return names


def country_name(cc: str | None) -> str:
    if not cc:
        return "Worldwide"
    return country_names().get(cc.upper(), cc.upper())


def _shown(value: str, limit: int = 40) -> str:
    return repr(value if len(value) <= limit else value[:limit] + "...")


def country(value: str, *, parameter: str = "country") -> str:
    """A known ISO 3166-1 alpha-2 code, upper case."""
    if not _CC.match(value.strip()):
        raise BadRequest(f"{parameter} {_shown(value)}: expected a two-letter ISO 3166 country code such as PK",
                         parameter=parameter)
    cc = value.strip().upper()
    if cc not in country_names():
        raise BadRequest(f"{parameter} {_shown(value)}: unknown country code", parameter=parameter)
    return cc


def platform(value: str, *, parameter: str = "platform") -> str:
    known = catalog.platform_ids()
    if value not in known:
        raise BadRequest(f"{parameter} {_shown(value)}: unknown platform (known: {', '.join(known)})",
                         parameter=parameter)
    return value


def kind(value: str) -> str:
    known = [k.value for k in IncidentKind]
    if value not in known:
        raise BadRequest(f"kind {_shown(value)}: unknown incident kind (known: {', '.join(known)})", parameter="kind")
    return value


def status(value: str) -> str:
    known = [s.value for s in Status]
    if value not in known:
        raise BadRequest(f"status {_shown(value)}: unknown status (known: {', '.join(known)})", parameter="status")
    return value


def asn(value: str) -> int:
    text = value.strip().upper().removeprefix("AS")
    if not text.isdigit() or len(text) > 10 or int(text) > 4_294_967_295:
        raise BadRequest(f"asn {_shown(value)}: expected a network number such as AS17557", parameter="asn")
    return int(text)


# Every time a client sends is bounded (issue #22): a window's arithmetic (90 days before `until`, a bucket
# after it) then never leaves the calendar, whatever year is asked for.
EARLIEST_QUERY_TIME = datetime(1970, 1, 1, tzinfo=UTC)
LATEST_QUERY_TIME = datetime(2200, 1, 1, tzinfo=UTC)


def time(value: str, *, parameter: str) -> datetime:
    """ISO 8601 ('2024-01-20T13:45:00Z'), OONI's 'YYYY-MM-DD HH:MM:SS' (UTC), a date, or UNIX seconds."""
    try:
        t = parse_time(value.strip(), where=parameter)
    except Exception:
        raise BadRequest(f"{parameter} {_shown(value)}: expected a time like 2024-01-20T13:45:00Z",
                         parameter=parameter) from None
    if not EARLIEST_QUERY_TIME <= t < LATEST_QUERY_TIME:
        raise BadRequest(f"{parameter} {_shown(value)}: must be between {EARLIEST_QUERY_TIME:%Y-%m-%d} and "
                         f"{LATEST_QUERY_TIME:%Y-%m-%d}", parameter=parameter)
    return t


def time_range(since: str | None, until: str | None) -> tuple[datetime | None, datetime | None]:
    lo = time(since, parameter="since") if since else None
    hi = time(until, parameter="until") if until else None
    if lo is not None and hi is not None and lo >= hi:
        raise BadRequest(f"since {since!r} is not before until {until!r}: the time range is inverted or empty",
                         parameter="since")
    return lo, hi


def duration_seconds(value: str, *, parameter: str) -> int:
    m = _DURATION.match(value)
    if not m:
        raise BadRequest(f"{parameter} {_shown(value)}: expected a duration such as 300, 5m, 1h or 1d",
                         parameter=parameter)
    return int(m.group(1)) * _UNIT_SECONDS[m.group(2)]


def page(limit: int, offset: int, max_page_size: int) -> tuple[int, int]:
    if limit < 1:
        raise BadRequest(f"limit {limit}: must be at least 1", parameter="limit")
    if limit > max_page_size:
        raise BadRequest(f"limit {limit} exceeds the maximum page size of {max_page_size}", parameter="limit")
    if offset < 0:
        raise BadRequest(f"offset {offset}: must not be negative", parameter="offset")
    return limit, offset


def incident_filter(
    *, country_: str | None, platform_: str | None, kind_: str | None, status_: str | None,
    since: str | None, until: str | None, limit: int, offset: int, max_page_size: int,
) -> IncidentFilter:
    lo, hi = time_range(since, until)
    limit, offset = page(limit, offset, max_page_size)
    return IncidentFilter(
        country=country(country_) if country_ else None,
        platform=platform(platform_) if platform_ else None,
        kind=kind(kind_) if kind_ else None,
        status=status(status_) if status_ else None,
        since=lo, until=hi, limit=limit, offset=offset,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Window:
    since: datetime
    until: datetime
    bucket_seconds: int


def default_bucket(span: timedelta) -> int:
    """About 100-200 points per line: enough to see a 3-hour evening dip, light enough for a phone, and
    buckets wide enough that a few probes per network do not draw a comb of single failures."""
    for limit, bucket in ((timedelta(days=1), 900), (timedelta(days=3), 1800), (timedelta(days=8), 3600),
                          (timedelta(days=32), 4 * 3600)):
        if span <= limit:
            return bucket
    return 86400


def window(*, since: str | None, until: str | None, window_: str | None, bucket: str | None,
           now: datetime) -> Window:
    """The time window of a chart: explicit since/until, or a named window ending at until (default: now)."""
    lo, hi = time_range(since, until)
    if window_ is not None and window_ not in WINDOWS:
        raise BadRequest(f"window {_shown(window_)}: choose one of {', '.join(WINDOWS)}", parameter="window")
    hi = hi or now
    if lo is None:
        lo = hi - WINDOWS[window_ or "24h"]
    if lo >= hi:
        raise BadRequest(f"since {lo.isoformat()} is not before until {hi.isoformat()}", parameter="since")
    b = duration_seconds(bucket, parameter="bucket") if bucket else default_bucket(hi - lo)
    if b < MIN_BUCKET_SECONDS or b % MIN_BUCKET_SECONDS:
        raise BadRequest(f"bucket {bucket!r}: must be a multiple of 5 minutes (300 s)", parameter="bucket")
    if (hi - lo).total_seconds() / b > MAX_BUCKETS:
        raise BadRequest(f"bucket {bucket!r} gives more than {MAX_BUCKETS} points over this window: "
                         "choose a larger bucket or a shorter window", parameter="bucket")
    # Align to buckets so consecutive polls draw the same points.
    lo = datetime.fromtimestamp(int(lo.timestamp()) // b * b, UTC)
    return Window(since=lo, until=hi, bucket_seconds=b)
