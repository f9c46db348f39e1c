"""Small inline SVG charts (line and horizontal bar) for the HTML report; no dependencies.

Every data mark (point, bar) has class "mark" and a <title> tooltip, so a browser test can
find each chart's marks and the reader can hover for exact values.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from html import escape

# Okabe-Ito colours: distinguishable with the common colour-vision deficiencies.
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#8C6D1F",
           "#000000", "#7F7F7F", "#F0E442"]
FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, Helvetica, Arial, sans-serif"
CHAR_W = 6.6  # rough width of one 12px character, for layout


def color(i: int) -> str:
    """The i-th palette colour (cycling)."""
    return PALETTE[i % len(PALETTE)]


def nice_ticks(hi: float, n: int = 5) -> list[float]:
    """Round tick values from 0 to at least `hi` (about n of them)."""
    if not hi or hi <= 0 or not math.isfinite(hi):
        return [0.0, 1.0]
    raw = hi / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    count = math.ceil(hi / step - 1e-9)
    return [round(i * step, 10) for i in range(count + 1)]


def fmt_num(v: float) -> str:
    """A number for a label: 1,234 / 12.3 / 0.0123."""
    if v == 0:
        return "0"
    a = abs(v)
    if a >= 1000:
        return f"{v:,.0f}"
    if a >= 100:
        return f"{v:.0f}"
    if a >= 10:
        return f"{v:.1f}".rstrip("0").rstrip(".")
    if a >= 1:
        return f"{v:.2f}".rstrip("0").rstrip(".")
    return f"{v:.3g}"


def _text(x: float, y: float, s: str, size: int = 12, anchor: str = "start",
          weight: str = "normal", fill: str = "#222", extra: str = "") -> str:
    return (f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" '
            f'font-weight="{weight}" fill="{fill}"{extra}>{escape(s)}</text>')


def _svg(width: float, height: float, body: list[str], label: str) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width:.0f} {height:.0f}" '
            f'width="100%" style="max-width:{width:.0f}px" role="img" '
            f'aria-label="{escape(label)}" font-family="{escape(FONT)}">'
            + "".join(body) + "</svg>")


def _truncate(s: str, chars: int) -> str:
    return s if len(s) <= chars else s[: max(1, chars - 1)] + "…"


@dataclass
class Series:
    """One line: (x, y, y_err) points; y_err may be None."""

    name: str
    points: list[tuple[float, float, float | None]]
    color: str = ""
    dashed: bool = False
    marker_note: str = ""  # appended to tooltips (e.g. "synthetic weights")


def log_ticks(lo: float, hi: float) -> list[float]:
    """Ticks for a log axis covering [lo, hi]: 1-2-5 steps, or powers of ten when wide."""
    e_lo, e_hi = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
    steps = (1, 2, 5) if e_hi - e_lo <= 3 else (1,)
    ticks = [m * 10.0 ** e for e in range(e_lo, e_hi + 1) for m in steps]
    below = [t for t in ticks if t <= lo]
    above = [t for t in ticks if t >= hi]
    start = below[-1] if below else ticks[0]
    end = above[0] if above else ticks[-1]
    return [t for t in ticks if start <= t <= end]


def wants_log(values: list[float], spread: float = 30.0) -> bool:
    """True when positive values span more than `spread` times: a linear axis would
    flatten the small ones to the floor."""
    pos = [v for v in values if v and v > 0]
    return len(pos) > 1 and max(pos) / min(pos) > spread


def _plottable(v: object) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


def line_chart(title: str, series: list[Series], x_label: str, y_label: str,
               width: int = 560, plot_h: int = 240, log_y: bool | None = None) -> str:
    """Lines over categorical x values (evenly spaced, sorted), error bars; y from zero,
    or logarithmic when `log_y` (default: when the values span more than 30x)."""
    series = [replace(s, points=[p for p in s.points if _plottable(p[0]) and _plottable(p[1])])
              for s in series]  # a point with a missing coordinate is not drawn
    xs = sorted({p[0] for s in series for p in s.points})
    left, right, top = 64, 18, 34
    legend_h = 18 * len(series) + 8
    height = top + plot_h + 46 + legend_h
    plot_w = width - left - right
    ys = [p[1] for s in series for p in s.points]
    if log_y is None:
        log_y = wants_log(ys)
    if log_y:
        pos = [y for y in ys if y > 0] or [1.0]
        ticks = log_ticks(min(pos) / 1.15, max(pos) * 1.15)
        lo_l, hi_l = math.log10(ticks[0]), math.log10(ticks[-1])
        y_label += " (log scale)"
    else:
        y_hi = max((p[1] + (p[2] or 0.0) for s in series for p in s.points), default=1.0)
        ticks = nice_ticks(y_hi * 1.05)
    y_max = ticks[-1] or 1.0

    def px(x: float) -> float:
        if len(xs) == 1:
            return left + plot_w / 2
        return left + 24 + xs.index(x) * (plot_w - 48) / (len(xs) - 1)

    def py(y: float) -> float:
        if log_y:
            y = max(y, ticks[0])
            return top + plot_h - (math.log10(y) - lo_l) / ((hi_l - lo_l) or 1.0) * plot_h
        return top + plot_h - y / y_max * plot_h

    body = [_text(left, 20, title, 14, weight="600")]
    for t in ticks:
        y = py(t)
        body.append(f'<line x1="{left}" y1="{y:.1f}" x2="{width - right}" y2="{y:.1f}" '
                    f'stroke="#e3e3e3"/>')
        body.append(_text(left - 6, y + 4, fmt_num(t), 11, "end", fill="#555"))
    body.append(f'<line x1="{left}" y1="{top + plot_h}" x2="{width - right}" '
                f'y2="{top + plot_h}" stroke="#888"/>')
    for x in xs:
        body.append(_text(px(x), top + plot_h + 16, fmt_num(x), 11, "middle", fill="#555"))
    body.append(_text(left + plot_w / 2, top + plot_h + 34, x_label, 12, "middle"))
    body.append(_text(14, top + plot_h / 2, y_label, 12, "middle",
                      extra=f' transform="rotate(-90 14 {top + plot_h / 2:.1f})"'))
    for i, s in enumerate(series):
        c = s.color or color(i)
        pts = sorted(s.points, key=lambda p: (p[0], p[1]))  # y_err may be None
        if len(pts) > 1:
            path = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y, _ in pts)
            dash = ' stroke-dasharray="6 4"' if s.dashed else ""
            body.append(f'<polyline points="{path}" fill="none" stroke="{c}" '
                        f'stroke-width="2"{dash}/>')
        for x, y, err in pts:
            if err:
                body.append(f'<line x1="{px(x):.1f}" y1="{py(y - err):.1f}" x2="{px(x):.1f}" '
                            f'y2="{py(y + err):.1f}" stroke="{c}" stroke-width="1.5"/>')
            tip = f"{s.name}: {x_label} {fmt_num(x)} → {fmt_num(y)}"
            tip += f" ±{fmt_num(err)}" if err else ""
            tip += f" ({s.marker_note})" if s.marker_note else ""
            body.append(f'<circle class="mark" cx="{px(x):.1f}" cy="{py(y):.1f}" r="4.5" '
                        f'fill="{c}" stroke="#fff" stroke-width="1"><title>{escape(tip)}'
                        f'</title></circle>')
    ly = top + plot_h + 52
    max_chars = int((width - left - 30) / CHAR_W)
    for i, s in enumerate(series):
        c = s.color or color(i)
        y = ly + 18 * i
        dash = ' stroke-dasharray="6 4"' if s.dashed else ""
        body.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + 22}" y2="{y:.1f}" '
                    f'stroke="{c}" stroke-width="3"{dash}/>')
        body.append(_text(left + 30, y + 4, _truncate(s.name, max_chars), 12))
    return _svg(width, height, body, title)


@dataclass
class BarGroup:
    """One bar per category, in one colour (e.g. 'p50')."""

    name: str
    values: list[float | None]
    color: str = ""
    notes: list[str] = field(default_factory=list)  # per category, for tooltips


def hbar_chart(title: str, categories: list[str], groups: list[BarGroup], x_label: str,
               width: int = 560) -> str:
    """Horizontal grouped bars: one row block per category, one bar per group."""
    longest = max((len(c) for c in categories), default=4)
    label_w = min(230, max(60, int(longest * CHAR_W) + 12))
    left, right = label_w, 56
    top = 34 + (20 if len(groups) > 1 else 0)
    bar_h, bar_gap, cat_gap = 13, 2, 12
    block = len(groups) * (bar_h + bar_gap) - bar_gap
    plot_h = len(categories) * (block + cat_gap) + cat_gap
    height = top + plot_h + 44
    plot_w = width - left - right
    hi = max((v for g in groups for v in g.values if v is not None), default=1.0)
    ticks = nice_ticks(hi * 1.02)
    x_max = ticks[-1] or 1.0

    def px(v: float) -> float:
        return left + v / x_max * plot_w

    body = [_text(8, 20, title, 14, weight="600")]
    if len(groups) > 1:
        x = left
        for i, g in enumerate(groups):
            c = g.color or color(i)
            body.append(f'<rect x="{x}" y="30" width="12" height="12" fill="{c}"/>')
            body.append(_text(x + 16, 40, g.name, 12))
            x += 28 + len(g.name) * CHAR_W
    for t in ticks:
        x = px(t)
        body.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{top + plot_h}" '
                    f'stroke="#e3e3e3"/>')
        body.append(_text(x, top + plot_h + 15, fmt_num(t), 11, "middle", fill="#555"))
    body.append(f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}" stroke="#888"/>')
    body.append(_text(left + plot_w / 2, top + plot_h + 34, x_label, 12, "middle"))
    max_chars = int((label_w - 12) / CHAR_W)
    for ci, cat in enumerate(categories):
        y0 = top + cat_gap + ci * (block + cat_gap)
        label = _text(left - 6, y0 + block / 2 + 4, _truncate(cat, max_chars), 12, "end")
        body.append(label if len(cat) <= max_chars
                    else f"<g><title>{escape(cat)}</title>{label}</g>")
        for gi, g in enumerate(groups):
            v = g.values[ci]
            y = y0 + gi * (bar_h + bar_gap)
            if v is None:
                body.append(_text(left + 4, y + bar_h - 2, "n/a", 10, fill="#888"))
                continue
            c = g.color or color(gi)
            w = max(1.0, px(v) - left)
            note = g.notes[ci] if ci < len(g.notes) and g.notes[ci] else ""
            tip = f"{cat} · {g.name}: {fmt_num(v)}" + (f" ({note})" if note else "")
            body.append(f'<rect class="mark" x="{left}" y="{y:.1f}" width="{w:.1f}" '
                        f'height="{bar_h}" fill="{c}"><title>{escape(tip)}</title></rect>')
            body.append(_text(left + w + 4, y + bar_h - 2, fmt_num(v), 10, fill="#333"))
    return _svg(width, height, body, title)
