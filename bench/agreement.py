"""The same load measured by this harness, by `vllm bench serve` and by guidellm, on one
vLLM server, side by side.

Starts one vLLM OpenAI server (CPU build here; prefix caching off, so no tool's prompts
are served from an earlier tool's cache) on the ~120M-parameter random Llama that the
vLLM batching test builds (`BATCHING_SHAPE`, built once into .models/batching-llama), or
on --model. Then, for each concurrency and over --rounds rounds, with the order of the
tools rotating from round to round, it runs:
- `harness bench --backend vllm --base-url URL` (closed loop, --prompts requests of
  --input-len prompt and --output-len output tokens, ignore_eos; no /metrics polling);
- `vllm bench serve` (random dataset at the same lengths, --max-concurrency, every
  prompt offered at once, --ignore-eos), from .venv-vllm;
- guidellm (.venv-guidellm; concurrent profile with that many streams, synthetic
  prompts at the same lengths, which it sends with ignore_eos);
none with warmup requests (one unrecorded run warms the server up first). For each run it
scrapes the server's /metrics before and after, samples the client's CPU, and records the
load average. It prints each tool's own output throughput, mean TTFT and mean TPOT (as the
tool computes them: guidellm calls (E2E - TTFT)/(N - 1) "inter-token latency", its "time
per output token" being E2E/N), the ratios between the tools with the spread of the
per-round ratios, the same three figures recomputed from each tool's per-request records
with one definition, the lengths the server saw, the server's own TTFT/ITL/E2E, and the
client's CPU per token. Nothing is asserted.

  .venv-vllm/bin/python bench/agreement.py                       # c=1 and 8, 2 rounds
  .venv-vllm/bin/python bench/agreement.py --concurrency 8 --rounds 3 --prompts 96
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
import urllib.request
import zlib
from pathlib import Path
from statistics import mean
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from peers import (  # noqa: E402
    ROOT,
    ToolRun,
    guidellm_argv,
    have_guidellm,
    have_vllm,
    run_guidellm,
    run_harness,
    run_vllm_bench,
    vllm_bench_argv,
    write_workload,
)

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("VLLM_CACHE_ROOT", str(ROOT / ".cache" / "vllm"))
os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(ROOT / ".cache" / "inductor"))

from backends.prometheus import parse_metrics, vllm_summary  # noqa: E402
from harness.config.settings import bench_settings  # noqa: E402
from harness.servers.kinds import vllm_spec  # noqa: E402
from harness.servers.managed import ManagedServer, free_port  # noqa: E402
from workloads.prompts import synthesize_prompt  # noqa: E402

TOOLS = ("harness", "vllm", "guidellm", "harness-before")
LABELS = {"harness": "harness", "vllm": "vllm bench", "guidellm": "guidellm",
          "harness-before": "harness old"}
METRICS = (("output_tok_s", "output tok/s"), ("ttft_ms_mean", "mean TTFT ms"),
           ("tpot_ms_mean", "mean TPOT ms"))


def server_page(base_url: str) -> dict:
    """The server's /metrics, parsed."""
    with urllib.request.urlopen(base_url.removesuffix("/v1") + "/metrics", timeout=30) as r:
        return parse_metrics(r.read().decode())


def same_definition(run: ToolRun) -> dict[str, float]:
    """Throughput, mean TTFT and mean TPOT recomputed from the tool's per-request records
    with one definition: Σ N_out / (last token − first send), TTFT to the first token,
    TPOT = (last token − send − TTFT) / (N_out − 1)."""
    start, end = run.window_s
    tpots = [((r.last_token_s - r.send_s) * 1e3 - r.ttft_ms) / (r.output_tokens - 1)
             for r in run.requests if r.output_tokens > 1]
    return {"output_tok_s": run.tokens / (end - start) if end > start else 0.0,
            "ttft_ms_mean": mean(r.ttft_ms for r in run.requests) if run.requests else 0.0,
            "tpot_ms_mean": mean(tpots) if tpots else 0.0}


