"""`harness compare`: result files side by side, ratios to a baseline, regressions."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from harness.analysis import compare as cmp
from harness.analysis.compare import DEFAULT_METRICS, clean_rows, numeric_columns
from harness.errors import CheckFailed, UserError, did_you_mean
from harness.results.files import copy_result_files, load_frame, read_request_records

HELP = "compare result files across runs and machines; flag significant regressions"
DESCRIPTION = """\
Align the rows of several result files or folders by workload, scenario, model and load,
and show each run's figures side by side with its ratio to the baseline. The baseline is
--baseline, or else the first run given. Each run (machine + run id) is one column.

A change is a REGRESSION only when it is worse than the threshold AND significant given
the spread of the repetitions (Welch's t-test, p < 0.05), never of pooled requests: each
repetition's figure is recomputed from the requests file beside the CSV
(<run>_<workload>.requests.jsonl) where it exists, else the row's mean, std and number
of repetitions are used. Metadata
that must match (model file, token targets, engine settings) is checked and a difference
is a warning on stderr.

examples:
  harness compare results/                                   # every run found, first = base
  harness compare results/box-a results/box-b --format md
  harness compare results/nightly/20260101T031700Z --baseline results/reference \\
      --same-hardware --fail-on-regression 10                # exit 1 on a real regression
  harness compare a.csv b.csv --metric output_throughput_tok_s,ttft_ms_p50 --format json
"""


def _metrics(text: str) -> list[str]:
    return [m.strip() for m in text.split(",") if m.strip()]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("results", nargs="+", metavar="RESULT",
                   help="result CSV files or folders (searched recursively)")
    p.add_argument("--baseline", default=None, metavar="RESULT",
                   help="result file or folder to compare against (default: the first run)")
    p.add_argument("--metric", action="append", type=_metrics, default=None,
                   help="metric column(s) to compare, repeatable or comma-separated "
                        "(default: output_throughput_tok_s, ttft_ms_mean, tpot_ms_mean, "
                        "j_per_output_token)")
    p.add_argument("--fail-on-regression", type=float, default=None, metavar="PCT",
                   help="exit 1 when a metric is worse by more than PCT percent and the "
                        "change is significant (default: only report, threshold 5%%)")
    p.add_argument("--same-hardware", action="store_true",
                   help="use only baseline rows from the same kind of machine as the compared "
                        "run (GPU name and count, else CPU model); error when there are none "
                        "(for nightly jobs)")
    p.add_argument("--new-hardware-baseline", default=None, metavar="DIR",
                   help="when the --baseline holds no results from the compared run's "
                        "hardware (or is DIR itself and does not exist yet), keep the compared "
                        "run as that hardware's baseline in DIR/<hardware>/, say so and exit 0 "
                        "instead of failing; the new folder's path is also written to "
                        "new-baseline.txt in the compared results folder (for nightly jobs "
                        "on a new kind of machine, which hand that folder back to commit)")
    p.add_argument("--format", choices=["table", "md", "csv", "json"], default="table",
                   help="output format (default table)")


def _check_metrics(requested: list[list[str]] | None, available: set[str]) -> list[str]:
    if not requested:
        return list(DEFAULT_METRICS)
    known = set(numeric_columns()) | available
    out: list[str] = []
    for metric in (m for group in requested for m in group):
        if metric not in known:
            raise UserError(f"--metric {metric}: not a numeric result column."
                            + did_you_mean(metric, sorted(known))
                            + " See harness/results/schema.py for the columns")
        if metric not in out:
            out.append(metric)
    if not out:
        raise UserError("--metric: give at least one column name")
    return out


def _rows(frame: Any) -> list[dict[str, Any]]:
    """Rows of a result frame, each with its per-repetition values where the requests
    file beside its CSV has them (the significance test is over repetitions)."""
    rows = clean_rows(frame.to_dict("records"))
    files = {str(r.get("source_file")) for r in rows if r.get("source_file")}
    cmp.attach_repetitions(rows, {f: read_request_records(f) for f in files})
    return rows


def run(args: argparse.Namespace) -> int:
    if args.fail_on_regression is not None and args.fail_on_regression < 0:
        raise UserError("--fail-on-regression takes a percentage >= 0, e.g. 10")
    base_rows = None
    results = list(args.results)
    keep_dir = Path(args.new_hardware_baseline) if args.new_hardware_baseline else None
    if keep_dir is not None and args.baseline is None:
        raise UserError("--new-hardware-baseline needs --baseline RESULT")
    if keep_dir is not None and not Path(args.baseline).exists() \
            and _within(Path(args.baseline), keep_dir):
        return _keep_as_baseline(_rows(load_frame(results)), args.baseline, keep_dir,
                                 results)  # the first night: no baseline at all yet
    if args.baseline is not None:
        base_rows = _rows(load_frame([args.baseline]))
        base_files = {str(Path(r["source_file"]).resolve()) for r in base_rows}
        frame = load_frame(results)
        rows = [r for r in _rows(frame)
                if str(Path(r["source_file"]).resolve()) not in base_files]
    else:
        rows = _rows(load_frame(results))
    if keep_dir is not None and rows and base_rows is not None:
        want = cmp.hardware_of(rows[0])
        if not any(cmp.hardware_of(r) == want for r in base_rows):
            return _keep_as_baseline(rows, args.baseline, keep_dir, results)
    numeric = {c for r in rows[:1] for c, v in r.items() if isinstance(v, (int, float))}
    metrics = _check_metrics(args.metric, numeric)
    threshold = (args.fail_on_regression if args.fail_on_regression is not None
                 else cmp.DEFAULT_THRESHOLD_PCT)
    warnings: list[str] = []
    try:
        if args.same_hardware and base_rows is None:
            raise UserError("--same-hardware needs --baseline RESULT")
        sides = cmp.build_sides(rows, base_rows, warnings, args.same_hardware)
        comparison = cmp.compare(sides, metrics, threshold, skip_empty=args.metric is None)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    comparison.warnings[:0] = warnings
    for text in comparison.warnings:
        print(f"warning: {text}", file=sys.stderr)
    for text in comparison.notes:
        print(f"note: {text}", file=sys.stderr)
    print(cmp.FORMATTERS[args.format](comparison))
    regressions = comparison.regressions
    if args.fail_on_regression is not None and regressions:
        raise CheckFailed(cmp.regression_summary(comparison))
    if args.fail_on_regression is not None:
        print(f"harness compare: no significant regression beyond {threshold:g}%",
              file=sys.stderr)
    return 0


def _within(path: Path, folder: Path) -> bool:
    path, folder = path.resolve(), folder.resolve()
    return path == folder or folder in path.parents


def _keep_as_baseline(rows: list[dict[str, Any]], baseline: str, keep_dir: Path,
                      results: list[str]) -> int:
    """Copy the compared run (its first hardware's rows) to keep_dir/<hardware>/ as that
    hardware's baseline; say so plainly on stdout; exit 0."""
    if not rows:
        raise UserError("no result rows to keep as a baseline in " + ", ".join(results))
    want = cmp.hardware_of(rows[0])
    files = sorted({Path(r["source_file"]) for r in rows
                    if r.get("source_file") and cmp.hardware_of(r) == want})
    dest = keep_dir / cmp.hardware_slug(rows[0])
    try:
        copied = copy_result_files(files, dest)
    except OSError as exc:
        raise UserError(f"--new-hardware-baseline {keep_dir}: cannot write ({exc})") from None
    hw = " x".join(str(v) for v in want if v not in (None, ""))
    first = Path(results[0])
    if first.is_dir():
        (first / "new-baseline.txt").write_text(f"{dest}\n", encoding="utf-8")
    print(f"nightly: no baseline from this hardware ({hw}) in {baseline}: nothing to compare "
          f"against tonight. This run is kept as that hardware's baseline in {dest}/ "
          f"({len(copied)} files); commit it (git add {dest}) and later runs on this "
          "hardware compare against it.")
    return 0
