"""Output encoding per channel: text that came from outside (network names from probes, regions, event titles)
written into Slack/Mattermost, Matrix, Markdown or CSV so that it is read as text and never acted on.

Each function encodes one untrusted value for one channel; the caller adds its own markup around the result.
Pure, no dependencies: the store's CSV export uses `CSV_FORMULA_STARTS` as the report renderers use the rest.
"""

from __future__ import annotations

from html import escape as _html_escape

ZWSP = "\u200b"  # a zero-width space: breaks a mention or a link's syntax without changing what is read

# Cells a spreadsheet would take for a formula (=1+2, +cmd, -cmd, @SUM) or that hide one after a tab or CR.
CSV_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
# Words that notify a whole room: Mattermost's @channel/@all/@here, Matrix's @room, Discord's @everyone.
_MENTIONS = ("@channel", "@here", "@all", "@everyone", "@room")


def csv_cell(text: str) -> str:
    """A cell a spreadsheet shows as text: one starting like a formula gets a leading apostrophe (OWASP)."""
    return "'" + text if text.startswith(CSV_FORMULA_STARTS) else text


def _break_mentions(text: str) -> str:
    lowered = text.lower()
    if "@" not in lowered:
        return text
    for word in _MENTIONS:
        start = lowered.find(word)
        while start >= 0:
            text = text[:start + 1] + ZWSP + text[start + 1:]
            lowered = lowered[:start + 1] + ZWSP + lowered[start + 1:]
            start = lowered.find(word, start + 2)
    return text


def slack_text(text: str) -> str:
    """Slack/Mattermost message text: `&`, `<`, `>` escaped as Slack asks (so `<!channel>`, `<@U123>` and
    `<https://x|label>` stay text), room-wide mentions broken, and Mattermost's `[label](url)` links undone."""
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _break_mentions(text).replace("](", "]" + ZWSP + "(")


def matrix_body(text: str) -> str:
    """The plain `body` of a Matrix message: @room (which notifies everyone) broken."""
    return _break_mentions(text)


def matrix_html(text: str) -> str:
    """Text for a Matrix `formatted_body` (org.matrix.custom.html): HTML-escaped, @room broken."""
    return _break_mentions(_html_escape(text, quote=True))


def markdown_text(text: str) -> str:
    """Text in a Markdown document: raw HTML escaped (renderers pass it through), link and image syntax and
    table separators escaped, so a title cannot become a link, a script or a new table cell."""
    text = _html_escape(text, quote=False)
    for c in ("\\", "[", "]", "|"):
        text = text.replace(c, "\\" + c)
    return text
