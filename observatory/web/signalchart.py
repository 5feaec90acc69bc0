"""Outside-in signals on the country and incident pages: one inline SVG (readable without JavaScript), each
signal normalised to its own usual level (IODA's way), incidents shaded, a key naming each line."""

from __future__ import annotations

from datetime import datetime, timedelta
from html import escape

from observatory.signals.view import SignalLine, normalised_lines
from observatory.store import Store

COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2")
WIDTH, HEIGHT, TOP, LEFT, BOTTOM = 720, 170, 8, 44, 22
Y_MAX = 1.5
BASELINE_DAYS = 7  # the week before the view gives each signal its usual level
MAX_LINES = len(COLORS)


def signal_lines(store: Store, country: str, since: datetime, until: datetime,
                 baseline_until: datetime | None = None) -> list[SignalLine]:
    points = store.signal_points(since=since - timedelta(days=BASELINE_DAYS), until=until, countries=[country])
    return normalised_lines(points, since=since, until=until, baseline_until=baseline_until)[:MAX_LINES]


def signals_svg(lines: list[SignalLine], *, since: datetime, until: datetime,
                shaded: list[tuple[datetime, datetime | None]]) -> str:
    """The chart, or an empty string when there is nothing to draw."""
    if not lines or until <= since:
        return ""
    span = (until - since).total_seconds()
    plot_w, plot_h = WIDTH - LEFT - 6, HEIGHT - TOP - BOTTOM

    def x(t: datetime) -> float:
        return LEFT + max(0.0, min(1.0, (t - since).total_seconds() / span)) * plot_w

    def y(v: float) -> float:
        return TOP + (1 - max(0.0, min(Y_MAX, v)) / Y_MAX) * plot_h

    parts = [f'<svg class="signals-chart" viewBox="0 0 {WIDTH} {HEIGHT}" width="100%" role="img" '
             f'aria-labelledby="sig-title"><title id="sig-title">{escape(_description(lines))}</title>']
    for a, b in shaded:
        parts.append(f'<rect class="shade" x="{x(a):.1f}" y="{TOP}" width="{max(1.0, x(b or until) - x(a)):.1f}" '
                     f'height="{plot_h}" fill="#e74c3c" fill-opacity="0.13"/>')
    for v, text in ((0.0, "0"), (0.5, "50%"), (1.0, "usual"), (1.5, "150%")):
        parts.append(f'<line x1="{LEFT}" x2="{WIDTH - 6}" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="#ccc" '
                     f'stroke-dasharray="{"" if v == 1.0 else "2,3"}"/>'
                     f'<text x="{LEFT - 4}" y="{y(v) + 4:.1f}" text-anchor="end" font-size="11">{text}</text>')
    for i, line in enumerate(lines):
        coords = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in line.points)
        parts.append(f'<polyline fill="none" stroke="{COLORS[i % len(COLORS)]}" stroke-width="1.6" '
                     f'points="{coords}"><title>{escape(line.label)}</title></polyline>')
    fmt = "%d %b %H:%M" if span > 2 * 86400 else "%H:%M"
    for frac, anchor in ((0.0, "start"), (0.5, "middle"), (1.0, "end")):
        t = since + timedelta(seconds=span * frac)
        parts.append(f'<text x="{LEFT + frac * plot_w:.1f}" y="{HEIGHT - 6}" text-anchor="{anchor}" '
                     f'font-size="11">{t:{fmt}} UTC</text>')
    parts.append("</svg>")
    # the swatch is drawn, not styled: the pages' content security policy allows no inline style
    key = "".join(f'<li><svg class="swatch" width="20" height="6" aria-hidden="true"><rect width="20" height="4" '
                  f'y="1" fill="{COLORS[i % len(COLORS)]}"/></svg>{escape(line.label)}</li>'
                  for i, line in enumerate(lines))
    return "".join(parts) + f'<ul class="signals-key">{key}</ul>'


def _description(lines: list[SignalLine]) -> str:
    lows = [f"{line.label}: lowest {min(v for _, v in line.points):.0%} of usual" for line in lines]
    return "Outside-in signals, each as a share of its usual level. " + "; ".join(lows)
