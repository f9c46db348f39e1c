"""Compare result rows across runs and machines: alignment, ratios, significant regressions.

Pure functions over result rows (dicts in the schema's columns); no I/O.

- A *side* is one run (machine_id + run_id) or the rows given as the baseline.
- Rows are aligned by `schema.KEY_COLUMNS` (workload, scenario, model, quant, weights,
  backend, load mode, concurrency, rate). Metadata that must match for a fair comparison
  (`MUST_MATCH`: model file, token targets, engine settings) is checked, as pyperf checks
  its metadata, and a difference becomes a warning, never a silent pass.
- A change is a *regression* only when it is worse than the threshold AND significant:
  Welch's t-test over repetitions, never over pooled requests: per-repetition values
  recomputed from the requests file beside each CSV where it exists
  (`attach_repetitions`), else the row's mean and std with n = repetitions; the p-values
  of one compared run are Holm-adjusted together (`adjust_side`), so a run with many
  metrics and scenarios has an alpha chance of any false regression, not alpha per test.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from dataclasses import fields as dataclass_fields
from typing import Any

from harness.analysis.stats import holm_adjust, welch_t_test
from harness.format import fmt
from harness.metrics import RequestRecord, scenario_summary, stdev
from harness.results.schema import COLUMNS, KEY_COLUMNS, TYPES

DEFAULT_METRICS = ["output_throughput_tok_s", "ttft_ms_mean", "tpot_ms_mean",
                   "j_per_output_token"]
DEFAULT_THRESHOLD_PCT = 5.0
ALPHA = 0.05
UNSTABLE_STD_FRACTION = 0.10  # pyperf's rule of thumb: std >= 10% of the mean

# Metadata that must be equal for two aligned rows to measure the same thing.
MUST_MATCH = ["model_sha256", "input_tokens_target", "output_tokens_target",
              "warmup_requests", "settings_json"]
# Hardware and software that describe a side; differences are reported, not warned.
MACHINE_COLUMNS = ["machine_id", "hostname", "cpu_model", "cpu_cores", "cpu_threads",
                   "ram_gb", "gpu_name", "gpu_count", "gpu_driver", "os", "backend", "engine",
                   "engine_version", "device", "harness_version", "harness_commit",
                   "power_method", "power_source", "source_tool"]
HARDWARE_COLUMNS = ["cpu_model", "gpu_name", "gpu_count"]

VERDICT_REGRESSION = "regression"
VERDICT_IMPROVEMENT = "improvement"
VERDICT_WITHIN = "within threshold"
VERDICT_NOISE = "noise"
VERDICT_UNTESTED = "no spread"
VERDICT_MISSING = "missing"


# ---------------------------------------------------------------- rows and keys


def clean(value: Any) -> Any:
    """None for NaN/empty; integral floats as int (1.0 → 1) so keys compare equal."""
    if value is None:
        return None
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if value.is_integer() and abs(value) < 1e15:
            return int(value)
        return value
    if isinstance(value, str) and value == "":
        return None
    if hasattr(value, "item"):  # numpy scalar
        return clean(value.item())
    return value


def clean_rows(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows with NaN and numpy values turned into plain Python values."""
    return [{k: clean(v) for k, v in r.items()} for r in records]


def row_key(row: dict[str, Any]) -> tuple[Any, ...]:
    """The alignment key of a row: its KEY_COLUMNS values."""
    return tuple(clean(row.get(c)) for c in KEY_COLUMNS)


def load_label(row: dict[str, Any]) -> str:
    """'c=4' for closed loop, '2/s' for open loop."""
    rate = clean(row.get("request_rate_rps"))
    if row.get("load_mode") == "open" or rate:
        return f"{rate:g}/s" if rate is not None else "open"
    return f"c={clean(row.get('concurrency'))}"


def is_synthetic(row: dict[str, Any]) -> bool:
    """True for rows measured on random-weight (synthetic) models."""
    return str(row.get("weights") or "").lower() == "synthetic"


def model_label(row: dict[str, Any]) -> str:
    """Model name and quantization, marked [synthetic] for random-weight models."""
    text = " ".join(str(v) for v in (row.get("model"), row.get("quant")) if v)
    return text + (" [synthetic]" if is_synthetic(row) else "")


def scenario_label(key: tuple[Any, ...]) -> str:
    """A short human name of an alignment key."""
    k = dict(zip(KEY_COLUMNS, key))
    return f"{k['workload']}/{k['scenario']} {load_label(k)} ({model_label(k)})"