def write_prompts(path: Path, model_dir: str, count: int, input_len: int, output_len: int,
                  seed: int) -> Path:
    """`count` prompts of `input_len` tokens of the model's tokenizer (English-like words,
    as the harness synthesizes them) as JSON lines {"prompt", "output_tokens"}: what both
    `harness bench --dataset` and `vllm bench serve --dataset-name custom` read."""
    import random

    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)

    def count_tokens(text: str) -> int:
        return len(tok.encode(text, add_special_tokens=True))

    rng = random.Random(seed)
    with open(path, "w") as f:
        for i in range(count):
            prompt, _ = synthesize_prompt(count_tokens, input_len, rng, f"{i}: ")
            f.write(json.dumps({"prompt": prompt, "output_tokens": output_len}) + "\n")
    return path


def run_tool(tool: str, server: ManagedServer, model: str, concurrency: int, prompts: int,
             args: argparse.Namespace, work: Path, tag: str) -> ToolRun:
    url = server.base_url
    root = url.removesuffix("/v1")
    seed = zlib.crc32(tag.encode()) % 100_000
    if tool in ("harness", "harness-before"):
        before = tool == "harness-before"
        out = work / f"{tool}-{tag}"
        workload = write_workload(work / f"w-{tag}.toml", args.input_len, args.output_len,
                                  prompts, warmup=0, seed=seed,
                                  description="agreement: fixed lengths, closed loop")
        config = work / "harness.toml"
        config.write_text("[engine]\nmetrics_sample_s = 0\n")  # vllm bench does not poll
        per_stream = [] if before else ["--requests-per-stream", "0"]
        if args.prompts_file is not None and tag != "warmup":
            per_stream += ["--dataset", str(args.prompts_file)]
        argv = [sys.executable, "-m", "harness", "bench", "--backend", "vllm", "--base-url",
                url, "--model", model, "--workload", str(workload), "--concurrency",
                str(concurrency), "--requests", str(prompts), *per_stream,
                "--warmup", "0", "--endpoint", "completions", "--output", str(out),
                "--quiet", "--power", "none", "--config", str(config)]
        run = run_harness(argv, out, cwd=args.harness_before if before else ROOT)
        run.tool = tool
        return run
    if tool == "vllm":
        name = f"vllm-{tag}.json"
        argv = vllm_bench_argv(root, model, model, args.input_len, args.output_len, prompts,
                               concurrency, 0, seed, work, name)
        if args.prompts_file is not None:  # the same prompts as the harness, not random ids
            at = argv.index("--dataset-name")
            argv[at:at + 8] = ["--dataset-name", "custom", "--dataset-path",
                               str(args.prompts_file), "--custom-output-len",
                               str(args.output_len), "--skip-chat-template"]
        return run_vllm_bench(argv, work / name)
    result = work / f"guidellm-{tag}.json"
    return run_guidellm(guidellm_argv(root, model, model, args.input_len, args.output_len,
                                      prompts, concurrency, seed, result), result)


def spread(values: list[float]) -> str:
    return f"{min(values):.3f}..{max(values):.3f}" if values else "-"


