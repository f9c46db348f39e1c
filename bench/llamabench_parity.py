"""Single-stream parity with llama.cpp's own llama-bench: paired pp512 / tg128.

llama-bench is built from the SAME source as the installed llama-cpp-python (its sdist's
vendor/llama.cpp, the wheel's CMake flags; `make llama-server` builds it, cached beside the
wheel) or taken from $LLAMA_BENCH. Each pair runs llama-bench (`-p 512 -n 128`, its own
defaults, the same model and threads) and `harness bench` (the in-process llamacpp backend,
its own defaults, a workload of llama-bench's two tests: pp512 = 512 prompt tokens and one
output token, tg128 = a 16-token prompt and 128 output tokens), alternating which goes
first. It prints every pair's figures and ratio (harness / llama-bench) with the load
average around each run, then the paired medians. Target: both medians within 3% of 1.

    .venv/bin/python bench/llamabench_parity.py [--pairs 4] [--model PATH] [--threads N]
        [--repetitions 3] [--engine KEY=VALUE ...] [--llama-bench-args '-fa on']

Harness prefill = input tokens / TTFT (the pp512 row's prefill_tok_s), decode = 1000 /
TPOT (the tg128 row's decode_tok_s); llama-bench's are its avg_ts. `--engine` passes
[engine] settings to the harness (e.g. flash_attn=true n_ubatch=256) to try a setting.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backends.llamacpp import default_threads  # noqa: E402
from harness.format import render  # noqa: E402
from harness.models.resolve import resolve_gguf  # noqa: E402
from harness.servers.llama_server import BENCH_ENV, build_tool  # noqa: E402

WORKLOAD = """description = "llama-bench's pp512 and tg128, for bench/llamabench_parity.py"
seed = 512
[defaults]
warmup_requests = 1
concurrency = 1
requests = 1
repetitions = {reps}
[[scenarios]]
name = "pp512"
input_tokens = 512
output_tokens = 1
[[scenarios]]
name = "tg128"
input_tokens = 16
output_tokens = 128
"""


def load() -> float:
    return os.getloadavg()[0]


def llama_bench_binary() -> Path:
    env = os.environ.get(BENCH_ENV)
    return Path(env) if env else build_tool("llama-bench")


def run_llama_bench(binary: Path, model: Path, threads: int, reps: int,
                    extra: list[str]) -> dict:
    argv = [str(binary), "-m", str(model), "-p", "512", "-n", "128", "-t", str(threads),
            "-r", str(reps), "-o", "json", *extra]
    before = load()
    out = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=1800)
    if out.returncode != 0:
        sys.exit(f"llama-bench failed ({out.returncode}): {out.stderr[-1500:]}")
    tests = json.loads(out.stdout)
    pp = next(t for t in tests if t["n_prompt"] == 512 and t["n_gen"] == 0)
    tg = next(t for t in tests if t["n_gen"] == 128 and t["n_prompt"] == 0)
    keys = ("n_threads", "n_batch", "n_ubatch", "type_k", "type_v", "flash_attn",
            "use_mmap", "no_op_offload", "no_host", "repack", "poll", "cpu_strict",
            "n_gpu_layers", "build_commit", "build_number", "backends")
    return {"pp": pp["avg_ts"], "tg": tg["avg_ts"], "load": (before, load()),
            "settings": {k: pp.get(k) for k in keys if k in pp}, "argv": shlex.join(argv)}


def run_harness(model: Path, threads: int, workload: Path, config: Path | None,
                out: Path) -> dict:
    argv = [sys.executable, "-m", "harness", "bench", "--backend", "llamacpp",
            "--model", str(model), "--n-threads", str(threads), "--workload", str(workload),
            "--output", str(out), "--power", "none", "--quiet"]
    if config is not None:
        argv += ["--config", str(config)]
    before = load()
    result = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=False,
                            timeout=1800)
    if result.returncode != 0:
        sys.exit(f"harness bench failed ({result.returncode}): {result.stderr[-1500:]}")
    (path,) = sorted(out.glob("*/*.csv"), key=lambda p: p.stat().st_mtime)[-1:]
    rows = {r["scenario"]: r for r in csv.DictReader(path.open())}
    pp, tg = rows["pp512"], rows["tg128"]
    return {"pp": float(pp["prefill_tok_s"]), "tg": float(tg["decode_tok_s"]),
            "pp_engine": float(pp["engine_prefill_tok_s"] or "nan"),
            "tg_engine": float(tg["engine_decode_tok_s"] or "nan"),
            "load": (before, load()), "settings": json.loads(pp["settings_json"]),
            "argv": shlex.join(argv[1:])}


def parse_engine(items: list[str]) -> dict:
    table = {}
    for item in items:
        key, _, value = item.partition("=")
        table[key] = tomllib.loads(f"v = {value}")["v"]
    return table


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pairs", type=int, default=4)
    p.add_argument("--model", default=None, help="GGUF (default: the default model)")
    p.add_argument("--threads", type=int, default=None,
                   help="threads for both (default: physical cores, llama-bench's default)")
    p.add_argument("--repetitions", type=int, default=3,
                   help="llama-bench -r and the harness's repetitions per pair")
    p.add_argument("--engine", nargs="*", default=[],
                   help="harness [engine] settings KEY=VALUE (TOML values)")
    p.add_argument("--llama-bench-args", default="", help="extra llama-bench flags")
    args = p.parse_args()
    model = resolve_gguf(args.model)
    threads = args.threads or default_threads()
    binary = llama_bench_binary()
    pairs = []
    with tempfile.TemporaryDirectory() as tmp:
        workload = Path(tmp) / "parity.toml"
        workload.write_text(WORKLOAD.format(reps=args.repetitions))
        config = None
        if args.engine:
            config = Path(tmp) / "engine.toml"
            lines = ["[engine]"] + [f"{k} = {json.dumps(v)}" for k, v in
                                    parse_engine(args.engine).items()]
            config.write_text("\n".join(lines) + "\n")
        for i in range(args.pairs):
            order = ("llama-bench", "harness") if i % 2 == 0 else ("harness", "llama-bench")
            got = {}
            for who in order:
                if who == "llama-bench":
                    got[who] = run_llama_bench(binary, model, threads, args.repetitions,
                                               shlex.split(args.llama_bench_args))
                else:
                    got[who] = run_harness(model, threads, workload, config,
                                           Path(tmp) / f"out{i}")
            pairs.append((order[0], got["llama-bench"], got["harness"]))
            lb, h = got["llama-bench"], got["harness"]
            print(f"pair {i + 1}/{args.pairs} ({order[0]} first): pp {h['pp']:.1f} / "
                  f"{lb['pp']:.1f} = {h['pp'] / lb['pp']:.3f}, tg {h['tg']:.2f} / "
                  f"{lb['tg']:.2f} = {h['tg'] / lb['tg']:.3f}", file=sys.stderr, flush=True)
    rows = []
    for i, (first, lb, h) in enumerate(pairs):
        rows.append([i + 1, first, f"{lb['pp']:.1f}", f"{h['pp']:.1f}",
                     f"{h['pp'] / lb['pp']:.3f}", f"{lb['tg']:.2f}", f"{h['tg']:.2f}",
                     f"{h['tg'] / lb['tg']:.3f}", f"{h['pp_engine']:.1f}",
                     f"{h['tg_engine']:.2f}",
                     f"{min(lb['load'] + h['load']):.2f}-{max(lb['load'] + h['load']):.2f}"])
    first_lb, first_h = pairs[0][1], pairs[0][2]
    print(f"model {model.name} · threads {threads} · llama-bench {first_lb['settings']}")
    print(f"harness settings: { {k: v for k, v in first_h['settings'].items() if k not in ('model_desc',)} }")
    print(f"llama-bench: {first_lb['argv']}")
    print(f"harness:     {first_h['argv']}")
    print(render(["pair", "first", "llama-bench pp512", "harness pp512", "ratio",
                  "llama-bench tg128", "harness tg128", "ratio", "harness engine pp",
                  "harness engine tg", "load avg 1m"], rows))
    pp = statistics.median(h["pp"] / lb["pp"] for _, lb, h in pairs)
    tg = statistics.median(h["tg"] / lb["tg"] for _, lb, h in pairs)
    loads = [x for _, lb, h in pairs for x in (*lb["load"], *h["load"])]
    print(f"paired median ratio (harness / llama-bench): prefill {pp:.3f}, decode {tg:.3f} "
          f"(target within 3%: {'met' if abs(pp - 1) <= 0.03 and abs(tg - 1) <= 0.03 else 'NOT met'})")
    print(f"load average (1 min) over the runs: {min(loads):.2f}-{max(loads):.2f} on "
          f"{os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