# ---------------------------------------------------------------- sides


@dataclass
class Side:
    """One run (or the baseline rows) as a column of the comparison."""

    label: str
    rows: dict[tuple[Any, ...], dict[str, Any]]
    files: list[str]
    is_baseline: bool = False

    @property
    def first(self) -> dict[str, Any]:
        return next(iter(self.rows.values()))

    @property
    def machine(self) -> dict[str, Any]:
        """The side's machine and software columns (from its first row)."""
        return {c: self.first.get(c) for c in MACHINE_COLUMNS}

    @property
    def run_ids(self) -> list[str]:
        return sorted({str(r.get("run_id")) for r in self.rows.values() if r.get("run_id")})

    def describe(self) -> str:
        """One line: host, run, CPU, GPU, engine, files."""
        m = self.machine
        gpu = (f"{m['gpu_count']}x {m['gpu_name']}" if m.get("gpu_name") else "no GPU")
        cpu = f"{m.get('cpu_model') or '?'} ({m.get('cpu_cores') or '?'} cores)"
        engine = " ".join(str(v) for v in (m.get("engine"), m.get("engine_version")) if v)
        if m.get("source_tool"):
            engine = f"{engine or '?'} · measured by {m['source_tool']}"
        runs = ", ".join(self.run_ids) or "?"
        role = " (baseline)" if self.is_baseline else ""
        files = ", ".join(self.files)
        return (f"{self.label}{role}: {m.get('hostname') or m.get('machine_id') or '?'} · "
                f"run {runs} · {cpu} · {gpu} · {engine or '?'} · {files}")


def hardware_of(row: dict[str, Any]) -> tuple[Any, ...]:
    """What makes two machines the same kind: GPU name and count where there is a GPU
    (host CPUs vary between rented instances of one GPU type), else the CPU model."""
    if clean(row.get("gpu_name")):
        return (clean(row.get("gpu_name")), clean(row.get("gpu_count")) or 1)
    return (clean(row.get("cpu_model")),)


def hardware_slug(row: dict[str, Any]) -> str:
    """A folder name for the row's kind of machine (`hardware_of`): '1x-nvidia-h100-80gb-hbm3'
    for a GPU machine, 'amd-epyc-9654-96-core-processor' for a CPU one."""
    hw = hardware_of(row)
    text = f"{hw[1]}x {hw[0]}" if len(hw) == 2 else str(hw[0] or "unknown cpu")
    text = re.sub(r"\((?:r|tm)\)", "", text.lower())
    return re.sub(r"[^a-z0-9]+", "-", text).strip("-") or "unknown"


def _index(rows: list[dict[str, Any]], what: str, warnings: list[str]
           ) -> dict[tuple[Any, ...], dict[str, Any]]:
    """Rows by alignment key; for a key seen twice the latest row wins, with a warning."""
    by_key: dict[tuple[Any, ...], dict[str, Any]] = {}
    dupes = 0
    for row in sorted(rows, key=lambda r: str(r.get("started_at_utc") or "")):
        key = row_key(row)
        if key in by_key:
            dupes += 1
        by_key[key] = row
    if dupes:
        warnings.append(f"{what}: {dupes} scenario row(s) appear more than once; the latest "
                        "row of each is used")
    return by_key


def _run_id(row: dict[str, Any]) -> tuple[Any, ...]:
    return (row.get("machine_id"), row.get("run_id") or row.get("source_file"))


