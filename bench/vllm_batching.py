"""vLLM's batching gain on this machine: the same closed-loop workload at concurrency 1
and 8 against a managed vLLM server, output throughput of each and their ratio.

The figure moved here from tests/integration/test_vllm_serve.py, which asserted c=8/c=1
> 2 and so failed on a slower machine (1.65 on a 2-core AMD EPYC); the test now checks
only that c=8 had 8 requests in flight. Nothing is asserted here: the script prints the
figures with the load average, which decides how far they can be trusted.

Model: the ~120M-parameter random Llama (`BATCHING_SHAPE` in harness/models/tiny_llama.py,
built once into .models/batching-llama), whose decode step is compute, so concurrent
streams can show batching even on a small CPU; or --model DIR. `--tiny` uses the 2.2M
model of the tests instead (bound by the serving stack's per-token overhead, so its gain
is small).

  .venv-vllm/bin/python bench/vllm_batching.py
  .venv-vllm/bin/python bench/vllm_batching.py --concurrency 1,4,8 --requests 32 --rounds 2
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from statistics import mean

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from harness.models.tiny_llama import BATCHING_SHAPE, build_tiny_llama  # noqa: E402

ENV = {"VLLM_CPU_KVCACHE_SPACE": "1", "HF_HUB_OFFLINE": "1",
       "VLLM_CACHE_ROOT": str(ROOT / ".cache" / "vllm"),
       "TORCHINDUCTOR_CACHE_DIR": str(ROOT / ".cache" / "inductor")}
WORKLOAD = """\
description = "vLLM batching gain: {requests} requests of 48 input and {out} output tokens"
seed = 7

[defaults]
warmup_requests = 1
concurrency = [{levels}]

[[scenarios]]
name = "decode"
input_tokens = 48
output_tokens = {out}
requests = {requests}
"""


def run_round(model: str, levels: list[int], requests: int, out_tokens: int,
              tmp: Path) -> dict[int, dict[str, str]]:
    """One `harness bench --server vllm` run over every concurrency; its rows by c."""
    workload = tmp / "batching.toml"
    workload.write_text(WORKLOAD.format(requests=requests, out=out_tokens,
                                        levels=", ".join(map(str, levels))))
    out = Path(tempfile.mkdtemp(dir=tmp))
    proc = subprocess.run(
        [sys.executable, "-m", "harness", "bench", "--model", model, "--workload",
         str(workload), "--output", str(out), "--server", "vllm", "--max-model-len", "512",
         "--enforce-eager", "--max-num-seqs", "16", "--quiet", "--power", "none"],
        cwd=ROOT, capture_output=True, text=True, env={**os.environ, **ENV}, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"harness bench failed (exit {proc.returncode}):\n"
                         f"{proc.stderr[-2000:]}")
    (csv_path,) = out.glob("*/*.csv")
    with open(csv_path, newline="") as f:
        return {int(r["concurrency"]): r for r in csv.DictReader(f)}


def main(argv: list[str] | None = None) -> int:
    """Run the rounds and print throughput per concurrency and the gain over c=1."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", help="a Hugging Face model folder (default: the batching Llama)")
    p.add_argument("--tiny", action="store_true", help="the 2.2M tiny Llama of the tests")
    p.add_argument("--concurrency", default="1,8", help="comma-separated, first is the base")
    p.add_argument("--requests", type=int, default=16)
    p.add_argument("--output-tokens", type=int, default=64)
    p.add_argument("--rounds", type=int, default=1)
    args = p.parse_args(argv)
    try:
        levels = [int(c) for c in args.concurrency.split(",")]
    except ValueError:
        p.error(f"--concurrency {args.concurrency!r}: give integers, e.g. 1,8")
    try:
        import vllm  # noqa: F401 - only to say where vLLM lives
    except ImportError:
        p.error("vLLM is not installed here: run with .venv-vllm/bin/python "
                "(make install-vllm)")
    model = args.model or str(build_tiny_llama(
        ROOT / ".models" / ("tiny-llama" if args.tiny else "batching-llama"),
        **({} if args.tiny else {"shape": BATCHING_SHAPE})))
    throughput: dict[int, list[float]] = {c: [] for c in levels}
    peaks: dict[int, list[str]] = {c: [] for c in levels}
    with tempfile.TemporaryDirectory(prefix="vllm-batching-") as tmp:
        for i in range(args.rounds):
            rows = run_round(model, levels, args.requests, args.output_tokens, Path(tmp))
            for c in levels:
                throughput[c].append(float(rows[c]["output_throughput_tok_s"]))
                peaks[c].append(rows[c].get("concurrency_achieved_peak", "?"))
            print(f"round {i + 1}/{args.rounds}: " + ", ".join(
                f"c={c} {throughput[c][-1]:.1f} tok/s" for c in levels), flush=True)
    base = mean(throughput[levels[0]])
    print(f"\nmodel {model}; {args.requests} requests of 48 in / {args.output_tokens} out "
          f"tokens per level, {args.rounds} round(s); load average {os.getloadavg()[0]:.2f}")
    print(f"{'c':>4} {'output tok/s':>13} {'x c=' + str(levels[0]):>8}  in flight (peak)")
    for c in levels:
        tok_s = mean(throughput[c])
        print(f"{c:>4} {tok_s:>13.1f} {tok_s / base:>8.2f}  {', '.join(peaks[c])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
