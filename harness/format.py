"""The project's one number formatter, and plain-text tables (no dependencies).

`fmt(value, unit)` writes a number for reading, keyed by the unit of the quantity (the unit
suffix of its column name: `ttft_ms` -> "ms", `price_usd_per_mtok` -> "usd"). Terminal
tables, the break-even text, the HTML report's cells, chart labels, comparisons and the
energy labels all round through it, so one quantity reads the same everywhere.
`render` and `render_md` lay rows out as terminal or Markdown tables.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

MISSING = "-"  # a value that is absent, empty or NaN


def _short(x: float) -> str:
    """Three significant figures at most, no trailing zeros: 1,234 / 123 / 12.3 / 1.5 /
    0.0123."""
    a = abs(x)
    if a == 0 or not math.isfinite(x):
        return f"{x:g}"
    if a >= 1000:
        return f"{x:,.0f}"
    if a >= 100:
        return f"{x:.0f}"
    if a >= 1:
        return f"{x:.{2 if a < 10 else 1}f}".rstrip("0").rstrip(".")
    return f"{x:.3g}"


def _usd(x: float) -> str:
    """Dollars: $1,234 / $12.35 / $0.0123."""
    if abs(x) >= 100:
        return f"${x:,.0f}"
    if abs(x) >= 1:
        return f"${x:,.2f}"
    return f"${x:.3g}"


def _mtok(x: float) -> str:
    """Millions of tokens: 1,234 M / 12.3 M."""
    return f"{x:,.0f} M" if x >= 100 else f"{x:,.3g} M"


def _params(x: float) -> str:
    """A parameter count: 1.24 B / 268.1 M."""
    return f"{x / 1e9:.2f} B" if x >= 1e8 else f"{x / 1e6:.1f} M"


# unit -> how a number of it is written; any other unit (ms, s, tok_s, rps, w, gb, or
# "num" for a plain number) gets the short form.
UNITS: dict[str, Callable[[float], str]] = {
    "usd": _usd,
    "mtok": _mtok,
    "j": lambda x: f"{x:.3g}",  # joules per token: small, 3 significant digits
    "params": _params,
}


def fmt(value: Any, unit: str | None = None, digits: int = 1) -> str:
    """`value` written for reading in `unit` (see UNITS; other units: the short form);
    MISSING for None, '' and NaN. Without a unit, as a terminal table cell: text and
    integers unchanged, floats to `digits` decimals, 1,234 from a thousand on."""
    if value is None or value == "":
        return MISSING
    if isinstance(value, float) and math.isnan(value):
        return MISSING
    if unit is None:
        if isinstance(value, float):
            return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.{digits}f}"
        return str(value)
    try:
        x = float(value)
    except (TypeError, ValueError):
        return str(value)
    if math.isnan(x):
        return MISSING
    return UNITS.get(unit, _short)(x)


def render(headers: Sequence[str], rows: Sequence[Sequence[Any]], title: str = "") -> str:
    """Columns padded to their widest cell; numbers right-aligned."""
    cells = [[fmt(c) if not isinstance(c, str) else c for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h)
              for i, h in enumerate(headers)]
    def line(values: Sequence[str], numeric: Sequence[bool]) -> str:
        return "  ".join(v.rjust(w) if n else v.ljust(w)
                         for v, w, n in zip(values, widths, numeric)).rstrip()
    numeric_cols = [all(_is_num(r[i]) for r in rows) and bool(rows) for i in range(len(headers))]
    out = [title] if title else []
    out.append(line(headers, numeric_cols))
    out.append("  ".join("-" * w for w in widths))
    out.extend(line(r, numeric_cols) for r in cells)
    return "\n".join(out)


def _is_num(v: Any) -> bool:
    return v is None or isinstance(v, (int, float)) or v == "-"


def render_md(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown (GitHub) table: numbers rounded as `fmt` does and right-aligned, `|`
    in text escaped."""
    def cell(v: Any) -> str:
        text = fmt(v) if not isinstance(v, str) else v
        return text.replace("|", "\\|").replace("\n", " ")
    numeric = [all(_is_num(r[i]) for r in rows) and bool(rows) for i in range(len(headers))]
    out = ["| " + " | ".join(cell(h) for h in headers) + " |",
           "|" + "|".join("---:" if n else "---" for n in numeric) + "|"]
    out.extend("| " + " | ".join(cell(c) for c in r) + " |" for r in rows)
    return "\n".join(out)
