"""History: this incident among the country's earlier, similar ones ("the third disruption in just over a month,
after 17 December and 7 January")."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta

from observatory.incident import Incident
from observatory.report.countries import local_date
from observatory.report.facts import join_names
from observatory.vocab import IncidentKind

DEFAULT_LOOKBACK = timedelta(days=365)
ORDINALS = ("first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth")
# a run of incidents is named by kind: a platform block and a full shutdown are different stories
CONNECTIVITY_KINDS = frozenset({IncidentKind.CONNECTIVITY_LOSS})


@dataclass(frozen=True, slots=True, kw_only=True)
class History:
    incident: Incident
    previous: tuple[Incident, ...]  # oldest first

    @property
    def ordinal(self) -> int:
        return len(self.previous) + 1

    @property
    def span_days(self) -> float:
        if not self.previous:
            return 0.0
        return (self.incident.start - self.previous[0].start).total_seconds() / 86400


def similar(a: Incident, b: Incident) -> bool:
    """Same country and the same story: both shutdowns, or platform incidents sharing a platform."""
    if a.country is None or a.country != b.country:
        return False
    a_conn, b_conn = a.kind in CONNECTIVITY_KINDS, b.kind in CONNECTIVITY_KINDS
    if a_conn or b_conn:
        return a_conn and b_conn
    return bool(set(a.platforms) & set(b.platforms))


def history(inc: Incident, candidates: Iterable[Incident], *, lookback: timedelta = DEFAULT_LOOKBACK) -> History:
    """The earlier similar incidents within `lookback` before this one (dismissed reviews left out)."""
    earlier = [
        c for c in candidates
        if c.id != inc.id and c.start < inc.start and inc.start - c.start <= lookback and similar(inc, c)
        and (c.review or {}).get("state") != "dismissed"
    ]
    return History(incident=inc, previous=tuple(sorted(earlier, key=lambda c: c.start)))


def ordinal_word(n: int) -> str:
    if 1 <= n <= len(ORDINALS):
        return ORDINALS[n - 1]
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


_NUMBERS = ("no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve")


def _number(n: int) -> str:
    return _NUMBERS[n] if 0 <= n < len(_NUMBERS) else str(n)


def span_phrase(days: float) -> str:
    """How a person says a span: 'in 5 days', 'in three weeks', 'in just over a month', 'in about two months'."""
    if days < 1.5:
        return "within a day"
    if days < 13.5:
        return f"in {round(days)} days"
    if days < 27.5:
        return f"in {_number(round(days / 7))} weeks"
    # months up to a year, then years, each "about", "just over" or "just under" the nearest whole number
    unit, size, one = ("month", 30.44, "a month") if days < 350 else ("year", 365.25, "a year")
    amount = days / size
    n = max(1, round(amount))
    what = one if n == 1 else f"{_number(n)} {unit}s"
    if abs(amount - n) < 0.1:
        return f"in about {what}"
    return f"in just over {what}" if amount > n else f"in just under {what}"


def history_sentence(h: History) -> str | None:
    """'This is the third disruption in just over a month, after 17 December and 7 January.' (None if first)."""
    if not h.previous:
        return None
    cc = h.incident.country
    # the year only when the dates cross one, so "17 December" does not look like the coming December
    years = {p.start.year for p in h.previous} | {h.incident.start.year}
    show_year = len(years) > 1 and h.span_days > 300
    dates = [local_date(p.start, cc, year=show_year) for p in h.previous]
    what = "disruption" if h.incident.kind != IncidentKind.CONNECTIVITY_LOSS else "shutdown"
    head = f"This is the {ordinal_word(h.ordinal)} {what} {span_phrase(h.span_days)}"
    if len(dates) <= 3:
        return f"{head}, after {join_names(dates)}."
    return f"{head}, after {len(dates)} earlier ones since {dates[0]}, most recently on {dates[-1]}."
