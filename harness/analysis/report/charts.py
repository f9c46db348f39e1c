"""The report's charts, drawn with matplotlib and inlined as SVG (text stays text; no
scripts, no fonts, nothing fetched): lines over a sweep, grouped horizontal bars, and
latency against throughput. The break-even plot (`harness.analysis.breakeven.plot`) is
inlined through the same `inline_svg`.

Every data mark (a point or a bar) is an SVG group with class "mark" and a <title>
tooltip holding its exact values, so a browser test finds each chart's marks and a reader
hovers for the figures. Element ids are prefixed per chart (`inline_svg`), so charts in
one page never share an id; only internal `url(#id)` references remain.

matplotlib is imported when a chart is drawn (the `plot` and `test` extras install it);
`missing()` says why charts cannot be drawn where it is absent.
"""

from __future__ import annotations

import hashlib
import io
import math
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from html import escape
from typing import Any

from harness.format import fmt

# Okabe-Ito colours: distinguishable with the common colour-vision deficiencies.
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#8C6D1F",
           "#000000", "#7F7F7F", "#F0E442"]
FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, Helvetica, Arial, sans-serif"
WIDTH_IN = 5.8  # figure width in inches (100 px each); the page scales it to its column
LEGEND_CHARS = 72  # longer legend names are cut (the tooltips keep them whole)
MARK = "mark"  # gid prefix of data marks


def color(i: int) -> str:
    """The i-th palette colour (cycling)."""
    return PALETTE[i % len(PALETTE)]


def missing() -> str | None:
    """Why charts cannot be drawn here (matplotlib not installed), or None."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return "matplotlib is not installed (pip install 'llm-harness[plot]')"
    return None


def wants_log(values: list[float], spread: float = 30.0) -> bool:
    """True when positive values span more than `spread` times: a linear axis would
    flatten the small ones to the floor."""
    pos = [v for v in values if v and v > 0]
    return len(pos) > 1 and max(pos) / min(pos) > spread


# Beyond this no measured figure lies (1e15 tok/s, ms or J); a value past it is damage in
# a result file, and axis arithmetic on it would overflow to inf.
PLOT_LIMIT = 1e15


def _plottable(v: object) -> bool:
    return (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            and abs(v) < PLOT_LIMIT)


def _cut(text: str, chars: int = LEGEND_CHARS) -> str:
    return text if len(text) <= chars else text[: chars - 1] + "…"


@dataclass
class Series:
    """One line: (x, y, y_err) points, y_err may be None; `labels` name the points
    (e.g. 'c=4') in tooltips and beside the marks of an xy chart."""

    name: str
    points: list[tuple[float, float, float | None]]
    color: str = ""
    dashed: bool = False
    marker_note: str = ""  # appended to tooltips (e.g. "synthetic weights")
    labels: list[str] = field(default_factory=list)


@dataclass
class BarGroup:
    """One bar per category, in one colour (e.g. 'p50')."""

    name: str
    values: list[float | None]
    color: str = ""
    notes: list[str] = field(default_factory=list)  # per category, for tooltips


@dataclass
class Panel:
    """One set of axes of an xy chart: its y label and its series."""

    y_label: str
    series: list[Series]


# ------------------------------------------------------------------ SVG out


def inline_svg(svg: str, label: str = "", tips: dict[str, str] | None = None,
               prefix: str | None = None) -> str:
    """A matplotlib SVG document made fit to inline in HTML: no XML declaration, DOCTYPE,
    metadata or comments; scalable to its column; every id prefixed (and the internal
    references to it), so charts in one page never collide; groups whose id is a key of
    `tips` get class "mark" and a <title> tooltip."""
    svg = re.sub(r"<\?xml[^>]*\?>", "", svg)
    svg = re.sub(r"<!DOCTYPE[^>]*>", "", svg, flags=re.DOTALL)
    svg = re.sub(r"<metadata>.*?</metadata>", "", svg, flags=re.DOTALL)
    svg = re.sub(r"<!--.*?-->", "", svg, flags=re.DOTALL)
    p = prefix or "c" + hashlib.sha1(svg.encode()).hexdigest()[:8] + "-"
    svg = re.sub(r'\bid="([^"]+)"', lambda m: f'id="{p}{m[1]}"', svg)
    svg = re.sub(r"url\(#([^)]+)\)", lambda m: f"url(#{p}{m[1]})", svg)
    svg = re.sub(r'((?:xlink:)?href)="#([^"]+)"', lambda m: f'{m[1]}="#{p}{m[2]}"', svg)
    for gid, tip in (tips or {}).items():
        svg = svg.replace(f'<g id="{p}{gid}">',
                          f'<g id="{p}{gid}" class="mark"><title>{escape(tip)}</title>', 1)
    svg = re.sub(r"font-family: [^;\"]+", f"font-family: {FONT}".replace('"', "'"), svg)
    aria = f' role="img" aria-label="{escape(label)}"' if label else ""
    svg = re.sub(r'<svg\b([^>]*?)\swidth="[^"]*"\s+height="[^"]*"',
                 r'<svg\1 width="100%"', svg.strip(), count=1)
    return re.sub(r"<svg\b", f'<svg style="max-width:100%;height:auto"{aria}', svg, count=1)


def _log_axis(axis: Any) -> None:
    """Log ticks at 1-2-5 steps written as plain numbers (500, not 5x10^2)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(lambda v, _: fmt(v, "num")))
    axis.set_minor_formatter(NullFormatter())


