"""How much time and CPU the client adds, next to `vllm bench serve` and guidellm, against
a server whose true timing is known.

Starts the project's fake SSE server (`harness/servers/fake.py`: first token --ttft-ms
after a request arrives, then one token every --itl-ms, --output-len tokens; it keeps the
time it wrote every chunk) in its own process, then for each number of streams runs, one
after another and as a user would:
- `harness bench --backend openai` (closed loop, the N streams started together, as it
  always runs them), without and with a client-side tokenizer (`--tokenizer`);
- `vllm bench serve` (.venv-vllm; random dataset, `--max-concurrency N`, every prompt
  offered at once: N streams started together);
- guidellm (.venv-guidellm; concurrent profile, N streams);
each with N x --requests-per-stream requests, and prints per tool:
- TTFT added: the client's TTFT minus the server's own (receipt → first write), p50/p99;
- ITL p99 (per token) beside the p99 of the server's true gaps between writes;
- throughput as a fraction of what the server could give: N x tokens per request over
  one request's true duration (TTFT + (tokens - 1) x ITL);
- client CPU (user + system, the tool's whole process tree, sampled every 50 ms) per
  streamed token and as % of one core, over the tool's own measured window (first send →
  last token), so start-up and imports do not count.

Nothing is asserted; the machine's load average is printed with every run.
  .venv/bin/python bench/client_overhead.py
  .venv/bin/python bench/client_overhead.py --streams 64 --tools harness,vllm --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from peers import (  # noqa: E402
    HARNESS_PYTHON,
    ROOT,
    ToolRun,
    guidellm_argv,
    harness_argv,
    have_guidellm,
    have_vllm,
    p,
    run_guidellm,
    run_harness,
    run_vllm_bench,
    truth,
    vllm_bench_argv,
    write_workload,
)

TOOLS = ("harness", "harness+tokenizer", "vllm", "guidellm", "harness-before")
DEFAULT_TOKENIZER = ROOT / ".models" / "gemma-3-270m-Q4_K_M.gguf"
HF_TOKENIZER = ROOT / ".models" / "tiny-llama"  # vllm bench and guidellm build prompts


def start_server(ttft_ms: float, itl_ms: float) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, str(Path(__file__).with_name("peers.py")),
                             "serve", str(ttft_ms), str(itl_ms)],
                            stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if not line.startswith("listening on "):
        proc.kill()
        raise SystemExit(f"the fake server did not start: {line!r}")
    return proc, line.removeprefix("listening on ")


def stamps(base_url: str) -> dict:
    """The server's write times since the last call (and forget them)."""
    with urllib.request.urlopen(base_url.removesuffix("/v1") + "/stats", timeout=30) as r:
        return json.loads(r.read())


def run_tool(tool: str, url: str, streams: int, args: argparse.Namespace, work: Path,
             tag: str) -> ToolRun:
    requests = streams * args.requests_per_stream
    root = url.removesuffix("/v1")
    if tool.startswith("harness"):
        out = work / f"harness-{tag}"
        workload = write_workload(work / f"w-{tag}.toml", args.input_len, args.output_len,
                                  requests, warmup=0, seed=7,
                                  description="client_overhead: fixed lengths")
        extra = ["--tokenizer", str(args.tokenizer)] if tool.endswith("tokenizer") else []
        root = args.harness_before if tool == "harness-before" else ROOT
        run = run_harness(harness_argv(args.harness_python, url, "fake-model", workload,
                                       streams, requests, out, extra, root), out, cwd=root)
        run.tool = tool
        return run
    if tool == "vllm":
        name = f"vllm-{tag}.json"
        return run_vllm_bench(vllm_bench_argv(root, "fake-model", str(HF_TOKENIZER),
                                              args.input_len, args.output_len, requests,
                                              streams, 0, 7, work, name), work / name)
    result = work / f"guidellm-{tag}.json"
    return run_guidellm(guidellm_argv(root, "fake-model", str(HF_TOKENIZER), args.input_len,
                                      args.output_len, requests, streams, 7, result), result)


def report(run: ToolRun, server: dict[str, list[float]], streams: int,
           args: argparse.Namespace, load: float) -> str:
    ttft = [r.ttft_ms for r in run.requests]
    itl = [g for r in run.requests for g in r.itl_ms]
    start, end = run.window_s
    wall = end - start
    request_s = (args.ttft_ms + (args.output_len - 1) * args.itl_ms) / 1000
    possible = streams * args.output_len / request_s
    share = run.tokens / wall / possible if wall > 0 else float("nan")
    added50 = p(ttft, 50) - p(server["ttft_ms"], 50)
    added99 = p(ttft, 99) - p(server["ttft_ms"], 99)
    itl99 = f"{p(itl, 99):7.2f}" if itl else "    n/a"
    cpu_us = 1e6 * run.cpu_s / run.tokens if run.tokens else float("nan")
    return (f"  {run.tool:<18} {len(run.requests):5d} {run.errors:3d}  {added50:7.1f} "
            f"{added99:7.1f}   {p(server['ttft_ms'], 50) - args.ttft_ms:6.1f} "
            f"{p(server['ttft_ms'], 99) - args.ttft_ms:6.1f}   {itl99} "
            f"{p(server['gap_ms'], 99):7.2f}   {100 * share:6.1f}%  {cpu_us:7.0f} "
            f"{100 * run.cpu_s / wall if wall > 0 else 0:6.0f}%   {load:5.2f}")


