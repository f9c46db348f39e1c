"""Do the harness's wall-clock prefill and decode rates agree with llama.cpp's own timings?

Runs a workload (default: `default`) through the real llama.cpp backend and runner and
prints, per scenario, the harness's figures (prefill = Σ input tokens / Σ TTFT,
decode = 1000 / mean TPOT) beside the engine's (`llama_perf_context`: prompt-eval and
eval token counts and times) with their ratio, and the load average before and after.
Target: within 5% on a quiet machine.

    .venv/bin/python bench/engine_agreement.py [--workload default] [--model PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backends.llamacpp import LlamaCppBackend  # noqa: E402
from harness.format import render  # noqa: E402
from harness.power import PowerSession  # noqa: E402
from harness.results.files import RunFiles  # noqa: E402
from harness.results.machine import fingerprint  # noqa: E402
from harness.runner.runner import RunOptions, RunState, new_run_id, run_workload  # noqa: E402
from workloads.spec import (
    context_tokens,  # noqa: E402
    load_workload,  # noqa: E402
)


def ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.3f}" if a and b else "-"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", default="default")
    parser.add_argument("--model", default=None)
    parser.add_argument("--n-threads", type=int, default=None)
    args = parser.parse_args()
    workload = load_workload(args.workload)
    backend = LlamaCppBackend(model=args.model, n_ctx=context_tokens(workload),
                              n_threads=args.n_threads)
    info = await backend.open()
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        files = RunFiles(Path(tmp), fingerprint(), new_run_id(), workload.name)
        state = RunState()
        await run_workload(backend, info, workload, files, fingerprint(), "agreement",
                           PowerSession(), RunOptions(quiet=True), state)
        files.close()
    await backend.close()
    rows = []
    for r in state.rows:
        rows.append([r["scenario"], r["prefill_tok_s"], r["engine_prefill_tok_s"],
                     ratio(r["prefill_tok_s"], r["engine_prefill_tok_s"]),
                     r["decode_tok_s"], r["engine_decode_tok_s"],
                     ratio(r["decode_tok_s"], r["engine_decode_tok_s"])])
    print(f"model {info.model} [{info.quant}] · llama.cpp {info.engine_version} · "
          f"threads {info.settings.get('n_threads')} · workload {workload.name}")
    print(render(["scenario", "harness prefill tok/s", "engine prefill tok/s", "ratio",
                  "harness decode tok/s", "engine decode tok/s", "ratio"], rows))
    print(f"load average (1 min): before {load_before:.2f}, after {os.getloadavg()[0]:.2f} "
          f"on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    asyncio.run(main())
