"""`harness bench`: run a workload on a backend and write result files."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from harness.analysis.breakeven.text import bench_summary_text
from harness.config import settings as bench_settings
from harness.format import render, render_md
from harness.power.columns import joules_label, power_summary
from harness.results.summary import summary_json
from harness.runner.session import BenchRun
from harness.secrets import register_env

HELP = "measure a model on a backend with a workload; write CSV/JSONL results"
DESCRIPTION = """\
Run a workload (warmup, repetitions, concurrency or arrival-rate sweeps) on one backend
and write, under OUTPUT/<machine-id>/:
  <run>_<workload>.csv             one row per scenario and load level (all context)
  <run>_<workload>.json            the run summary: labels, machine, engine, settings,
                                   every row with every column, units
  <run>_<workload>.requests.jsonl  every measured request, as it completes
  <run>_<workload>.power.jsonl     the power timeline (when a meter is available)
  machine.json                     this machine's fingerprint

examples:
  harness bench                                    # default model, default workload
  harness bench --model my.gguf --workload chat
  harness bench --workload smoke --concurrency 1,4
  harness bench --backend openai --base-url http://127.0.0.1:8000/v1 --model NAME
  harness bench --dataset prompts.jsonl --format json --label gpu=none
"""

def add_arguments(p: argparse.ArgumentParser) -> None:
    """The flags, made from the one settings table (`harness.config.settings`)."""
    bench_settings.add_arguments(p)


def run(args: argparse.Namespace) -> int:
    settings = bench_settings.from_args(args)
    register_env(str(settings.api_key_env or "OPENAI_API_KEY"))  # masked in all output
    fmt = str(settings.format or "table")
    bench = BenchRun(settings)
    try:
        bench.run()
    except KeyboardInterrupt:
        _print_dead_server(bench)
        _report(bench.state.rows, bench.files, partial=True, fmt=fmt)
        raise
    _print_dead_server(bench)
    _report(bench.state.rows, bench.files, partial=False, fmt=fmt)
    _breakeven_hint(bench.state.rows, sys.stderr if fmt == "json" else sys.stdout)
    return 0


def _print_dead_server(bench: BenchRun) -> None:
    text = bench.dead_server_report()
    if text:
        print(text, file=sys.stderr)


def summary_table(rows: list[dict[str, Any]], markdown: bool = False) -> str:
    """The table `bench` prints: one line per scenario and load level (Markdown with
    `markdown`)."""
    headers = ["scenario", "load", "ok/req", "out tok/s", "±std", "prefill tok/s",
               "decode tok/s", "eng prefill", "eng decode", "TTFT p50 ms", "TPOT p50 ms",
               "E2E p50 ms", "J/out tok"]
    body = []
    for r in rows:
        load = (f"{r['request_rate_rps']:g}/s" if r.get("request_rate_rps")
                else f"c={r.get('concurrency')}")
        body.append([
            r["scenario"] + ("*" if r.get("status") == "partial" else ""), load,
            f"{(r.get('requests') or 0) - (r.get('errors') or 0)}/{r.get('requests') or 0}",
            r.get("output_throughput_tok_s"), r.get("output_throughput_tok_s_std"),
            r.get("prefill_tok_s"), r.get("decode_tok_s"), r.get("engine_prefill_tok_s"),
            r.get("engine_decode_tok_s"), r.get("ttft_ms_p50"), r.get("tpot_ms_p50"),
            r.get("e2e_ms_p50"), joules_label(r),
        ])
    return render_md(headers, body) if markdown else render(headers, body)


def _report(rows: list[dict[str, Any]], files: Any, partial: bool,
            fmt: str = "table") -> None:
    """What bench prints on stdout: the table (or Markdown), then notes and the files
    written; with `fmt` json only the run summary (the rest goes to stderr)."""
    out = sys.stdout
    if fmt == "json":
        if files is not None:
            sys.stdout.write(summary_json(files.summary()))
            sys.stdout.flush()
        out = sys.stderr
    elif rows:
        print(summary_table(rows, markdown=fmt == "md"), file=out)
        if fmt == "md":
            print(file=out)
    if rows:
        print(power_summary(rows), file=out)
        noisy = [r["scenario"] for r in rows if r.get("noisy")]
        if noisy:
            print(f"note: the machine was busy during {', '.join(noisy)} "
                  "(load average recorded); figures may be low", file=out)
        if any(r.get("status") == "partial" for r in rows):
            print("* partial: interrupted before the scenario finished", file=out)
    if files is not None:
        print("results:" if not partial else "results so far:", file=out)
        for path in files.written():
            print(f"  {path}", file=out)


def _breakeven_hint(rows: list[dict[str, Any]], out: Any) -> None:
    """A short break-even summary for this machine."""
    text = bench_summary_text(rows)
    if text:
        print(file=out)
        print(text, file=out)