@contextmanager
def _figure(height_in: float, panels: int = 1) -> Iterator[tuple[Any, list[Any]]]:
    import matplotlib
    from matplotlib.figure import Figure  # no pyplot: no GUI backend, no global state

    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "llm-harness",
                                "font.size": 9, "axes.titlesize": 10,
                                "axes.titleweight": "bold", "axes.titlelocation": "left",
                                "axes.spines.top": False, "axes.spines.right": False,
                                "axes.grid": True, "grid.color": "#e3e3e3",
                                "axes.axisbelow": True}):
        fig = Figure(figsize=(WIDTH_IN * panels, height_in), dpi=100)
        axes = fig.subplots(1, panels, squeeze=False)[0].tolist()
        yield fig, axes


def _svg(fig: Any, title: str, tips: dict[str, str]) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", pad_inches=0.08)
    return inline_svg(buf.getvalue(), title, tips)


def _legend(ax: Any, series: list[Series], below: float = -0.2) -> None:
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=s.color or color(i), linewidth=2.5,
                      linestyle="--" if s.dashed else "-", marker="o", markersize=5)
               for i, s in enumerate(series)]
    ax.legend(handles, [_cut(s.name) for s in series], loc="upper left",
              bbox_to_anchor=(0.0, below), frameon=False, fontsize=8, borderaxespad=0)


def _mark(ax: Any, x: float, y: float, c: str, gid: str) -> None:
    ax.plot([x], [y], marker="o", markersize=6, color=c, markeredgecolor="white",
            markeredgewidth=0.8, linestyle="none", gid=gid, clip_on=False, zorder=3)


# ------------------------------------------------------------------ charts


def line_chart(title: str, series: list[Series], x_label: str, y_label: str,
               log_y: bool | None = None) -> str:
    """Lines over categorical x values (evenly spaced, sorted: a sweep's levels), with
    ±error bars; y from zero, or logarithmic when `log_y` (default: when the values span
    more than 30x). A point with a missing coordinate is not drawn."""
    series = [Series(s.name, [p for p in s.points if _plottable(p[0]) and _plottable(p[1])],
                     s.color, s.dashed, s.marker_note, s.labels) for s in series]
    xs = sorted({p[0] for s in series for p in s.points})
    pos = {x: i for i, x in enumerate(xs)}
    ys = [p[1] for s in series for p in s.points]
    log_y = wants_log(ys) if log_y is None else log_y
    tips: dict[str, str] = {}
    with _figure(2.9 + 0.2 * len(series)) as (fig, (ax,)):
        for i, s in enumerate(series):
            c = s.color or color(i)
            pts = sorted(s.points, key=lambda p: (p[0], p[1]))
            if len(pts) > 1:
                ax.plot([pos[x] for x, _, _ in pts], [y for _, y, _ in pts], color=c,
                        linewidth=2, linestyle="--" if s.dashed else "-", zorder=2)
            for x, y, err in pts:
                if err and _plottable(err):
                    ax.vlines(pos[x], y - err, y + err, color=c, linewidth=1.5, zorder=2)
                gid = f"{MARK}{len(tips)}"
                _mark(ax, pos[x], y, c, gid)
                tip = f"{s.name}: {x_label} {fmt(x, 'num')} → {fmt(y, 'num')}"
                tip += f" ±{fmt(err, 'num')}" if err else ""
                tips[gid] = tip + (f" ({s.marker_note})" if s.marker_note else "")
        ax.set_xticks(range(len(xs)), [fmt(x, "num") for x in xs])
        ax.set_xlim(-0.5, max(len(xs) - 0.5, 0.5))
        if log_y:
            ax.set_yscale("log")
            _log_axis(ax.yaxis)
            y_label += " (log scale)"
        else:
            ax.set_ylim(bottom=0)
        ax.set_title(title)
        ax.set_xlabel(x_label)
        ax.set_ylabel(y_label)
        _legend(ax, series)
        return _svg(fig, title, tips)


