"""Charts a journalist can post: reachability of the affected platforms and of control sites over the
incident's day, one panel per platform and one line per network, the incident shaded, local time on the axis;
and a history strip of the country's earlier incidents.

Pure: series cells and incidents in, PNG bytes out (matplotlib's Agg backend, no display, no files). Sized for
a phone: about 1000 px wide, large type, one legend for all panels.
"""

from __future__ import annotations

import io
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta

import matplotlib

matplotlib.use("Agg")

import matplotlib.dates as mdates  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.artist import Artist  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from observatory import catalog  # noqa: E402
from observatory.incident import Incident  # noqa: E402
from observatory.report.countries import (  # noqa: E402
    country,
    country_name,
    local_date,
    local_time,
    to_local,
    zone_label,
)
from observatory.report.facts import network_names, ordered_platforms  # noqa: E402
from observatory.series import SeriesCell  # noqa: E402
from observatory.signals.view import SignalLine  # noqa: E402
from observatory.vocab import IncidentKind

DPI = 150
WIDTH_IN = 7.0
PANEL_IN = 1.9
MAX_NETWORKS = 8  # more lines than this is noise on a phone; the biggest networks are kept
KIND_COLORS = {"platform_restriction": "#c0392b", "throttling": "#e67e22", "connectivity_loss": "#2c3e50",
               "platform_outage": "#7f8c8d"}
SHADE = "#e74c3c"
CHART_BUCKET_SECONDS = 1800


def chart_window(inc: Incident) -> tuple[datetime, datetime]:
    """The incident's local day (midnight to midnight), stretched to show its end and a little after."""
    local = to_local(inc.start, inc.country)
    start = local.replace(hour=0, minute=0, second=0, microsecond=0).astimezone(UTC)
    end = start + timedelta(days=1)
    if inc.end is not None and inc.end + timedelta(hours=2) > end:
        end = min(inc.end + timedelta(hours=3), start + timedelta(days=3))
    return start, end


def _rebucket(t: datetime, seconds: int) -> datetime:
    ts = int(t.timestamp())
    return datetime.fromtimestamp(ts - ts % seconds, UTC)


def _reachability(cells: Iterable[SeriesCell], platforms: Sequence[str],
                  bucket_seconds: int = CHART_BUCKET_SECONDS) -> dict[str, dict[int, list[tuple[datetime, float]]]]:
    """platform -> asn -> sorted [(bucket middle, reachable share)], regions summed, in chart-sized buckets
    (a few measurements per 5 minutes make a line too jagged to read)."""
    sums: dict[tuple[str, int, datetime], list[int]] = defaultdict(lambda: [0, 0])
    half = timedelta(seconds=bucket_seconds / 2)
    for c in cells:
        if c.platform not in platforms:
            continue
        judged = c.ok + c.anomalous + c.down
        if judged:
            s = sums[(c.platform, c.asn, _rebucket(c.bucket, bucket_seconds) + half)]
            s[0] += c.ok
            s[1] += judged
    out: dict[str, dict[int, list[tuple[datetime, float]]]] = defaultdict(lambda: defaultdict(list))
    for (platform, asn, bucket), (ok, judged) in sorted(sums.items(), key=lambda kv: kv[0][2]):
        out[platform][asn].append((bucket, 100.0 * ok / judged))
    return out


def _top_networks(cells: Iterable[SeriesCell], inc: Incident) -> list[int]:
    weight: dict[int, int] = defaultdict(int)
    for c in cells:
        weight[c.asn] += c.total
    affected = [a for a in inc.asns if a in weight]
    rest = sorted((a for a in weight if a not in affected), key=lambda a: -weight[a])
    return (affected + rest)[:MAX_NETWORKS]


NAME_CHARS = 24  # a legend entry must fit half a phone screen


def _short(name: str) -> str:
    return name if len(name) <= NAME_CHARS else name[: NAME_CHARS - 1].rstrip() + "…"


def _network_names(cells: Iterable[SeriesCell], inc: Incident) -> dict[int, str]:
    names = {c.asn: c.network_name for c in cells if c.network_name}
    names.update(network_names(inc))
    return {a: (f"{_short(names[a])} (AS{a})" if a in names else f"AS{a}") for a in {c.asn for c in cells}}