def split_runs(rows: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Rows grouped by run (machine_id, run_id), in order of first appearance."""
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(_run_id(row), []).append(row)
    return list(groups.values())


def _files(rows: list[dict[str, Any]]) -> list[str]:
    return sorted({str(r["source_file"]) for r in rows if r.get("source_file")})


def side_letters() -> Iterable[str]:
    """A, B, ..., Z, AA, AB, ...: the labels of runs in tables and charts."""
    import itertools
    import string

    for n in itertools.count(1):
        for combo in itertools.product(string.ascii_uppercase, repeat=n):
            yield "".join(combo)


def _hw_text(hw: tuple[Any, ...]) -> str:
    return " x".join(str(v) for v in hw if v not in (None, ""))


def build_sides(rows: list[dict[str, Any]], baseline_rows: list[dict[str, Any]] | None,
                warnings: list[str], same_hardware: bool = False) -> list[Side]:
    """Sides to compare: the baseline first (given, or else the first run), then each run.

    When the given baseline holds rows of several machines, or `same_hardware` is set,
    only the baseline rows whose hardware (`hardware_of`) matches the first compared run
    are used; none matching is an error. Raises ValueError with a user-facing message
    when there is nothing to compare."""
    runs = split_runs(rows)
    labels = side_letters()
    sides: list[Side] = []
    if baseline_rows is not None:
        if not baseline_rows:
            raise ValueError("the --baseline results hold no rows")
        machines = {r.get("machine_id") for r in baseline_rows}
        if (len(machines) > 1 or same_hardware) and runs:
            want = hardware_of(runs[0][0])
            match = [r for r in baseline_rows if hardware_of(r) == want]
            if not match:
                have = sorted({_hw_text(hardware_of(r)) for r in baseline_rows})
                raise ValueError(
                    f"no baseline results from the hardware of the compared run "
                    f"({_hw_text(want)}); the baseline has: {'; '.join(have)}; give a "
                    "baseline measured on the same kind of machine")
            baseline_rows = match
        if len({_run_id(r) for r in baseline_rows}) > 1:
            warnings.append("the baseline holds several runs; the latest row of each "
                            "scenario is used")
        sides.append(Side(next(labels), _index(baseline_rows, "baseline", warnings),
                          _files(baseline_rows), is_baseline=True))
    for run in runs:
        label = next(labels)
        sides.append(Side(label, _index(run, f"run {label}", warnings), _files(run)))
    if len(sides) < 2:
        raise ValueError("compare needs at least two runs: give two result files or "
                         "folders (e.g. from two machines), or one with --baseline FILE")
    sides[0].is_baseline = True
    return sides


# ---------------------------------------------------------------- metrics


def numeric_columns() -> list[str]:
    """Schema columns that hold numbers (the metrics compare accepts)."""
    context = {"schema_version", "cpu_cores", "cpu_threads", "ram_gb", "gpu_count",
               "model_size_mb", "model_params", "concurrency", "request_rate_rps",
               "input_tokens_target", "output_tokens_target", "repetitions",
               "warmup_requests", "noisy", "load_avg_1m", "load_avg_1m_end"}
    return [c for c in COLUMNS if TYPES[c] in ("int", "float") and c not in context
            and not c.endswith("_std")]


def higher_is_better(metric: str) -> bool:
    """Throughput-like metrics are better higher; times, energy, memory, cost lower."""
    return metric.endswith(("_tok_s", "_rps")) or metric == "tokens_per_kwh"


def spread_of(metric: str) -> tuple[str, str] | None:
    """(std column, what the std is over) for a metric whose row carries a spread, else
    None. Throughput std is over repetitions; `_mean` latencies' std is over requests."""
    if metric.endswith("_mean") and f"{metric[:-5]}_std" in TYPES:
        return f"{metric[:-5]}_std", "requests"
    if f"{metric}_std" in TYPES:
        return f"{metric}_std", "repetitions"
    return None


# Per-repetition values of a row, attached by `attach_repetitions` under this key.
REPETITIONS_KEY = "_repetition_values"
# Metrics computed for each repetition from its request records (as the runner does).
REPETITION_METRICS = frozenset({
    "output_throughput_tok_s", "total_throughput_tok_s", "request_throughput_rps",
    "goodput_rps", "prefill_tok_s", "decode_tok_s",
    *(f"{m}_{s}" for m in ("ttft_ms", "tpot_ms", "e2e_ms") for s in ("mean", "p50", "p90", "p99")),
    "itl_ms_p50", "itl_ms_p90", "itl_ms_p99",
})
_RECORD_FIELDS = {f.name for f in dataclass_fields(RequestRecord)}

BASIS_REPETITIONS = "repetitions"  # per-repetition values from the requests file
BASIS_ROW_REPETITIONS = "row std over repetitions"
BASIS_ROW_REQUESTS = "row std over requests, n = repetitions"


def record_from_json(obj: dict[str, Any]) -> RequestRecord | None:
    """A RequestRecord from one line of a requests JSONL file (derived and extra keys
    ignored); None when the line lacks what a record needs."""
    try:
        return RequestRecord(**{k: v for k, v in obj.items() if k in _RECORD_FIELDS})
    except TypeError:
        return None


def _load_key(row: dict[str, Any]) -> str:
    """The `load` label the runner writes on each request record of a row."""
    rate = clean(row.get("request_rate_rps"))
    if rate:
        return f"rate={float(rate):g}/s"
    return f"c={clean(row.get('concurrency'))}"


def row_records(row: dict[str, Any], records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The request records of one result row: same run, scenario and load. Batch rows
    relabel their concurrency, so for them a scenario's only load level is taken."""
    same = [r for r in records if r.get("run_id") == row.get("run_id")
            and r.get("scenario") == row.get("scenario")]
    exact = [r for r in same if r.get("load") == _load_key(row)]
    if exact or row.get("load_mode") != "batch":
        return exact
    return same if len({r.get("load") for r in same}) == 1 else []


def repetition_values(records: Iterable[dict[str, Any]], slo_ttft_ms: float | None = None,
                      slo_tpot_ms: float | None = None) -> dict[str, list[float]]:
    """Each metric of `REPETITION_METRICS`, one value per repetition, from request
    records (a repetition of failures has throughput 0 and no latency)."""
    by_rep: dict[int, list[RequestRecord]] = {}
    for obj in records:
        rec = record_from_json(obj)
        if rec is not None:
            by_rep.setdefault(int(rec.repetition), []).append(rec)
    values: dict[str, list[float]] = {}
    for rep in sorted(by_rep):
        summary = scenario_summary(by_rep[rep], slo_ttft_ms, slo_tpot_ms)
        for metric in REPETITION_METRICS:
            v = summary.get(metric)
            if isinstance(v, (int, float)) and math.isfinite(v):
                values.setdefault(metric, []).append(float(v))
    return values


def attach_repetitions(rows: list[dict[str, Any]],
                       records_by_file: dict[str, list[dict[str, Any]] | None]) -> int:
    """Attach per-repetition values to each row whose source file has request records
    (`records_by_file`: source_file -> records, None when the file has none). Returns
    how many rows got them."""
    attached = 0
    for row in rows:
        records = records_by_file.get(str(row.get("source_file")))
        if not records:
            continue
        mine = row_records(row, records)
        if mine:
            row[REPETITIONS_KEY] = repetition_values(
                mine, clean(row.get("slo_ttft_ms")), clean(row.get("slo_tpot_ms")))
            attached += 1
    return attached


def _sample(row: dict[str, Any], metric: str
            ) -> tuple[float | None, float | None, int, str, float | None]:
    """(value, std, n, basis, mean tested) of a metric in a row; std None and n 0 when
    it has no spread.

    The unit of the test is a repetition, not a request: requests of one repetition
    share its conditions (and its queue), so pooling them as independent samples calls
    run-to-run noise significant. With per-repetition values (from the requests file),
    std and n are over them; else throughput uses the row's std over repetitions, and a
    `_mean` latency its std over requests with n = repetitions (conservative: the spread
    of one request, not of a repetition's mean)."""
    value = clean(row.get(metric))
    value = float(value) if isinstance(value, (int, float)) else None
    per_rep = (row.get(REPETITIONS_KEY) or {}).get(metric)
    if per_rep and value is not None:
        return (value, stdev(per_rep), len(per_rep), BASIS_REPETITIONS,
                sum(per_rep) / len(per_rep))
    spread = spread_of(metric)
    if spread is None:
        return value, None, 0, "", None
    std = clean(row.get(spread[0]))
    n = int(clean(row.get("repetitions")) or 0)
    basis = BASIS_ROW_REPETITIONS if spread[1] == "repetitions" else BASIS_ROW_REQUESTS
    return value, (float(std) if isinstance(std, (int, float)) else None), n, basis, value


# ---------------------------------------------------------------- comparison


@dataclass
class Cell:
    """One side's figure of one metric in one aligned row, against the baseline."""

    value: float | None
    std: float | None
    n: int
    basis: str = ""                     # what std and n are over (BASIS_*)
    tested: float | None = None         # the mean tested: of the repetitions where known
    ratio: float | None = None          # value / baseline
    change_pct: float | None = None     # (value - baseline) / baseline, in %
    worse_pct: float | None = None      # change in the bad direction, in %
    p_value: float | None = None        # Welch's test of this cell alone
    p_adjusted: float | None = None     # Holm-adjusted over every test of this side
    verdict: str = ""


@dataclass
class Line:
    """One aligned scenario row and one metric, across all sides."""

    key: tuple[Any, ...]
    metric: str
    higher_is_better: bool
    synthetic: bool
    cells: list[Cell | None]

    @property
    def key_dict(self) -> dict[str, Any]:
        return dict(zip(KEY_COLUMNS, self.key))


@dataclass
class Comparison:
    """The result of comparing sides: aligned lines, warnings, regressions."""

    sides: list[Side]
    metrics: list[str]
    threshold_pct: float
    lines: list[Line] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def regressions(self) -> list[tuple[Line, Side, Cell]]:
        found = []
        for line in self.lines:
            for side, cell in zip(self.sides, line.cells):
                if cell is not None and cell.verdict == VERDICT_REGRESSION:
                    found.append((line, side, cell))
        return found

    @property
    def any_synthetic(self) -> bool:
        return any(line.synthetic for line in self.lines)


def _tested(cell: Cell) -> float:
    return cell.tested if cell.tested is not None else cell.value  # type: ignore[return-value]


def judge(base: Cell, other: Cell, higher_better: bool, threshold_pct: float,
          alpha: float = ALPHA) -> Cell:
    """Fill ratio, change and verdict of `other` against `base`.

    regression: worse than threshold_pct (between the shown values) and significant
    (Welch p < alpha, over repetitions: see `_sample`);
    improvement: better than threshold_pct and significant; within threshold: significant
    but small; noise: not significant; no spread: one side lacks std or n >= 2."""
    if base.value is None or other.value is None:
        other.verdict = VERDICT_MISSING
        return other
    if base.value != 0:
        other.ratio = other.value / base.value
        other.change_pct = (other.value - base.value) / abs(base.value) * 100.0
        other.worse_pct = -other.change_pct if higher_better else other.change_pct
    test = None
    if base.std is not None and other.std is not None:
        test = welch_t_test(_tested(base), base.std, base.n, _tested(other), other.std,
                            other.n)
    if test is None:
        other.verdict = VERDICT_UNTESTED
        return other
    other.p_value = other.p_adjusted = test.p_value
    _verdict(other, threshold_pct, alpha)
    return other


def _verdict(cell: Cell, threshold_pct: float, alpha: float) -> None:
    """The verdict of a tested cell from its (adjusted) p-value and its change."""
    p = cell.p_adjusted if cell.p_adjusted is not None else cell.p_value
    if p is None:
        return
    if p >= alpha:
        cell.verdict = VERDICT_NOISE
    elif cell.worse_pct is not None and cell.worse_pct > threshold_pct:
        cell.verdict = VERDICT_REGRESSION
    elif cell.worse_pct is not None and -cell.worse_pct > threshold_pct:
        cell.verdict = VERDICT_IMPROVEMENT
    else:
        cell.verdict = VERDICT_WITHIN


def adjust_side(cells: list[Cell], threshold_pct: float, alpha: float = ALPHA) -> None:
    """Holm-adjust the p-values of every tested cell of one compared run and redo their
    verdicts: the gate asks whether anything regressed across all its metrics and
    scenarios, so the chance of a false REGRESSION anywhere in the run is alpha, not
    alpha per test."""
    tested = [c for c in cells if c.p_value is not None]
    for cell, p in zip(tested, holm_adjust([c.p_value for c in tested])):  # type: ignore[misc]
        cell.p_adjusted = p
        _verdict(cell, threshold_pct, alpha)


def _settings_diff(a: Any, b: Any) -> str:
    """'n_threads 2 vs 16, ...' for two settings_json strings."""
    try:
        da, db = json.loads(a or "{}"), json.loads(b or "{}")
    except (TypeError, ValueError):
        return f"{a} vs {b}"
    keys = sorted(k for k in set(da) | set(db) if da.get(k) != db.get(k))
    return ", ".join(f"{k} {da.get(k, '-')} vs {db.get(k, '-')}" for k in keys)


def metadata_warnings(sides: list[Side], common: list[tuple[Any, ...]]) -> list[str]:
    """Warnings for aligned rows whose must-match metadata differs from the baseline's."""
    base = sides[0]
    out: list[str] = []
    for side in sides[1:]:
        found: dict[str, set[str]] = {}
        counts: dict[str, int] = {}
        for key in common:
            if key not in side.rows or key not in base.rows:
                continue
            a, b = base.rows[key], side.rows[key]
            for col in MUST_MATCH:
                va, vb = clean(a.get(col)), clean(b.get(col))
                if va is None or vb is None or va == vb:
                    continue
                detail = _settings_diff(va, vb) if col == "settings_json" else f"{va} vs {vb}"
                if col == "model_sha256":
                    detail = f"{str(va)[:12]} vs {str(vb)[:12]}"
                found.setdefault(col, set()).add(detail)
                counts[col] = counts.get(col, 0) + 1
        for col, details in found.items():
            shown = "; ".join(sorted(details)[:3])
            out.append(f"{side.label} vs {base.label}: {col} differs in {counts[col]} aligned "
                       f"row(s) ({shown}); the figures may not measure the same thing")
    return out


def quality_warnings(sides: list[Side], metrics: list[str]) -> list[str]:
    """Unstable figures (std >= 10% of mean), busy machines, partial and failed rows."""
    out: list[str] = []
    for side in sides:
        unstable: list[str] = []
        for key, row in side.rows.items():
            for metric in metrics:
                value, std = _sample(row, metric)[:2]
                if value and std is not None and std >= UNSTABLE_STD_FRACTION * abs(value):
                    unstable.append(f"{scenario_label(key)} {metric} "
                                    f"(std {std / abs(value) * 100:.0f}% of mean)")
        if unstable:
            out.append(f"{side.label}: unstable figures, std >= 10% of the mean: "
                       + "; ".join(unstable[:3]) + (" ..." if len(unstable) > 3 else ""))
        noisy = [scenario_label(k) for k, r in side.rows.items() if clean(r.get("noisy"))]
        if noisy:
            out.append(f"{side.label}: machine was busy (load average) during "
                       + "; ".join(noisy[:3]))
        partial = [scenario_label(k) for k, r in side.rows.items()
                   if r.get("status") == "partial"]
        if partial:
            out.append(f"{side.label}: partial (interrupted) rows: " + "; ".join(partial[:3]))
        failed = [scenario_label(k) for k, r in side.rows.items() if clean(r.get("errors"))]
        if failed:
            out.append(f"{side.label}: rows with failed requests: " + "; ".join(failed[:3]))
    return out


def hardware_notes(sides: list[Side]) -> list[str]:
    """Notes where a side runs on other hardware or engine than the baseline."""
    base = sides[0].machine
    out = []
    for side in sides[1:]:
        m = side.machine
        diffs = [f"{c} {base.get(c) or '-'} vs {m.get(c) or '-'}"
                 for c in HARDWARE_COLUMNS + ["engine_version"]
                 if clean(base.get(c)) != clean(m.get(c))]
        if diffs:
            out.append(f"{side.label} vs {sides[0].label}: different machine or engine "
                       f"({'; '.join(diffs)}): ratios compare the machines")
    return out


def compare(sides: list[Side], metrics: list[str], threshold_pct: float = DEFAULT_THRESHOLD_PCT,
            alpha: float = ALPHA, skip_empty: bool = False) -> Comparison:
    """Align the sides' rows by key and judge each metric against the first (baseline) side.

    Raises ValueError when the baseline shares no scenario with any other side.
    `skip_empty` drops metrics that no side has a value for (e.g. energy when no meter)."""
    base = sides[0]
    keys: list[tuple[Any, ...]] = list(base.rows)
    for side in sides[1:]:
        keys.extend(k for k in side.rows if k not in keys)
    common = [k for k in keys if k in base.rows and any(k in s.rows for s in sides[1:])]
    if not common:
        raise ValueError(
            "no common scenarios: the baseline (" + _summarize_keys(base.rows) + ") and the "
            "other results (" + _summarize_keys({k: 1 for s in sides[1:] for k in s.rows})
            + ") share no workload/scenario/model/load; compare runs of the same workload "
            "and model")
    lonely = [s for s in sides[1:] if not any(k in s.rows for k in common)]
    sides = [s for s in sides if s not in lonely]
    result = Comparison(sides=sides, metrics=list(metrics), threshold_pct=threshold_pct)
    for side in lonely:
        result.notes.append(f"{side.label} shares no scenario with the baseline "
                            f"{base.label}; left out ({side.describe()})")
    for metric in metrics:
        if skip_empty and not any(_sample(s.rows[k], metric)[0] is not None
                                  for s in sides for k in common if k in s.rows):
            result.notes.append(f"{metric}: no values in these results; not shown")
            continue
        if not any(_sample(s.rows[k], metric)[2] for s in sides for k in common
                   if k in s.rows):
            result.notes.append(f"{metric}: rows carry no spread for it (and no requests "
                                "file gives one per repetition), so changes are shown but "
                                "never called regressions")
    shown = [m for m in metrics if not any(n.startswith(f"{m}: no values") for n in result.notes)]
    result.metrics = shown
    for key in common:
        for metric in shown:
            hib = higher_is_better(metric)
            cells: list[Cell | None] = []
            base_cell = None
            for i, side in enumerate(sides):
                row = side.rows.get(key)
                if row is None:
                    cells.append(None)
                    continue
                cell = Cell(*_sample(row, metric))
                if i == 0:
                    base_cell = cell
                elif base_cell is not None:
                    judge(base_cell, cell, hib, threshold_pct, alpha)
                cells.append(cell)
            synthetic = any(is_synthetic(s.rows[key]) for s in sides if key in s.rows)
            result.lines.append(Line(key, metric, hib, synthetic, cells))
    for i in range(1, len(sides)):
        adjust_side([c for line in result.lines if (c := line.cells[i]) is not None],
                    threshold_pct, alpha)
    unmatched = [k for k in keys if k not in common
                 and not any(k in s.rows for s in lonely if k not in base.rows)]
    if unmatched:
        result.notes.append(f"{len(unmatched)} scenario row(s) have no counterpart in the "
                            "baseline or the other runs: " + "; ".join(
                                scenario_label(k) for k in unmatched[:4])
                            + (" ..." if len(unmatched) > 4 else ""))
    result.warnings.extend(metadata_warnings(sides, common))
    result.warnings.extend(quality_warnings(sides, shown))
    result.notes.extend(hardware_notes(sides))
    return result


def _summarize_keys(rows: dict[tuple[Any, ...], Any]) -> str:
    names = sorted({scenario_label(k) for k in rows})
    return "; ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")


# ---------------------------------------------------------------- output


def _figure(cell: Cell | None) -> str:
    if cell is None or cell.value is None:
        return "-"
    if cell.std is not None:
        return f"{fmt(cell.value, 'num')} ±{fmt(cell.std, 'num')}"
    return fmt(cell.value, "num")


VERDICT_SHORT = {VERDICT_REGRESSION: "REGRESSION", VERDICT_IMPROVEMENT: "better",
                 VERDICT_WITHIN: "", VERDICT_NOISE: "noise", VERDICT_UNTESTED: "?",
                 VERDICT_MISSING: "", "": ""}


def _ratio(cell: Cell | None) -> str:
    if cell is None or cell.ratio is None:
        return "-"
    return f"{cell.ratio:.2f}x"


def table_rows(c: Comparison) -> tuple[list[str], list[list[str]]]:
    """Headers and string cells of the side-by-side table."""
    with_model = len(_models(c)) > 1
    headers = ["workload", "scenario", "load"] + (["model"] if with_model else []) + [
        "metric", f"{c.sides[0].label} (base)"]
    for side in c.sides[1:]:
        headers += [side.label, f"{side.label}/{c.sides[0].label}", "verdict"]
    body = []
    for line in c.lines:
        k = line.key_dict
        arrow = "↑" if line.higher_is_better else "↓"
        cells = [str(k["workload"]), str(k["scenario"]), load_label(k)]
        cells += [model_label(k)] if with_model else []
        cells += [f"{line.metric} {arrow}", _figure(line.cells[0])]
        for cell in line.cells[1:]:
            cells += [_figure(cell), _ratio(cell),
                      VERDICT_SHORT.get(cell.verdict, cell.verdict) if cell else ""]
        body.append(cells)
    return headers, body


def _models(c: Comparison) -> list[str]:
    return sorted({model_label(line.key_dict) for line in c.lines})


def _legend(c: Comparison) -> list[str]:
    lines = [side.describe() for side in c.sides]
    models = _models(c)
    if len(models) == 1:
        lines.append(f"model: {models[0]}")
    lines.append(f"↑ higher is better, ↓ lower is better; ±std over repetitions (from the "
                 "requests file where present; else the row's std: over repetitions for "
                 "throughput, over requests for latency means); REGRESSION = worse by more "
                 f"than {c.threshold_pct:g}% and significant over repetitions (Welch t-test, "
                 f"p < {ALPHA} after Holm's adjustment over all of a run's tests); noise = "
                 "not significant; ? = no spread to test")
    if c.any_synthetic:
        lines.append("[synthetic] = random-weight model: real speed for its shape, "
                     "meaningless text")
    return lines


def format_table(c: Comparison) -> str:
    """Plain-text side-by-side table with a legend of the sides."""
    headers, body = table_rows(c)
    widths = [max([len(h), *(len(r[i]) for r in body)]) for i, h in enumerate(headers)]
    text_cols = set(range(headers.index("metric") + 1))

    def fmt_line(cells: list[str]) -> str:
        return "  ".join(v.ljust(w) if i in text_cols else v.rjust(w)
                         for i, (v, w) in enumerate(zip(cells, widths))).rstrip()

    out = _legend(c) + [""]
    out.append(fmt_line(headers))
    out.append("  ".join("-" * w for w in widths))
    out.extend(fmt_line(r) for r in body)
    return "\n".join(out)


def format_md(c: Comparison) -> str:
    """A Markdown table with the sides listed above it."""
    headers, body = table_rows(c)
    out = [f"- {line}" for line in _legend(c)] + [""]
    out.append("| " + " | ".join(headers) + " |")
    out.append("|" + "|".join("---" for _ in headers) + "|")
    for r in body:
        out.append("| " + " | ".join(v.replace("|", "\\|") for v in r) + " |")
    return "\n".join(out)


def to_records(c: Comparison) -> list[dict[str, Any]]:
    """One flat record per aligned row, metric and side (for CSV and JSON)."""
    records = []
    for line in c.lines:
        k = line.key_dict
        for side, cell in zip(c.sides, line.cells):
            if cell is None:
                continue
            records.append({
                **k, "load": load_label(k), "synthetic": line.synthetic,
                "metric": line.metric, "higher_is_better": line.higher_is_better,
                "side": side.label, "is_baseline": side.is_baseline,
                "machine_id": side.machine.get("machine_id"),
                "hostname": side.machine.get("hostname"),
                "run_id": ",".join(side.run_ids),
                "value": cell.value, "std": cell.std, "n": cell.n,
                "spread_basis": cell.basis, "ratio": cell.ratio,
                "change_pct": cell.change_pct, "p_value": cell.p_value,
                "p_adjusted": cell.p_adjusted,
                "verdict": cell.verdict if not side.is_baseline else "baseline",
            })
    return records


def format_csv(c: Comparison) -> str:
    """CSV of `to_records`."""
    records = to_records(c)
    buf = io.StringIO()
    fields = list(records[0]) if records else ["metric"]
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for r in records:
        writer.writerow({k: "" if v is None else v for k, v in r.items()})
    return buf.getvalue()


def format_json(c: Comparison) -> str:
    """JSON with the sides, every record, warnings, notes and regressions."""
    def finite(v: Any) -> Any:
        return None if isinstance(v, float) and not math.isfinite(v) else v

    doc = {
        "threshold_pct": c.threshold_pct, "alpha": ALPHA, "metrics": c.metrics,
        "sides": [{"label": s.label, "is_baseline": s.is_baseline, "files": s.files,
                   "run_ids": s.run_ids, **s.machine} for s in c.sides],
        "rows": [{k: finite(v) for k, v in r.items()} for r in to_records(c)],
        "regressions": [{**line.key_dict, "metric": line.metric, "side": side.label,
                         "synthetic": line.synthetic, "change_pct": finite(cell.change_pct),
                         "p_value": finite(cell.p_value),
                         "p_adjusted": finite(cell.p_adjusted)}
                        for line, side, cell in c.regressions],
        "warnings": c.warnings, "notes": c.notes,
    }
    return json.dumps(doc, indent=2, default=str)


def regression_summary(c: Comparison) -> str:
    """One line naming each regression (for the exit-1 message)."""
    parts = [f"{scenario_label(line.key)} {line.metric} {cell.change_pct:+.1f}% "
             f"(p={cell.p_value:.2g}, Holm-adjusted {cell.p_adjusted:.2g}) in {side.label}"
             for line, side, cell in c.regressions]
    more = f"; and {len(parts) - 3} more" if len(parts) > 3 else ""
    busy = sum(1 for line, side, _ in c.regressions
               if clean(side.rows[line.key].get("noisy"))
               or clean(c.sides[0].rows[line.key].get("noisy")))
    why = (f" (the machine was busy during {busy} of them: the load, not the code, may be "
           "the cause)" if busy else "")
    return (f"{len(parts)} regression(s) worse than {c.threshold_pct:g}% and significant: "
            + "; ".join(parts[:3]) + more + why)


FORMATTERS = {"table": format_table, "md": format_md, "csv": format_csv, "json": format_json}
