"""Countries as reports name them: English name, alpha-3, time zone and local-time wording (data/countries.csv).

Journalists quote local times ("since 19:05 PKT"), so every time a report prints goes through `local_time`.
The table is data: a country missing from it still gets a report, in UTC and under its ISO code.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from functools import cache
from importlib import resources
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


@dataclass(frozen=True, slots=True, kw_only=True)
class Country:
    alpha2: str
    alpha3: str
    name: str
    timezone: str
    abbreviation: str

    @property
    def tz(self) -> tzinfo:
        try:
            return ZoneInfo(self.timezone)
        except ZoneInfoNotFoundError:  # a tz database without this zone: better UTC than no report
            return UTC


def _data_lines(name: str) -> list[str]:
    text = resources.files("observatory").joinpath(f"data/{name}").read_text(encoding="utf-8")
    return [line for line in text.splitlines() if line and not line.startswith("#")]


@cache
def countries() -> dict[str, Country]:
    """Every country of the table by alpha-2 code."""
    return {
        r["alpha2"]: Country(alpha2=r["alpha2"], alpha3=r["alpha3"], name=r["name"], timezone=r["timezone"],
                             abbreviation=r["abbreviation"])
        for r in csv.DictReader(_data_lines("countries.csv"))
    }


def country(cc: str | None) -> Country | None:
    return countries().get(cc.upper()) if cc else None


def country_name(cc: str | None) -> str:
    c = country(cc)
    if c is not None:
        return c.name
    return cc.upper() if cc else "worldwide"


def zone_label(t: datetime, cc: str | None) -> str:
    """The abbreviation readers know ("PKT"); the tz database's own when it has letters (it follows DST)."""
    c = country(cc)
    if c is None:
        return "UTC"
    name = t.astimezone(c.tz).tzname() or ""
    if name.isalpha() and name not in ("UTC", "GMT") or (name in ("UTC", "GMT") and c.abbreviation == name):
        return name
    return c.abbreviation or name or "UTC"


def to_local(t: datetime, cc: str | None) -> datetime:
    c = country(cc)
    return t.astimezone(c.tz if c else UTC)


def local_time(t: datetime, cc: str | None) -> str:
    """'19:05 PKT' (UTC for a worldwide incident or a country not in the table)."""
    return f"{to_local(t, cc):%H:%M} {zone_label(t, cc)}"


def local_date(t: datetime, cc: str | None, *, year: bool = True) -> str:
    """'20 January 2024' in the country's calendar (an evening incident in UTC may be the next day locally)."""
    d = to_local(t, cc)
    return f"{d.day} {d:%B}" + (f" {d.year}" if year else "")