def xy_chart(title: str, panels: list[Panel], x_label: str) -> str:
    """Side-by-side panels sharing a legend: each series a line through its points in the
    order given (e.g. rising concurrency), x and y continuous; a log y axis per panel
    where its values span more than 30x. Point labels are written beside the marks."""
    tips: dict[str, str] = {}
    xs = [p[0] for panel in panels for s in panel.series for p in s.points if _plottable(p[0])]
    log_x = wants_log(xs)
    with _figure(3.0 + 0.2 * len(panels[0].series), len(panels)) as (fig, axes):
        for ax, panel in zip(axes, panels):
            ys = []
            for i, s in enumerate(panel.series):
                c = s.color or color(i)
                pts = [(p, lab) for p, lab in zip(s.points, s.labels or [""] * len(s.points))
                       if _plottable(p[0]) and _plottable(p[1])]
                if len(pts) > 1:
                    ax.plot([p[0] for p, _ in pts], [p[1] for p, _ in pts], color=c,
                            linewidth=2, linestyle="--" if s.dashed else "-", zorder=2)
                for (x, y, _), lab in pts:
                    gid = f"{MARK}{len(tips)}"
                    _mark(ax, x, y, c, gid)
                    if lab:
                        ax.annotate(lab, (x, y), textcoords="offset points", xytext=(4, 4),
                                    fontsize=7, color=c)
                    tips[gid] = (f"{s.name} {lab}: {x_label} {fmt(x, 'num')}, "
                                 f"{panel.y_label} {fmt(y, 'num')}"
                                 + (f" ({s.marker_note})" if s.marker_note else ""))
                    ys.append(y)
            label = panel.y_label
            ax.margins(x=0.08, y=0.15)  # room for the point labels
            if wants_log(ys):
                ax.set_yscale("log")
                _log_axis(ax.yaxis)
                label += " (log)"
            else:
                ax.set_ylim(bottom=0)
            if log_x:
                ax.set_xscale("log")
                _log_axis(ax.xaxis)
            else:
                ax.set_xlim(left=0)
            ax.set_xlabel(x_label + (" (log)" if log_x else ""))
            ax.set_ylabel(label)
        axes[0].set_title(title)
        _legend(axes[0], panels[0].series, below=-0.22)
        fig.subplots_adjust(wspace=0.35)
        return _svg(fig, title, tips)


def hbar_chart(title: str, categories: list[str], groups: list[BarGroup], x_label: str) -> str:
    """Horizontal grouped bars: one block per category, one bar per group, the value
    written at each bar's end; 'n/a' where a value is missing."""
    n, k = len(categories), max(len(groups), 1)
    tips: dict[str, str] = {}
    with _figure(1.0 + 0.17 * n * k + 0.1 * n) as (fig, (ax,)):
        height = 0.8 / k
        hi = max((v for g in groups for v in g.values if _plottable(v)), default=1.0)
        for gi, g in enumerate(groups):
            c = g.color or color(gi)
            for ci, cat in enumerate(categories):
                v = g.values[ci] if ci < len(g.values) else None
                y = ci + (gi - (k - 1) / 2) * height
                if not _plottable(v):
                    ax.text(0, y, " n/a", va="center", fontsize=7, color="#888")
                    continue
                gid = f"{MARK}{len(tips)}"
                bar = ax.barh([y], [v], height=height * 0.92, color=c)
                bar.patches[0].set_gid(gid)
                ax.text(v + hi * 0.01, y, fmt(v, "num"), va="center", fontsize=7,
                        color="#333")
                note = g.notes[ci] if ci < len(g.notes) and g.notes[ci] else ""
                tips[gid] = f"{cat} · {g.name}: {fmt(v, 'num')}" + (f" ({note})" if note else "")
        ax.set_yticks(range(n), [_cut(c, 40) for c in categories])
        ax.invert_yaxis()
        ax.set_xlim(0, hi * 1.12 or 1.0)
        ax.grid(axis="y", visible=False)
        ax.set_xlabel(x_label)
        ax.set_title(title, pad=18 if len(groups) > 1 else 6)
        if len(groups) > 1:  # between the title and the bars
            from matplotlib.patches import Patch

            handles = [Patch(color=g.color or color(gi)) for gi, g in enumerate(groups)]
            ax.legend(handles, [g.name for g in groups], loc="lower left",
                      bbox_to_anchor=(0.0, 1.0), ncol=len(groups), frameon=False, fontsize=8,
                      borderaxespad=0.1)
        return _svg(fig, title, tips)


__all__ = ["BarGroup", "PALETTE", "Panel", "Series", "color", "hbar_chart",
           "inline_svg", "line_chart", "missing", "wants_log", "xy_chart"]
