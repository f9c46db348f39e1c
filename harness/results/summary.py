"""The machine-readable summary of one `harness bench` run (`<run>_<workload>.json`,
and what `harness bench --format json` prints): run id, labels, machine, engine,
settings, one object per result row with every column, and each column's unit read
from its name's suffix (`_ms`, `_s`, `_tok_s`, `_rps`, `_w`, `_j`, `_mb`, `_gb`,
`_usd`, `_pct`, `_tokens`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from harness import __version__
from harness.results.schema import COLUMNS, SCHEMA_VERSION

SUMMARY_KIND = "harness-bench-run"  # the `kind` key that marks a run summary file

# Statistic suffixes that come after the unit: ttft_ms_p95, output_throughput_tok_s_std.
_STATS = ("mean", "std", "p50", "p90", "p95", "p99")
_SUFFIX_UNITS = (("_tok_s", "tok/s"), ("_rps", "requests/s"), ("_ms", "ms"), ("_s", "s"),
                 ("_w", "W"), ("_j", "J"), ("_mb", "MB"), ("_gb", "GB"), ("_usd", "USD"),
                 ("_pct", "%"), ("_tokens", "tokens"))
_NAMED_UNITS = {"j_per_output_token": "J/token", "j_per_token": "J/token",
                "tokens_per_kwh": "tokens/kWh"}


def unit_of(column: str) -> str | None:
    """The unit a column's name carries (`ttft_ms_p95` → ms, `decode_tok_s` → tok/s,
    `energy_j` → J); None for unitless columns (counts, names, flags)."""
    if column in _NAMED_UNITS:
        return _NAMED_UNITS[column]
    base = column
    for stat in _STATS:
        if base.endswith("_" + stat):
            base = base[: -len(stat) - 1]
            break
    for suffix, unit in _SUFFIX_UNITS:
        if base.endswith(suffix):
            return unit
    return None


def units(columns: Iterable[str]) -> dict[str, str]:
    """Column → unit, for the columns that have one."""
    return {c: u for c in columns if (u := unit_of(c)) is not None}


def _plain(value: Any) -> Any:
    """A value as JSON holds it: tuples as lists, paths as text, NaN/inf as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, Path):
        return str(value)
    return value


def run_summary(rows: list[dict[str, Any]], *, run_id: str, workload: str,
                machine: Mapping[str, Any], engine: Mapping[str, Any] | None = None,
                settings: Mapping[str, Any] | None = None,
                labels: Mapping[str, str] | None = None,
                files: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The summary of a run: its context once, then every row with every column (the
    schema's columns in order, then any others), and the units of those columns."""
    extra = sorted({k for r in rows for k in r} - set(COLUMNS))
    columns = COLUMNS + extra
    status = ("partial" if any(r.get("status") == "partial" for r in rows)
              else "complete" if rows else "empty")
    return _plain({
        "kind": SUMMARY_KIND,
        "schema_version": SCHEMA_VERSION,
        "harness_version": __version__,
        "run_id": run_id,
        "workload": workload,
        "status": status,
        "labels": dict(labels or {}),
        "machine": dict(machine),
        "engine": dict(engine or {}),
        "settings": dict(settings or {}),
        "files": dict(files or {}),
        "units": units(columns),
        "rows": [{c: row.get(c) for c in columns} for row in rows],
    })


def summary_json(summary: Mapping[str, Any]) -> str:
    """The summary as indented JSON text (strict: no NaN)."""
    return json.dumps(summary, indent=2, allow_nan=False, default=str) + "\n"


def is_run_summary(data: Any) -> bool:
    """True for a parsed run summary file."""
    return isinstance(data, dict) and data.get("kind") == SUMMARY_KIND


__all__ = ["SUMMARY_KIND", "is_run_summary", "run_summary", "summary_json", "unit_of",
           "units"]
