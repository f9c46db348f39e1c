"""Does a synthetic twin run as fast as the real model? Prints decode and prefill tok/s.

Makes (once, into .models/) the random-weight twin of a real GGUF with
`harness model synth --like` semantics (same metadata, tokenizer and per-tensor
quantization types), loads both in the llamacpp backend, and sends both the same
requests through `harness.runner.measure_request`: a prefill scenario (pp512, 1 output
token) and a decode scenario (tg128, forced length). Rounds alternate the order A B, B A,
... so drift in machine load hits both alike. Prints per-model means, the twin/real ratio
(of the means and the median of per-round ratios) and the load average.

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
from harness.machine import load_avg_1m  # noqa: E402
from harness.metrics import scenario_summary  # noqa: E402
from harness.models import DEFAULT_MODELS_DIR, default_model  # noqa: E402
from harness.runner import PromptFactory, SweepPoint, measure_request  # noqa: E402
from harness.synth import resolve_synth_model  # noqa: E402
from workloads.spec import load_workload  # noqa: E402

FIGURES = ("prefill_tok_s", "engine_prefill_tok_s", "decode_tok_s", "engine_decode_tok_s")


async def run_block(backend: LlamaCppBackend, factories: dict, rnd: int,
                    requests: int) -> dict[str, float | None]:
    """One model, one round: a warmup then `requests` of each scenario."""
    point = SweepPoint(concurrency=1)
    out: dict[str, float | None] = {}
    for name, factory in factories.items():
        await measure_request(backend, factory.make("warmup", rnd, point), name, -1, 600)
        records = [await measure_request(backend, factory.make(rnd, i, point), name, rnd, 600)
                   for i in range(requests)]
        if any(not r.ok for r in records):
            raise SystemExit(f"{name}: a request failed: {records}")
        s = scenario_summary(records)
        if name == "pp512":
            out["prefill_tok_s"] = s["prefill_tok_s"]
            out["engine_prefill_tok_s"] = s["engine_prefill_tok_s"]
        else:
            out["decode_tok_s"] = s["decode_tok_s"]
            out["engine_decode_tok_s"] = s["engine_decode_tok_s"]
    return out


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
    results: dict[str, list[dict]] = {"real": [], "twin": []}
    try:
        for rnd in range(args.rounds):
            order = ("real", "twin") if rnd % 2 == 0 else ("twin", "real")
            for label in order:
                results[label].append(await run_block(backends[label], factories[label], rnd,
                                                      args.requests))
            r, t = results["real"][-1], results["twin"][-1]
            print(f"round {rnd + 1}/{args.rounds} ({order[0]} first) load {load_avg_1m()}: "
                  + "  ".join(f"{k} {r[k]:.1f}/{t[k]:.1f}" for k in FIGURES), flush=True)
    finally:
        for b in backends.values():
            await b.close()
    load_end = os.getloadavg()
    print(f"\nload average (1/5/15 min) at start {load_start[0]:.2f}/{load_start[1]:.2f}/"
          f"{load_start[2]:.2f}, at end {load_end[0]:.2f}/{load_end[1]:.2f}/"
          f"{load_end[2]:.2f}; {os.cpu_count()} CPUs")
    print(f"{'figure (tok/s)':24} {'real':>9} {'twin':>9} {'twin/real':>10} "
          f"{'median round ratio':>19} {'real cv':>8}")
    worst = 0.0
    for k in FIGURES:
        rv = [x[k] for x in results["real"]]
        tv = [x[k] for x in results["twin"]]
        ratio = statistics.mean(tv) / statistics.mean(rv)
        per_round = statistics.median(t / r for t, r in zip(tv, rv))
        cv = statistics.pstdev(rv) / statistics.mean(rv)
        worst = max(worst, abs(ratio - 1))
        print(f"{k:24} {statistics.mean(rv):9.1f} {statistics.mean(tv):9.1f} {ratio:10.3f} "
              f"{per_round:19.3f} {cv:8.1%}")
    print(f"\nlargest twin/real difference: {worst:.1%} "
          f"({'within' if worst <= 0.05 else 'NOT within'} 5%)")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--real", default=None, help="real GGUF (default: the default model)")
    parser.add_argument("--rounds", type=int, default=6, help="A/B rounds (default 6)")
    parser.add_argument("--requests", type=int, default=3,
                        help="measured requests per scenario per block (default 3)")
    parser.add_argument("--n-threads", type=int, default=None)
    sys.exit(asyncio.run(main(parser.parse_args())))