HEADER = ("  tool                reqs err  TTFT added ms    server late ms   ITL p99 ms      "
          "of possible  client CPU      load\n"
          "                                  p50     p99      p50    p99   client  server"
          "   tok/s       us/tok  %core    1 min")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--streams", default="1,16,64,256")
    ap.add_argument("--requests-per-stream", type=int, default=4)
    ap.add_argument("--ttft-ms", type=float, default=50.0)
    ap.add_argument("--itl-ms", type=float, default=10.0)
    ap.add_argument("--input-len", type=int, default=16)
    ap.add_argument("--output-len", type=int, default=64)
    ap.add_argument("--tools", default=",".join(TOOLS[:4]),
                    help=f"some of {','.join(TOOLS)} (those not installed are skipped); "
                         "harness-before: `harness bench` from the checkout --harness-before")
    ap.add_argument("--rounds", type=int, default=1,
                    help="repeat every stream count; the tools' order flips each round")
    ap.add_argument("--tokenizer", type=Path, default=DEFAULT_TOKENIZER,
                    help="the harness's --tokenizer for harness+tokenizer (a GGUF or HF dir)")
    ap.add_argument("--harness-python", default=str(HARNESS_PYTHON if HARNESS_PYTHON.exists()
                                                    else sys.executable))
    ap.add_argument("--harness-before", type=Path, default=None,
                    help="a checkout (e.g. a git worktree of an older commit) whose "
                         "`harness bench` the harness-before tool runs, for before/after")
    args = ap.parse_args()
    tools = [t.strip() for t in args.tools.split(",") if t.strip()]
    for t in tools:
        if t not in TOOLS:
            ap.error(f"--tools: unknown tool {t!r}; choose from {', '.join(TOOLS)}")
    if "harness-before" in tools and args.harness_before is None:
        ap.error("--tools harness-before needs --harness-before DIR (a checkout)")
    skipped = []
    if "vllm" in tools and not have_vllm():
        skipped.append("vllm (no .venv-vllm: make install-vllm)")
    if "guidellm" in tools and not have_guidellm():
        skipped.append("guidellm (no .venv-guidellm: python3 -m venv .venv-guidellm && "
                       ".venv-guidellm/bin/pip install guidellm==0.8.1)")
    if "harness+tokenizer" in tools and not args.tokenizer.exists():
        skipped.append(f"harness+tokenizer (no {args.tokenizer}; --tokenizer PATH)")
    if {"vllm", "guidellm"} & set(tools) and not (HF_TOKENIZER / "tokenizer.json").exists():
        skipped.append(f"vllm, guidellm (their prompts need the tokenizer in {HF_TOKENIZER}: "
                       ".venv-vllm/bin/python -m harness.models.tiny_llama .models/tiny-llama)")
        tools = [t for t in tools if t not in ("vllm", "guidellm")]
    tools = [t for t in tools if not any(s.startswith(t + " ") for s in skipped)]
    if skipped:
        print("skipped: " + "; ".join(skipped))
    levels = [int(s) for s in args.streams.split(",")]
    la = os.getloadavg()
    print(f"machine: {os.cpu_count()} CPUs, load average {la[0]:.2f} {la[1]:.2f} {la[2]:.2f}")
    print(f"fake server: TTFT {args.ttft_ms:g} ms, one token per {args.itl_ms:g} ms, "
          f"{args.output_len} tokens per request, {args.requests_per_stream} requests per "
          "stream, streams started together, no warmup")
    proc, url = start_server(args.ttft_ms, args.itl_ms)
    try:
        with tempfile.TemporaryDirectory(prefix="client-overhead-") as tmp:
            work = Path(tmp)
            for streams in levels:
                request_s = (args.ttft_ms + (args.output_len - 1) * args.itl_ms) / 1000
                print(f"\n{streams} stream(s): the server can give "
                      f"{streams * args.output_len / request_s:,.0f} tok/s")
                print(HEADER)
                for rnd in range(args.rounds):
                    order = tools if rnd % 2 == 0 else tools[::-1]
                    for tool in order:
                        stamps(url)  # forget earlier runs
                        tag = f"{tool.replace('+', '-')}-{streams}-{rnd}"
                        run = run_tool(tool, url, streams, args, work, tag)
                        server = truth(stamps(url), run.window_s)
                        print(report(run, server, streams, args, os.getloadavg()[0]),
                              flush=True)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    la = os.getloadavg()
    print(f"\nload average after: {la[0]:.2f} {la[1]:.2f} {la[2]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