def tz_caption(inc: Incident, t: datetime) -> str:
    c = country(inc.country)
    if c is None:
        return "UTC"
    off = to_local(t, inc.country).utcoffset() or timedelta(0)
    hours, rem = divmod(int(off.total_seconds()) // 60, 60)
    sign = "+" if off >= timedelta(0) else "-"
    return f"{zone_label(t, inc.country)}, UTC{sign}{abs(hours)}" + (f":{rem:02d}" if rem else "")


def _x(t: datetime) -> float:
    """matplotlib's date number (its typed API takes floats)."""
    return float(mdates.date2num(t))


def _shade(ax: Axes, inc: Incident, end: datetime) -> None:
    ax.axvspan(_x(inc.start), _x(inc.end or end), color=SHADE, alpha=0.13, lw=0, zorder=0)


def draw_reachability(fig: Figure, axes: Sequence[Axes], inc: Incident, cells: Sequence[SeriesCell]) -> list[Artist]:
    """Panels of `axes`: affected platforms first, control sites last. Returns legend handles."""
    start, end = chart_window(inc)
    platforms = ordered_platforms(inc.platforms)[: len(axes) - 1] + [catalog.CONTROL]
    if inc.kind == IncidentKind.CONNECTIVITY_LOSS:
        present = ordered_platforms(sorted({c.platform for c in cells}))
        platforms = present[: len(axes) - 1] + [catalog.CONTROL]
    window = [c for c in cells if start <= c.bucket < end]
    data = _reachability(window, platforms)
    nets = _top_networks(window, inc)
    names = _network_names(window, inc)
    colors = {a: plt.get_cmap("tab10")(i % 10) for i, a in enumerate(nets)}
    where = country(inc.country)
    tz = where.tz if where is not None else UTC
    for ax, platform in zip(axes, platforms, strict=False):
        _shade(ax, inc, end)
        for asn in nets:
            points = data.get(platform, {}).get(asn, [])
            if points:
                ax.plot([_x(t) for t, _ in points], [y for _, y in points], color=colors[asn], lw=1.8, alpha=0.9)
        label = catalog.display_name(platform)
        if platform == catalog.CONTROL:
            label += " (baseline)"
        ax.set_title(label, loc="left", fontsize=12, fontweight="bold", pad=3)
        ax.set_ylim(-5, 105)
        ax.set_yticks([0, 50, 100])
        ax.set_yticklabels(["0%", "50%", "100%"], fontsize=10)
        ax.grid(axis="y", alpha=0.3)
        ax.set_xlim(_x(start), _x(end))
        ax.spines[["top", "right"]].set_visible(False)
        if not data.get(platform):
            ax.text(0.5, 0.5, "no measurements", transform=ax.transAxes, ha="center", va="center",
                    color="#888", fontsize=11)
    span = f"incident {local_time(inc.start, inc.country)}" + (
        f" to {local_time(inc.end, inc.country)}" if inc.end else " (ongoing)")
    if inc.end and local_date(inc.end, inc.country) != local_date(inc.start, inc.country):
        span += f" on {to_local(inc.end, inc.country):%d %b}"  # an end after midnight is the next day
    # right-align the label on a late incident, so it never runs off the chart
    late = (inc.start - start) / (end - start) > 0.5
    axes[0].text(_x(inc.end or end) if late else _x(inc.start), 104, span + " " if late else " " + span, fontsize=10,
                 color="#a93226", va="bottom", ha="right" if late else "left", fontweight="bold", clip_on=False)
    last = axes[len(platforms) - 1]
    span_hours = (end - start).total_seconds() / 3600
    last.xaxis.set_major_locator(mdates.HourLocator(byhour=range(0, 24, 3 if span_hours <= 30 else 12), tz=tz))
    last.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M" if span_hours <= 30 else "%d %b %H:%M", tz=tz))
    last.tick_params(axis="x", labelsize=10)
    last.set_xlabel(f"Local time ({tz_caption(inc, inc.start)})", fontsize=11)
    handles: list[Artist] = [Line2D([], [], color=colors[a], lw=2.5, label=names.get(a, f"AS{a}")) for a in nets]
    handles.append(Patch(color=SHADE, alpha=0.25, label="incident"))
    return handles


def draw_history(ax: Axes, inc: Incident, previous: Sequence[Incident], *, days: int = 120) -> None:
    """A strip of the country's incidents over the last `days`: a marker per incident, this one highlighted."""
    shown = [p for p in previous if p.start >= inc.start - timedelta(days=days)] + [inc]
    # the strip spans the incidents shown (a month at least), not an empty season
    since = max(inc.start - timedelta(days=days), min(p.start for p in shown) - timedelta(days=10))
    since = min(since, inc.start - timedelta(days=30))
    for i, p in enumerate(sorted(shown, key=lambda p: p.start)):
        this = p.id == inc.id
        above = (len(shown) - 1 - i) % 2 == 1  # alternate sides, so neighbouring dates never overlap
        ax.plot([_x(p.start)], [0], marker="o", ms=14 if this else 10, color=KIND_COLORS.get(p.kind, "#555"),
                markeredgecolor="black" if this else "white", markeredgewidth=2 if this else 1, zorder=3)
        ax.annotate(local_date(p.start, inc.country, year=False) + ("\n(this one)" if this else ""),
                    (_x(p.start), 0), xytext=(0, 12 if above else -14), textcoords="offset points",
                    ha="center", va="bottom" if above else "top",
                    fontsize=10, fontweight="bold" if this else "normal")
    ax.axhline(0, color="#bbb", lw=1, zorder=1)
    # room on the right for the last label ("20 January (this one)")
    ax.set_xlim(_x(since), _x(inc.start + timedelta(days=max(4, (inc.start - since).days // 7))))
    ax.set_ylim(-1.5, 1)
    ax.set_yticks([])
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    if (inc.start - since).days > 75:
        ax.xaxis.set_major_locator(mdates.MonthLocator())
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%b %Y"))
    else:
        ax.xaxis.set_major_locator(mdates.WeekdayLocator(byweekday=mdates.MO, interval=1))
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%d %b"))
    ax.tick_params(axis="x", labelsize=10)
    n = len(shown)
    span_days = (inc.start - since).days
    ax.set_title(f"Similar incidents in {country_name(inc.country)}, last {span_days} days: {n}", loc="left",
                 fontsize=12, fontweight="bold", pad=3)


def draw_signals(ax: Axes, inc: Incident, lines: Sequence[SignalLine]) -> list[Artist]:
    """Outside-in signals under the measurements, IODA-style: each as a share of its own usual level."""
    start, end = chart_window(inc)
    _shade(ax, inc, end)
    handles: list[Artist] = []
    for i, line in enumerate(lines[:MAX_NETWORKS]):
        color = plt.get_cmap("Dark2")(i % 8)
        pts = [(t, v) for t, v in line.points if start <= t < end]
        if pts:
            ax.plot([_x(t) for t, _ in pts], [min(v, 1.5) * 100 for _, v in pts], color=color, lw=1.8, ls="--")
        handles.append(Line2D([], [], color=color, lw=2.5, ls="--", label=line.label))
    ax.axhline(100, color="#999", lw=0.8, zorder=1)
    ax.set_title("Outside-in signals (share of usual level)", loc="left", fontsize=12, fontweight="bold", pad=3)
    ax.set_ylim(-5, 155)
    ax.set_yticks([0, 50, 100, 150])
    ax.set_yticklabels(["0%", "50%", "usual", "150%"], fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    ax.set_xlim(_x(start), _x(end))
    ax.spines[["top", "right"]].set_visible(False)
    return handles


def _time_axis(ax: Axes, inc: Incident) -> None:
    """Local time on the bottom axis, as the reachability panels have it."""
    start, end = chart_window(inc)
    where = country(inc.country)
    tz = where.tz if where is not None else UTC
    hours = (end - start).total_seconds() / 3600
    ax.xaxis.set_major_locator(mdates.HourLocator(byhour=range(0, 24, 3 if hours <= 30 else 12), tz=tz))
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M" if hours <= 30 else "%d %b %H:%M", tz=tz))
    ax.tick_params(axis="x", labelsize=10)
    ax.set_xlabel(f"Local time ({tz_caption(inc, inc.start)})", fontsize=11)
    until = f" to {local_time(inc.end, inc.country)} on {to_local(inc.end, inc.country):%d %b}" if inc.end else ""
    span = f"incident {local_time(inc.start, inc.country)}" + (until or " (ongoing)")
    ax.text(_x(inc.start), 156, " " + span, fontsize=10, color="#a93226", va="bottom", ha="left",
            fontweight="bold", clip_on=False)


def incident_chart(inc: Incident, cells: Sequence[SeriesCell], *, previous: Sequence[Incident] = (),
                   history_days: int = 120, signals: Sequence[SignalLine] = ()) -> bytes:
    """The PNG for an incident: reachability panels, outside-in signals when there are any, a shared legend
    and (when there is history) the strip."""
    n_platforms = (len([p for p in inc.platforms if p != catalog.CONTROL]) or
                   (min(4, len({c.platform for c in cells} - {catalog.CONTROL}))
                    if inc.kind == IncidentKind.CONNECTIVITY_LOSS else 0))
    # an incident seen only from outside (no measurement that day) gets the signals alone, not empty panels
    measured = bool(cells) or not signals
    n_panels = (max(1, min(n_platforms, 6)) + 1 if measured else 0) + (1 if signals else 0)
    strip = 1 if previous else 0
    height = PANEL_IN * n_panels + 1.8 + (1.7 if strip else 0) + (0.25 * len(signals) if signals else 0)
    fig = plt.figure(figsize=(WIDTH_IN, height), dpi=DPI)
    try:
        ratios = [1.0] * n_panels + ([0.75] if strip else [])
        grid = fig.add_gridspec(n_panels + strip, 1, height_ratios=ratios, hspace=0.55)
        first = fig.add_subplot(grid[0])
        axes = [first] + [fig.add_subplot(grid[i], sharex=first) for i in range(1, n_panels)]
        for ax in axes[:-1]:
            ax.tick_params(labelbottom=False)
        if signals and not measured:
            handles = draw_signals(axes[0], inc, signals)
            _time_axis(axes[0], inc)
            axes[0].set_title("", loc="left")  # the figure's title says it; the incident's span goes there instead
            axes[0].set_ylabel("share of usual level", fontsize=10)
        elif signals:
            # the signals' panel goes last, under the measurements; the time axis stays on the bottom panel
            handles = draw_reachability(fig, axes[:-1], inc, cells)
            handles += draw_signals(axes[-1], inc, signals)
            axes[-1].tick_params(labelbottom=True)
            axes[-1].xaxis.set_major_locator(axes[-2].xaxis.get_major_locator())
            axes[-1].xaxis.set_major_formatter(axes[-2].xaxis.get_major_formatter())
            axes[-1].set_xlabel(axes[-2].get_xlabel(), fontsize=11)
            axes[-2].tick_params(labelbottom=False)
            axes[-2].set_xlabel("")
        else:
            handles = draw_reachability(fig, axes, inc, cells)
        if strip:
            draw_history(fig.add_subplot(grid[n_panels]), inc, previous, days=history_days)
        when = local_date(inc.start, inc.country)
        where = country_name(inc.country) if inc.country else "worldwide"
        what = "Share of measurements succeeding" if measured else "Outside-in signals"
        fig.suptitle(f"{what}, {where}, {when}", fontsize=13, fontweight="bold", x=0.02, ha="left", y=0.995)
        # the key above the panels: a reader needs it before the lines, not after the history strip
        rows = (len(handles) + 1) // 2
        legend_top = 1 - 0.42 / height
        fig.legend(handles=handles, loc="upper center", ncol=2, fontsize=10, frameon=False,
                   bbox_to_anchor=(0.5, legend_top), handlelength=1.5, columnspacing=1.2)
        fig.subplots_adjust(top=legend_top - (0.22 * rows + 0.45) / height, bottom=(0.75 if strip else 0.6) / height,
                            left=0.1, right=0.97)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=DPI)
        return buf.getvalue()
    finally:
        plt.close(fig)