def report(results: dict[tuple[int, str], list[dict[str, Any]]], levels: list[int],
           tools: list[str], args: argparse.Namespace) -> None:
    print(f"\n{args.prompts} prompts x {args.input_len} in / {args.output_len} out tokens, "
          f"ignore_eos, mean of {args.rounds} round(s); ratio = first / second tool of "
          "the means, per-round ratios min..max")
    pairs = [(a, b) for i, a in enumerate(tools) for b in tools[i + 1:]]
    for c in levels:
        print(f"\nc={c}")
        head = "".join(f"{LABELS[t]:>12}" for t in tools)
        ratios = "".join(f"  {LABELS[a][:7]}/{LABELS[b][:7]:<7} {'per round':>13}"
                         for a, b in pairs)
        print(f"  {'':26}{head}{ratios}")
        for source, title in (("own", "as each tool reports"),
                              ("same", "one definition, from the records")):
            print(f"  {title}:")
            for key, label in METRICS:
                vals = {t: [r[source][key] for r in results[(c, t)]] for t in tools}
                line = f"    {label:<22}" + "".join(f"{mean(vals[t]):>12.2f}" for t in tools)
                for a, b in pairs:
                    ratio = mean(vals[a]) / mean(vals[b]) if mean(vals[b]) else float("nan")
                    per = [x / y for x, y in zip(vals[a], vals[b]) if y]
                    line += f"  {ratio:>15.3f} {spread(per):>13}"
                print(line)
        print("  the server saw (its /metrics over each run):")
        for key, label in (("prompt_tokens", "prompt tok/request"),
                           ("generation_tokens", "output tok/request"),
                           ("server_ttft_ms_mean", "server's TTFT ms"),
                           ("server_itl_ms_mean", "server's ITL ms"),
                           ("server_e2e_ms_mean", "server's E2E ms")):
            vals = {t: [r["server"].get(key) or 0.0 for r in results[(c, t)]] for t in tools}
            print(f"    {label:<22}" + "".join(f"{mean(vals[t]):>12.2f}" for t in tools))
        print("  the client:")
        for key, label in (("ttft_added_ms", "TTFT - server's, ms"),
                           ("tpot_added_ms", "TPOT - server ITL, ms"),
                           ("cpu_us_per_token", "client CPU us/token"),
                           ("errors", "failed requests")):
            vals = {t: [r[key] for r in results[(c, t)]] for t in tools}
            print(f"    {label:<22}" + "".join(f"{mean(vals[t]):>12.1f}" for t in tools))
        for t in tools:
            loads = ", ".join(f"{r['load_before']:.2f}->{r['load_after']:.2f}"
                              for r in results[(c, t)])
            print(f"    load average 1 min, {LABELS[t]:<10} runs: {loads}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None,
                    help="HF model dir (default: the ~120M random Llama in "
                         ".models/batching-llama, built on first use)")
    ap.add_argument("--concurrency", default="1,8")
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--input-len", type=int, default=64)
    ap.add_argument("--output-len", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=2,
                    help="rounds; the tools' order rotates each round (the load drifts)")
    ap.add_argument("--tools", default="harness,vllm,guidellm",
                    help=f"some of {','.join(TOOLS)}; harness-before: `harness bench` from "
                         "the checkout --harness-before (e.g. a git worktree of an older "
                         "commit), to see what changed")
    ap.add_argument("--harness-before", type=Path, default=None,
                    help="checkout for the harness-before tool")
    ap.add_argument("--server-args",
                    default="--enforce-eager --max-model-len 1024 --max-num-seqs 16 "
                            "--no-enable-prefix-caching",
                    help="extra vLLM server flags")
    ap.add_argument("--same-prompts", action="store_true",
                    help="harness and vllm bench send the same prompts (English-like, sized "
                         "with the model's tokenizer) instead of each its own; guidellm "
                         "keeps its synthetic ones")
    ap.add_argument("--json", type=Path, default=None, help="also write every run here")
    args = ap.parse_args()
    tools = [t.strip() for t in args.tools.split(",") if t.strip()]
    for t in tools:
        if t not in TOOLS:
            ap.error(f"--tools: unknown tool {t!r}; choose from {', '.join(TOOLS)}")
    if "harness-before" in tools and args.harness_before is None:
        ap.error("--tools harness-before needs --harness-before DIR (a checkout)")
    if "vllm" in tools and not have_vllm():
        ap.error("vllm bench serve needs .venv-vllm (make install-vllm)")
    if "guidellm" in tools and not have_guidellm():
        ap.error("guidellm needs .venv-guidellm: python3 -m venv .venv-guidellm && "
                 ".venv-guidellm/bin/pip install guidellm==0.8.1")
    if args.model is None:
        from harness.models.tiny_llama import BATCHING_SHAPE, build_tiny_llama

        args.model = str(build_tiny_llama(ROOT / ".models" / "batching-llama",
                                          shape=BATCHING_SHAPE))
    levels = [int(c) for c in args.concurrency.split(",")]
    settings = bench_settings({"model": args.model,
                               "engine": {"server_args": args.server_args.split()}})
    spec = vllm_spec(settings, 0, free_port())
    server = ManagedServer(spec)
    la = os.getloadavg()
    print(f"machine: {os.cpu_count()} CPUs, load average {la[0]:.2f} {la[1]:.2f} {la[2]:.2f}")
    print(f"starting vLLM server: {' '.join(spec.argv[1:])}", flush=True)
    asyncio.run(server.__aenter__())
    results: dict[tuple[int, str], list[dict[str, Any]]] = {}
    args.prompts_file = None
    try:
        with tempfile.TemporaryDirectory(prefix="agreement-") as tmp:
            work = Path(tmp)
            if args.same_prompts:
                args.prompts_file = write_prompts(work / "prompts.jsonl", args.model,
                                                  args.prompts, args.input_len,
                                                  args.output_len, 11)
            t0 = time.monotonic()
            run_tool("harness", server, spec.model or args.model, max(levels), max(levels),
                     args, work, "warmup")
            print(f"warmup run done in {time.monotonic() - t0:.0f} s", flush=True)
            for rnd in range(args.rounds):
                for c in levels:
                    k = (rnd + c) % len(tools)
                    for tool in tools[k:] + tools[:k]:
                        tag = f"{tool}-c{c}-r{rnd}"
                        load_before = os.getloadavg()[0]
                        before = server_page(server.base_url)
                        run = run_tool(tool, server, spec.model or args.model, c,
                                       args.prompts, args, work, tag)
                        seen = vllm_summary(before, server_page(server.base_url))
                        n = max(1, len(run.requests) + run.errors)
                        row = {"own": run.summary, "same": same_definition(run),
                               "server": {**seen,
                                          "prompt_tokens": (seen["server_prompt_tokens"]
                                                            or 0) / n,
                                          "generation_tokens":
                                              (seen["server_generation_tokens"] or 0) / n},
                               "ttft_added_ms": run.summary["ttft_ms_mean"]
                               - (seen["server_ttft_ms_mean"] or 0.0),
                               "tpot_added_ms": run.summary["tpot_ms_mean"]
                               - (seen["server_itl_ms_mean"] or 0.0),
                               "cpu_us_per_token": 1e6 * run.cpu_s / max(1, run.tokens),
                               "errors": run.errors, "load_before": load_before,
                               "load_after": os.getloadavg()[0]}
                        results.setdefault((c, tool), []).append(row)
                        own = run.summary
                        print(f"  round {rnd + 1} c={c} {LABELS[tool]:<10} "
                              f"out {own['output_tok_s']:7.1f} tok/s  TTFT "
                              f"{own['ttft_ms_mean']:7.1f} ms  TPOT {own['tpot_ms_mean']:6.2f} ms"
                              f"  server TTFT {seen['server_ttft_ms_mean'] or 0:6.1f} ms "
                              f"ITL {seen['server_itl_ms_mean'] or 0:5.2f} ms  "
                              f"load {load_before:.2f}->{row['load_after']:.2f}", flush=True)
    finally:
        server.stop()
    report(results, levels, tools, args)
    if args.json:
        args.json.write_text(json.dumps({f"c{c}/{t}": v for (c, t), v in results.items()},
                                        indent=1))
    la = os.getloadavg()
    print(f"\nload average after: {la[0]:.2f} {la[1]:.2f} {la[2]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
