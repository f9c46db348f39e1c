"""Does a synthetic twin run as fast as the real model? Prints decode and prefill tok/s.

Makes (once, into .models/) the random-weight twin of a real GGUF with
`harness model synth --like` semantics (same metadata, tokenizer and per-tensor
quantization types), loads both in the llamacpp backend, and sends both the same
requests through `harness.runner.runner.measure_request`: a prefill scenario (pp512, 1 output
token) and a decode scenario (tg128, forced length). Requests go in pairs, the same prompt
to each model, the order alternating pair by pair (A B, B A, ...), so drift in machine load
hits both alike. Prints each model's figures over all its requests (as `harness bench`
computes them), the twin/real ratio, the median of per-pair ratios, and the load average.

Speeds are printed, never asserted. Example:
  .venv/bin/python bench/synth_twin.py                       # the default model's twin
  .venv/bin/python bench/synth_twin.py --rounds 8 --real my.gguf
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from backends.llamacpp import LlamaCppBackend  # noqa: E402
from harness.metrics import scenario_summary  # noqa: E402
from harness.models.resolve import DEFAULT_MODELS_DIR, default_model  # noqa: E402
from harness.models.synth import resolve_synth_model  # noqa: E402
from harness.results.machine import load_avg_1m  # noqa: E402
from harness.runner.load import measure_request  # noqa: E402
from harness.runner.options import SweepPoint  # noqa: E402
from workloads.requests import PromptFactory  # noqa: E402
from workloads.spec import load_workload  # noqa: E402

FIGURES = ("prefill_tok_s", "engine_prefill_tok_s", "decode_tok_s", "engine_decode_tok_s")


def request_rates(r) -> dict[str, float | None]:
    """The four figures of one request (None where the request does not define one)."""
    return {
        "prefill_tok_s": r.prefill_tok_s,
        "engine_prefill_tok_s": (r.engine_prefill_tokens / r.engine_prefill_ms * 1000
                                 if r.engine_prefill_ms else None),
        "decode_tok_s": 1000 / r.tpot_ms if r.tpot_ms else None,
        "engine_decode_tok_s": (r.engine_decode_tokens / r.engine_decode_ms * 1000
                                if r.engine_decode_ms and r.engine_decode_tokens else None),
    }


async def run_round(backends: dict, factories: dict, rnd: int, requests: int,
                    records: dict, pairs: dict) -> None:
    """One round: per scenario a warmup on each model, then `requests` request pairs,
    the same prompt to both, the order alternating pair by pair."""
    point = SweepPoint(concurrency=1)
    for name in ("pp512", "tg128"):
        for label in ("real", "twin"):
            await measure_request(backends[label], factories[label][name].make(
                "warmup", rnd, point), name, -1, 600)
        for i in range(requests):
            order = ("real", "twin") if (rnd * requests + i) % 2 == 0 else ("twin", "real")
            pair = {}
            for label in order:
                rec = await measure_request(backends[label], factories[label][name].make(
                    rnd, i, point), name, rnd, 600)
                if not rec.ok:
                    raise SystemExit(f"{label} {name}: request failed: {rec.error_message}")
                records[label][name].append(rec)
                pair[label] = request_rates(rec)
            for k in FIGURES[:2] if name == "pp512" else FIGURES[2:]:
                if pair["real"][k] and pair["twin"][k]:
                    pairs[k].append(pair["twin"][k] / pair["real"][k])


def summarize(records: dict) -> dict[str, float | None]:
    pp, tg = scenario_summary(records["pp512"]), scenario_summary(records["tg128"])
    return {"prefill_tok_s": pp["prefill_tok_s"],
            "engine_prefill_tok_s": pp["engine_prefill_tok_s"],
            "decode_tok_s": tg["decode_tok_s"], "engine_decode_tok_s": tg["engine_decode_tok_s"]}


async def main(args: argparse.Namespace) -> int:
    real = Path(args.real) if args.real else default_model()
    twin = resolve_synth_model(f"like:{real}", DEFAULT_MODELS_DIR)
    workload = load_workload("default")
    scenarios = {s.name: s for s in workload.scenarios if s.name in ("pp512", "tg128")}
    models = {"real": real, "twin": twin}
    backends: dict[str, LlamaCppBackend] = {}
    factories: dict[str, dict] = {}
    cfg = {"n_ctx": 1024}
    if args.n_threads:
        cfg["n_threads"] = args.n_threads
    for label, path in models.items():
        backends[label] = LlamaCppBackend(model=str(path), **cfg)
        info = await backends[label].open()
        print(f"{label}: {path.name} · model={info.model} weights={info.weights} "
              f"quant={info.quant} params={info.model_params} "
              f"threads={info.settings['n_threads']}")
        b = backends[label]
        factories[label] = {n: PromptFactory(workload, s, lambda t, b=b: b.count_tokens(
            t, prompt=True)) for n, s in scenarios.items()}
    load_start = os.getloadavg()
    records = {label: {"pp512": [], "tg128": []} for label in models}
    pairs: dict[str, list[float]] = {k: [] for k in FIGURES}
    try:
        for rnd in range(args.rounds):
            await run_round(backends, factories, rnd, args.requests, records, pairs)
            r, t = summarize(records["real"]), summarize(records["twin"])
            print(f"after round {rnd + 1}/{args.rounds}, load {load_avg_1m()}: "
                  + "  ".join(f"{k} {r[k]:.1f}/{t[k]:.1f}" for k in FIGURES), flush=True)
    finally:
        for b in backends.values():
            await b.close()
    load_end = os.getloadavg()
    print(f"\nload average (1/5/15 min) at start {load_start[0]:.2f}/{load_start[1]:.2f}/"
          f"{load_start[2]:.2f}, at end {load_end[0]:.2f}/{load_end[1]:.2f}/"
          f"{load_end[2]:.2f}; {os.cpu_count()} CPUs")
    print(f"{'figure (tok/s)':24} {'real':>9} {'twin':>9} {'twin/real':>10} "
          f"{'median pair ratio':>18} {'pairs':>6}")
    real, twin = summarize(records["real"]), summarize(records["twin"])
    worst = 0.0
    for k in FIGURES:
        ratio = twin[k] / real[k]
        worst = max(worst, abs(ratio - 1))
        print(f"{k:24} {real[k]:9.1f} {twin[k]:9.1f} {ratio:10.3f} "
              f"{statistics.median(pairs[k]):18.3f} {len(pairs[k]):6d}")
    print(f"\nlargest twin/real difference: {worst:.1%} "
          f"({'within' if worst <= 0.05 else 'NOT within'} 5%)")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--real", default=None, help="real GGUF (default: the default model)")
    parser.add_argument("--rounds", type=int, default=6, help="A/B rounds (default 6)")
    parser.add_argument("--requests", type=int, default=3,
                        help="request pairs per scenario per round (default 3)")
    parser.add_argument("--n-threads", type=int, default=None)
    sys.exit(asyncio.run(main(parser.parse_args())))
