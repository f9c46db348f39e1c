"""False-positive rate of the regression gate, measured with A/A runs.

Runs the same suite twice, back to back, on this machine (`harness bench`, the in-process
llama.cpp backend on the default model, the `smoke` workload that `make nightly` runs),
`--pairs` times; then applies the nightly gate to each pair: `harness compare B
--baseline A --fail-on-regression PCT` (exit 1 = flagged). Nothing changed between A and
B, so every flagged pair is a false positive. For contrast it also applies the gate's
earlier rule, in which latency means were tested over pooled requests (n = successful
requests), to the same pairs.

A real engine on a real model, not a fake server: the point is the run-to-run variance a
real run has (model load, caches, the machine's other work), which a fake server with
fixed timings would not show. Figures are printed with the load average, never asserted.

  .venv/bin/python bench/aa_false_positives.py                      # 10 pairs of smoke
  .venv/bin/python bench/aa_false_positives.py --pairs 12 --threshold 10
  .venv/bin/python bench/aa_false_positives.py --reuse /tmp/aa-...  # re-judge saved runs
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness.analysis import compare as cmp
from harness.analysis.stats import welch_t_test
from harness.results.files import load_frame

ROOT = Path(__file__).resolve().parent.parent


def loadavg() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def bench(out: Path, workload: str, extra: list[str]) -> tuple[float, str, str]:
    """One `harness bench` run into `out`: (seconds, load average before, after)."""
    before = loadavg()
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "harness", "bench", "--workload", workload,
                           "--output", str(out), "--quiet", *extra], cwd=ROOT,
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"harness bench failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return time.perf_counter() - t0, before, loadavg()


def gate(a: Path, b: Path, threshold: float) -> tuple[int, str]:
    """The nightly gate on one pair: (exit code, regression lines)."""
    proc = subprocess.run([sys.executable, "-m", "harness", "compare", str(b), "--baseline",
                           str(a), "--fail-on-regression", f"{threshold:g}"], cwd=ROOT,
                          capture_output=True, text=True, check=False)
    lines = [x for x in proc.stderr.splitlines() if "regression" in x and "no significant"
             not in x]
    return proc.returncode, " ".join(lines)


def pooled_rule(a: Path, b: Path, threshold: float) -> list[str]:
    """The earlier rule on the same pair: throughput over repetitions (row std), latency
    means over pooled requests (request std, n = successful requests)."""
    ra = {cmp.row_key(r): r for r in cmp.clean_rows(load_frame([a]).to_dict("records"))}
    rb = {cmp.row_key(r): r for r in cmp.clean_rows(load_frame([b]).to_dict("records"))}
    flagged = []
    for key in ra.keys() & rb.keys():
        x, y = ra[key], rb[key]
        for metric in cmp.DEFAULT_METRICS:
            spread = cmp.spread_of(metric)
            if spread is None or x.get(metric) is None or y.get(metric) is None:
                continue

            def n(r: dict[str, Any], kind: str = spread[1]) -> int:
                if kind == "repetitions":
                    return int(r.get("repetitions") or 0)
                return int((r.get("requests") or 0) - (r.get("errors") or 0))

            test = welch_t_test(x[metric], x.get(spread[0]) or 0.0, n(x),
                                y[metric], y.get(spread[0]) or 0.0, n(y))
            change = (y[metric] - x[metric]) / abs(x[metric]) * 100 if x[metric] else 0.0
            worse = -change if cmp.higher_is_better(metric) else change
            if test is not None and test.p_value < cmp.ALPHA and worse > threshold:
                flagged.append(f"{key[1]} {metric} {change:+.1f}% (p={test.p_value:.2g})")
    return flagged


def changes(a: Path, b: Path) -> str:
    """Largest |change| per default metric across the pair's scenarios."""
    ra = {cmp.row_key(r): r for r in cmp.clean_rows(load_frame([a]).to_dict("records"))}
    rb = {cmp.row_key(r): r for r in cmp.clean_rows(load_frame([b]).to_dict("records"))}
    out = []
    for metric in ("output_throughput_tok_s", "ttft_ms_mean", "tpot_ms_mean"):
        worst = max((abs(rb[k][metric] / ra[k][metric] - 1) * 100 for k in ra.keys() & rb.keys()
                     if ra[k].get(metric) and rb[k].get(metric) is not None), default=0.0)
        out.append(f"{metric.split('_')[0]} {worst:.1f}%")
    return ", ".join(out)


def noisy(path: Path) -> int:
    return sum(1 for r in load_frame([path]).to_dict("records") if r.get("noisy") == 1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pairs", type=int, default=10)
    p.add_argument("--workload", default="smoke")
    p.add_argument("--threshold", type=float, default=10.0, help="gate, percent (nightly: 10)")
    p.add_argument("--out", type=Path, default=None, help="where runs go (default /tmp/aa-*)")
    p.add_argument("--reuse", type=Path, default=None,
                   help="judge the pairs already in this folder instead of running")
    p.add_argument("bench_args", nargs="*", help="extra `harness bench` flags after --")
    args = p.parse_args()
    out = args.reuse or args.out or Path(f"/tmp/aa-{time.strftime('%Y%m%dT%H%M%S')}")
    print(f"A/A: {args.pairs} pairs of `harness bench --workload {args.workload}` "
          f"{' '.join(args.bench_args)}; gate {args.threshold:g}%; {os.cpu_count()} CPUs; "
          f"load average at start {loadavg()}; runs in {out}", flush=True)
    pairs = []
    for i in range(args.pairs):
        a, b = out / f"pair{i:02d}" / "a", out / f"pair{i:02d}" / "b"
        if args.reuse is None:
            sa, la, la_end = bench(a, args.workload, args.bench_args)
            sb, lb, lb_end = bench(b, args.workload, args.bench_args)
            print(f"  pair {i:2d}: A {sa:.0f} s (load {la} -> {la_end}), "
                  f"B {sb:.0f} s (load {lb} -> {lb_end})", flush=True)
        pairs.append((a, b))
    print(f"\n{'pair':>4}  {'gate':<8} {'pooled rule':<12} noisy rows A/B  largest change "
          "(out tok/s, TTFT mean, TPOT mean)")
    flagged_new = flagged_old = 0
    details = []
    for i, (a, b) in enumerate(pairs):
        rc, why = gate(a, b, args.threshold)
        if rc not in (0, 1):
            raise SystemExit(f"harness compare failed on pair {i} (exit {rc})")
        old = pooled_rule(a, b, args.threshold)
        flagged_new += rc == 1
        flagged_old += bool(old)
        print(f"{i:>4}  {'FLAGGED' if rc else 'pass':<8} {'FLAGGED' if old else 'pass':<12} "
              f"{noisy(a)}/{noisy(b):<13} {changes(a, b)}")
        if rc:
            details.append(f"  pair {i} gate: {why}")
        if old:
            details.append(f"  pair {i} pooled rule: " + "; ".join(old))
    print(f"\nfalse positives at {args.threshold:g}%: gate (over repetitions) "
          f"{flagged_new}/{len(pairs)} pairs; earlier pooled-request rule "
          f"{flagged_old}/{len(pairs)} pairs")
    print("\n".join(details))
    print(f"load average at end {loadavg()}")


if __name__ == "__main__":
    main()
