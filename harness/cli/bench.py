"""`harness bench`: run a workload on a backend and write result files."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from harness.analysis.breakeven.text import bench_summary_text
from harness.config import settings as bench_settings
from harness.format import render
from harness.power.columns import joules_label, power_summary
from harness.runner.session import BenchRun
from harness.secrets import register_env

HELP = "measure a model on a backend with a workload; write CSV/JSONL results"
DESCRIPTION = """\
Run a workload (warmup, repetitions, concurrency or arrival-rate sweeps) on one backend
and write, under OUTPUT/<machine-id>/:
  <run>_<workload>.csv             one row per scenario and load level (all context)
  <run>_<workload>.requests.jsonl  every measured request, as it completes
  <run>_<workload>.power.jsonl     the power timeline (when a meter is available)
  machine.json                     this machine's fingerprint

examples:
  harness bench                                    # default model, default workload
  harness bench --model my.gguf --workload chat
  harness bench --workload smoke --concurrency 1,4
  harness bench --backend openai --base-url http://127.0.0.1:8000/v1 --model NAME
"""

def add_arguments(p: argparse.ArgumentParser) -> None:
    """The flags, made from the one settings table (`harness.config.settings`)."""
    bench_settings.add_arguments(p)


def run(args: argparse.Namespace) -> int:
    settings = bench_settings.from_args(args)
    register_env(str(settings.api_key_env or "OPENAI_API_KEY"))  # masked in all output
    bench = BenchRun(settings)
    try:
        bench.run()
    except KeyboardInterrupt:
        _print_dead_server(bench)
        _report(bench.state.rows, bench.files, partial=True)
        raise
    _print_dead_server(bench)
    _report(bench.state.rows, bench.files, partial=False)
    _breakeven_hint(bench.state.rows)
    return 0


def _print_dead_server(bench: BenchRun) -> None:
    text = bench.dead_server_report()
    if text:
        print(text, file=sys.stderr)


def summary_table(rows: list[dict[str, Any]]) -> str:
    """The table `bench` prints: one line per scenario and load level."""
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
    return render(headers, body)


def _report(rows: list[dict[str, Any]], files: Any, partial: bool) -> None:
    if rows:
        print(summary_table(rows))
        print(power_summary(rows))
        noisy = [r["scenario"] for r in rows if r.get("noisy")]
        if noisy:
            print(f"note: the machine was busy during {', '.join(noisy)} "
                  "(load average recorded); figures may be low")
        if any(r.get("status") == "partial" for r in rows):
            print("* partial: interrupted before the scenario finished")
    if files is not None:
        print("results:" if not partial else "results so far:")
        for path in files.written():
            print(f"  {path}")


def _breakeven_hint(rows: list[dict[str, Any]]) -> None:
    """A short break-even summary for this machine."""
    text = bench_summary_text(rows)
    if text:
        print()
        print(text)

