"""Plain-text tables for the terminal (no dependencies)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def fmt(value: Any, digits: int = 1) -> str:
    """A number rounded for reading; '-' when missing."""
    if value is None or value == "":
        return "-"
    if isinstance(value, float):
        if value != value:  # NaN
            return "-"
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        return f"{value:.{digits}f}"
    return str(value)


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
