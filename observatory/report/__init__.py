"""Reports and alerts: the words, charts and feeds that turn an incident into something people can use.

Pure renderers (no clock, no store): `statement` (the quotable paragraph), `history`, `context`, `assess`
(claim assessment), `cost`, `charts` (PNG), `feed` (Atom), `render` (text, Markdown, JSON, HTML), `deliver`
(webhook payloads and signatures). The I/O around them (reading the store for one incident, posting webhooks)
is in `observatory.service`.

Import functions from their modules (`from observatory.report.statement import statement_parts`); the package
re-exports the ones other stages call.
"""

from __future__ import annotations

from observatory.report.assess import assess_claim
from observatory.report.cost import estimate_cost
from observatory.report.feed import atom_feed
from observatory.report.render import Report, build_report, render, render_html, render_html_fragment
from observatory.report.statement import statement

__all__ = ["Report", "assess_claim", "atom_feed", "build_report", "estimate_cost", "render", "render_html",
           "render_html_fragment", "statement"]
