"""The Atom feed of incidents (RFC 4287): one entry per incident state a reader should hear about.

An incident appears as up to three entries, each with its own id: when it was first suspected ("new"), when it
was confirmed, and when it ended; a feed reader then shows the story as it unfolded and never marks an old
entry unread again. Pure: incidents in, XML text out.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from xml.sax.saxutils import escape, quoteattr

from observatory.incident import Incident, iso
from observatory.report.countries import country_name
from observatory.report.facts import join_names, platform_names
from observatory.report.statement import statement

STAGES = ("new", "confirmed", "ended")


def headline(inc: Incident) -> str:
    """'X/Twitter, Facebook and YouTube restricted in Pakistan'."""
    where = country_name(inc.country) if inc.country else "worldwide"
    what = join_names(platform_names(inc))
    return {
        "platform_restriction": f"{what} restricted in {where}",
        "throttling": f"{what} throttled in {where}",
        "connectivity_loss": f"Internet connectivity lost in {where}",
        "platform_outage": f"Global outage of {what}",
    }.get(inc.kind, f"{inc.kind.replace('_', ' ')} in {where}")


def stages(inc: Incident) -> list[tuple[str, datetime]]:
    """The feed-worthy states the incident has reached, with their times."""
    out = [("new", inc.start)]
    if inc.confirmed_at is not None:
        out.append(("confirmed", inc.confirmed_at))
    if inc.end is not None:
        out.append(("ended", inc.end))
    return out


def _entry(inc: Incident, stage: str, when: datetime, base: str) -> list[str]:
    link = f"{base}/incident/{inc.id}"
    prefix = {"new": "Suspected", "confirmed": "Confirmed", "ended": "Ended"}[stage]
    # a "new" entry says what was known then: suspected, not yet confirmed, not yet over
    as_then = inc.with_(status="suspected", confirmed_at=None, end=None) if stage == "new" else (
        inc.with_(status="confirmed", end=None) if stage == "confirmed" else inc)
    return [
        "<entry>",
        f"<title>{escape(f'{prefix}: {headline(inc)}')}</title>",
        f"<id>{escape(link)}#{stage}</id>",
        f"<link rel=\"alternate\" type=\"text/html\" href={quoteattr(link)}/>",
        f"<published>{iso(when)}</published>",
        f"<updated>{iso(when)}</updated>",
        f"<category term={quoteattr(stage)}/>",
        f"<category term={quoteattr(inc.kind)}/>",
        *([f"<category term={quoteattr(inc.country)}/>"] if inc.country else []),
        f"<summary type=\"text\">{escape(statement(as_then))}</summary>",
        "</entry>",
    ]


def atom_feed(incidents: Iterable[Incident], base_url: str, *, title: str = "observatory: internet disruptions",
              now: datetime | None = None, limit: int = 200) -> str:
    """The feed, newest entries first. `now` is the feed's <updated> when there are no entries."""
    base = base_url.rstrip("/")
    entries = sorted(((when, stage, inc) for inc in incidents for stage, when in stages(inc)),
                     key=lambda x: (x[0], STAGES.index(x[1])), reverse=True)[:limit]
    updated = entries[0][0] if entries else (now or datetime(1970, 1, 1, tzinfo=UTC))
    out = [
        '<?xml version="1.0" encoding="utf-8"?>',
        '<feed xmlns="http://www.w3.org/2005/Atom">',
        f"<title>{escape(title)}</title>",
        f"<id>{escape(base)}/feed.atom</id>",
        f"<link rel=\"self\" type=\"application/atom+xml\" href={quoteattr(base + '/feed.atom')}/>",
        f"<link rel=\"alternate\" type=\"text/html\" href={quoteattr(base + '/')}/>",
        f"<updated>{iso(updated)}</updated>",
        "<author><name>observatory</name></author>",
    ]
    for when, stage, inc in entries:
        out += _entry(inc, stage, when, base)
    out.append("</feed>")
    return "\n".join(out) + "\n"
