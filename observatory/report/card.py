"""The share card: one 1200x675 image that states the finding, for a post or a news story.

The analyst's chart (charts.py) shows every network in its own line; a card shows what a reader needs at phone
size: the finding as its title, one line per platform for the whole country (all networks pooled, so one
network's dip does not read as an outage), the control sites beside them as the baseline, the incident shaded,
the context event marked, local time with its UTC offset, and where the numbers come from.

Pure: incident, series cells and context events in, PNG bytes out.
"""

from __future__ import annotations

import io
import textwrap
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta

import matplotlib

matplotlib.use("Agg")

import matplotlib.dates as mdates  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402

from observatory import catalog  # noqa: E402
from observatory.incident import Incident  # noqa: E402
from observatory.report.charts import SHADE, chart_window, tz_caption  # noqa: E402
from observatory.report.countries import country, country_name, local_date, local_time, to_local  # noqa: E402
from observatory.report.facts import join_names, network_label, ordered_platforms, platform_names  # noqa: E402
from observatory.series import SeriesCell  # noqa: E402
from observatory.store.base import ContextEvent  # noqa: E402
from observatory.vocab import IncidentKind, Scope

WIDTH_PX, HEIGHT_PX, DPI = 1200, 675, 150
BUCKET = timedelta(minutes=30)  # a phone-sized line: half-hours, not the detector's 5 minutes
MAX_LINES = 5
# the platforms' own colours where they have one a reader recognises; the control is always grey
COLORS = {"twitter": "#14171a", "facebook": "#1877f2", "instagram": "#c13584", "youtube": "#e62117",
          "whatsapp": "#25d366", "telegram": "#229ed9", "tiktok": "#6b2fbb", "signal": "#3a76f0"}
CONTROL_COLOR = "#9a9a9a"
VERBS = {"platform_restriction": "restricted", "throttling": "throttled"}


MAX_NAMED = 2  # more networks or regions than this are counted, so the title stays a headline


def _where(inc: Incident) -> str:
    name = country_name(inc.country)
    if inc.scope == Scope.REGIONAL and inc.regions:
        regions = list(inc.regions)
        return (f"in {join_names(regions)}, {name}" if len(regions) <= MAX_NAMED
                else f"in {len(regions)} regions of {name}")
    if inc.scope == Scope.NETWORK and inc.asns:
        if len(inc.asns) > MAX_NAMED:
            return f"on {len(inc.asns)} networks in {name}"
        return f"on {join_names([network_label(inc, a) for a in inc.asns])} in {name}"
    return f"across {name}"


def card_title(inc: Incident) -> str:
    """The finding in a headline's words: "X/Twitter, Facebook, Instagram and YouTube restricted across Pakistan"."""
    names = join_names(platform_names(inc))
    if inc.kind == IncidentKind.PLATFORM_OUTAGE or inc.country is None:
        return f"{names or 'Online platforms'} down worldwide"
    if inc.kind == IncidentKind.CONNECTIVITY_LOSS:
        return f"Internet connectivity lost {_where(inc)}"
    return f"{names or 'Online platforms'} {VERBS.get(inc.kind, 'disrupted')} {_where(inc)}"


def _platforms(inc: Incident, cells: Sequence[SeriesCell]) -> list[str]:
    if inc.kind == IncidentKind.CONNECTIVITY_LOSS or not inc.platforms:
        seen = {c.platform for c in cells}
        return ordered_platforms(sorted(seen))[:MAX_LINES - 1]
    return ordered_platforms(inc.platforms)[:MAX_LINES - 1]


def _pooled(cells: Iterable[SeriesCell], platforms: Sequence[str]) -> dict[str, list[tuple[datetime, float]]]:
    """platform -> [(half-hour middle, % of judged measurements succeeding)] over every network of the country."""
    step = int(BUCKET.total_seconds())
    sums: dict[tuple[str, int], list[int]] = defaultdict(lambda: [0, 0])
    for c in cells:
        judged = c.ok + c.anomalous + c.down
        if c.platform in platforms and judged:
            ts = int(c.bucket.timestamp())
            s = sums[(c.platform, ts - ts % step)]
            s[0] += c.ok
            s[1] += judged
    out: dict[str, list[tuple[datetime, float]]] = defaultdict(list)
    for (platform, ts), (ok, judged) in sorted(sums.items(), key=lambda kv: kv[0][1]):
        out[platform].append((datetime.fromtimestamp(ts + step / 2, UTC), 100.0 * ok / judged))
    return out


def _x(t: datetime) -> float:
    return float(mdates.date2num(t))


