"""/feed.atom: incidents as an Atom feed (new, confirmed, ended), with the analysts' review marked.

observatory.report owns the feed's wording when it provides `atom_feed`; this is the service's own rendering
of the same facts otherwise, so the feed never goes missing.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from xml.sax.saxutils import escape

from observatory.incident import Incident, iso
from observatory.web import review
from observatory.web.present import headline, plain_statement


def _updated(inc: Incident) -> datetime:
    times = [t for t in (inc.start, inc.confirmed_at, inc.end) if t is not None]
    return max(times)


def render(incidents: Sequence[Incident], *, base_url: str, title: str = "observatory incidents",
           now: datetime | None = None) -> str:
    base = base_url.rstrip("/")
    updated = max((_updated(i) for i in incidents), default=now or datetime.now(UTC))
    out = [
        '<?xml version="1.0" encoding="utf-8"?>',
        '<feed xmlns="http://www.w3.org/2005/Atom">',
        f"<title>{escape(title)}</title>",
        f"<id>{escape(base)}/feed.atom</id>",
        f'<link rel="self" href="{escape(base)}/feed.atom"/>',
        f'<link rel="alternate" href="{escape(base)}/"/>',
        f"<updated>{iso(updated)}</updated>",
        "<author><name>observatory</name></author>",
    ]
    for inc in incidents:
        state = review.state_of(inc)
        mark = f" [{state}]" if state else ""
        title_text = f"{inc.status.capitalize()}: {headline(inc)}{mark}"
        summary = plain_statement(inc)
        if state == "dismissed":
            summary += f" Dismissed by an analyst: {(inc.review or {}).get('reason') or 'no reason given'}."
        elif state == "reviewed":
            summary += " Reviewed by an analyst."
        link = f"{base}/incident/{inc.id}"
        out += [
            "<entry>",
            f"<title>{escape(title_text)}</title>",
            f"<id>{escape(link)}</id>",
            f'<link rel="alternate" href="{escape(link)}"/>',
            f"<published>{iso(inc.start)}</published>",
            f"<updated>{iso(_updated(inc))}</updated>",
            f'<category term="{escape(inc.status)}"/>',
            f'<category term="{escape(inc.kind)}"/>',
            *([f'<category term="{escape(state)}"/>'] if state else []),
            f"<summary>{escape(summary)}</summary>",
            "</entry>",
        ]
    out.append("</feed>")
    return "\n".join(out) + "\n"