def _span_text(inc: Incident) -> str:
    """"18:40-21:50 PKT (13:40-16:50 UTC)", or "since 18:40 PKT (13:40 UTC), ongoing"."""
    cc = inc.country
    if inc.end is None:
        return f"since {local_time(inc.start, cc)} ({inc.start:%H:%M} UTC), ongoing"
    local_start, local_end = local_time(inc.start, cc), local_time(inc.end, cc)
    if local_date(inc.start, cc) != local_date(inc.end, cc):  # over days: the dates say more than the hours
        zone = local_end.rsplit(" ", 1)[1] if " " in local_end else ""
        return (f"{to_local(inc.start, cc):%d %b} {local_start.removesuffix(' ' + zone)} to "
                f"{to_local(inc.end, cc):%d %b} {local_end} ({tz_caption(inc, inc.start).split(', ')[-1]})")
    zone = local_end.rsplit(" ", 1)[1] if " " in local_end else ""
    return (f"{local_start.removesuffix(' ' + zone)}\u2013{local_end} "
            f"({inc.start:%H:%M}\u2013{inc.end:%H:%M} UTC)")


def _mark_events(ax: Axes, events: Sequence[ContextEvent], lo: datetime, hi: datetime, cc: str | None) -> None:
    for e in events:
        if lo <= e.time <= hi:
            ax.axvline(_x(e.time), color="#333", lw=1.4, ls=(0, (4, 3)), zorder=2)
            ax.text(_x(e.time), 101, f" {textwrap.shorten(e.title, 32, placeholder='…')} {local_time(e.time, cc)}",
                    fontsize=10.5, color="#222", va="bottom", ha="left", clip_on=False)


def source_line(cells: Iterable[SeriesCell]) -> str:
    """Where the numbers come from, counted from the cells drawn."""
    drawn = list(cells)
    measurements, networks = sum(c.total for c in drawn), len({c.asn for c in drawn})
    return (f"Source: observatory, {measurements:,} measurements from {networks} network"
            f"{'s' if networks != 1 else ''}. Shaded: the incident.")


def card_lines(inc: Incident, cells: Sequence[SeriesCell]) -> tuple[dict[str, list[tuple[datetime, float]]], str]:
    """The lines a card draws (platform -> points, the control last) over the incident's local day, and its
    source line."""
    lo, hi = chart_window(inc)
    window = [c for c in cells if lo <= c.bucket < hi and (inc.country is None or c.country == inc.country)]
    shown = [*_platforms(inc, window), catalog.CONTROL]
    pooled = _pooled(window, shown)
    lines = {p: pooled[p] for p in shown if pooled.get(p)}
    return lines, source_line(c for c in window if c.platform in shown)


def share_card(inc: Incident, cells: Sequence[SeriesCell], events: Sequence[ContextEvent] = ()) -> bytes:
    lo, hi = chart_window(inc)
    lines, source = card_lines(inc, cells)
    fig = plt.figure(figsize=(WIDTH_PX / DPI, HEIGHT_PX / DPI), dpi=DPI)
    try:
        title = textwrap.wrap(card_title(inc), 52)
        fig.text(0.035, 0.955, "\n".join(title[:2]) + (" …" if len(title) > 2 else ""), fontsize=17,
                 fontweight="bold", va="top", ha="left", linespacing=1.15)
        fig.text(0.035, 0.87 if len(title) == 1 else 0.80, f"Measurements succeeding, all networks · {_span_text(inc)}",
                 fontsize=10.5, color="#444", va="top", ha="left")
        ax = fig.add_axes((0.075, 0.19, 0.69, 0.52))
        ax.axvspan(_x(inc.start), _x(inc.end or hi), color=SHADE, alpha=0.14, lw=0, zorder=0)
        for p, points in lines.items():
            control = p == catalog.CONTROL
            ax.plot([_x(t) for t, _ in points], [y for _, y in points], lw=2.0 if control else 2.6,
                    color=CONTROL_COLOR if control else COLORS.get(p, "#555"), ls="--" if control else "-",
                    label="Control sites" if control else catalog.display_name(p), zorder=3)
        _mark_events(ax, events, lo, hi, inc.country)
        ax.set_ylim(-3, 103)
        ax.set_yticks([0, 50, 100], ["0%", "50%", "100%"], fontsize=11)
        ax.set_xlim(_x(lo), _x(hi))
        where = country(inc.country)
        tz = where.tz if where is not None else UTC
        if (hi - lo).total_seconds() <= 30 * 3600:
            ax.xaxis.set_major_locator(mdates.HourLocator(byhour=range(0, 24, 3), tz=tz))
            ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M", tz=tz))
        else:  # days: a date at each local midnight, the noons as minor ticks
            ax.xaxis.set_major_locator(mdates.DayLocator(tz=tz))
            ax.xaxis.set_major_formatter(mdates.DateFormatter("%d %b", tz=tz))
            ax.xaxis.set_minor_locator(mdates.HourLocator(byhour=[12], tz=tz))
        ax.tick_params(axis="x", labelsize=11)
        ax.set_xlabel(f"Local time ({tz_caption(inc, inc.start)})", fontsize=11)
        ax.grid(axis="y", alpha=0.3)
        ax.spines[["top", "right"]].set_visible(False)
        ax.legend(loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=11.5, frameon=False, handlelength=1.6)
        if not lines:
            ax.text(0.5, 0.5, "no measurements", transform=ax.transAxes, ha="center", va="center", color="#888")
        fig.text(0.035, 0.035, source, fontsize=10.5, color="#333", ha="left")
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=DPI)
        return buf.getvalue()
    finally:
        plt.close(fig)
