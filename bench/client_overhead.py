"""How much timing error the `openai` client path adds, and how fast it can stream.

Starts the project's fast local SSE server (`harness.servers.fake`) in a separate process
with a fixed TTFT and inter-token gap, then drives it through the same code the harness
uses (`OpenAIBackend.stream` via `harness.runner.runner.measure_request`) and prints:

1. timing error at 1 and 64 (by default) concurrent streams in a steady state (stream
   starts spread out, connections warm): measured − configured TTFT and ITL (p50/p99),
   split into the client's cost of sending a request (send → the server's receipt), the
   server's own timer lateness (it stamps when it wrote each chunk; perf_counter_ns is
   one clock for the whole machine) and the delay the client adds on receipt (arrival
   in the client − the server's write of the same chunk);
2. the highest streamed tokens/s one client process sustains at 1, 64 and 256
   concurrent streams (server with zero TTFT and gap, so the client is the bottleneck;
   the server shares the machine, so this is a lower bound).

Speeds are printed, never asserted. Example:
  .venv/bin/python bench/client_overhead.py
  .venv/bin/python bench/client_overhead.py --tokens-per-chunk 4 --streams 1,64,256
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from backends.base import Request
from backends.openai.backend import OpenAIBackend
from harness.metrics import percentile
from harness.runner.load import measure_request


def start_server(ttft_ms: float, itl_ms: float, tokens_per_chunk: int) -> tuple[Any, str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness.servers.fake", "--port", "0", "--ttft-ms",
         str(ttft_ms), "--itl-ms", str(itl_ms), "--tokens-per-chunk", str(tokens_per_chunk)],
        stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parent.parent)
    line = proc.stdout.readline().strip()
    if not line.startswith("listening on "):
        proc.kill()
        raise SystemExit(f"the SSE server did not start: {line!r}")
    return proc, line.removeprefix("listening on ")


def stop_server(proc: Any) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()


def fetch_stats(base_url: str) -> dict:
    with urllib.request.urlopen(base_url.removesuffix("/v1") + "/stats") as resp:
        return json.loads(resp.read())


def pct(values: list[float]) -> str:
    if not values:
        return "n/a"
    return f"p50 {percentile(values, 50):7.3f}  p99 {percentile(values, 99):7.3f}"


async def run_streams(backend: OpenAIBackend, streams: int, tokens: int, tag: str,
                      logprobs: bool) -> list:
    extra = {"fake_logprobs": True} if logprobs else {}
    requests = [Request(request_id=f"{tag}-{i}", prompt="hello", input_tokens=1,
                        max_output_tokens=tokens, extra={**extra, "fake_tag": f"{tag}-{i}"})
                for i in range(streams)]
    return await asyncio.gather(*(measure_request(backend, r, tag, 0, 120.0)
                                  for r in requests))


async def steady_streams(backend: OpenAIBackend, streams: int, tokens: int, rounds: int,
                         request_s: float, tag: str, logprobs: bool) -> list:
    """`streams` workers, each sending `rounds` requests one after another, their starts
    spread over one request's duration (a steady state, not a synchronized burst); the
    first round of each worker (a new connection) is not returned."""
    extra = {"fake_logprobs": True} if logprobs else {}

    async def worker(i: int) -> list:
        await asyncio.sleep(request_s * i / streams)
        out = []
        for r in range(rounds):
            rid = f"{tag}-{i}-{r}"
            req = Request(request_id=rid, prompt="hello", input_tokens=1,
                          max_output_tokens=tokens, extra={**extra, "fake_tag": rid})
            out.append(await measure_request(backend, req, tag, r, 120.0))
        return out[1:]

    per_worker = await asyncio.gather(*(worker(i) for i in range(streams)))
    return [r for rs in per_worker for r in rs]


async def timing_error(args: argparse.Namespace) -> None:
    k = args.tokens_per_chunk
    proc, url = start_server(args.ttft_ms, args.itl_ms, k)
    try:
        backend = OpenAIBackend(model="fake-model", base_url=url,
                                http_client=args.http_client)
        await backend.open()
        await run_streams(backend, 4, 8, "warm", k > 1)
        fetch_stats(url)
        request_s = (args.ttft_ms + args.tokens * args.itl_ms) / 1000
        print(f"1) timing error: server TTFT {args.ttft_ms:g} ms, ITL {args.itl_ms:g} ms, "
              f"{k} token(s)/chunk, {args.tokens} tokens/request, {args.rounds - 1} measured "
              "requests per stream, stream starts spread over one request (all in ms)")
        for streams in args.error_streams:
            cpu0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
            records = await steady_streams(backend, streams, args.tokens, args.rounds,
                                           request_s, f"e{streams}", k > 1)
            cpu1, wall = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter() - t0
            cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
            stats = fetch_stats(url)
            ttft_err, itl_err, client_delay, server_late, send_cost = [], [], [], [], []
            errors = sum(1 for r in records if not r.ok)
            gap_ns = args.itl_ms * 1e6 * k
            for r in records:
                if not r.ok:
                    continue
                ttft_err.append(r.ttft_ms - args.ttft_ms)
                gaps = r.itl_ms[k - 1:]  # the first chunk's extra tokens are zero gaps
                itl_err.extend(g - args.itl_ms for g in gaps)
                s = stats.get(r.request_id)
                if s:
                    send_cost.append((s["recv_ns"] - r.send_ns) / 1e6)
                    first = s["recv_ns"] + args.ttft_ms * 1e6
                    for i, (w, t) in enumerate(zip(s["write_ns"], r.event_ns)):
                        client_delay.append((t - w) / 1e6)
                        server_late.append((w - (first + i * gap_ns)) / 1e6)
            print(f"  {streams:4d} streams: {len(records)} requests, {errors} errors, "
                  f"client CPU {100 * cpu / wall:.0f}% of one core, "
                  f"load average {os.getloadavg()[0]:.2f}")
            print(f"      TTFT measured-configured    {pct(ttft_err)}")
            print(f"      ITL  measured-configured    {pct(itl_err)}")
            print(f"      of which: client send→server receipt  {pct(send_cost)}")
            print(f"                server lateness (its timer)  {pct(server_late)}")
            print(f"                server write→client arrival  {pct(client_delay)}")
        await backend.close()
    finally:
        stop_server(proc)


async def throughput(args: argparse.Namespace) -> None:
    k = args.tokens_per_chunk
    proc, url = start_server(0.0, 0.0, k)
    try:
        backend = OpenAIBackend(model="fake-model", base_url=url,
                                http_client=args.http_client)
        await backend.open()
        await run_streams(backend, 4, 8, "warm", k > 1)
        print(f"2) streamed tokens/s (server: no TTFT, no gap, {k} token(s)/chunk)")
        for streams in args.streams:
            tokens = max(args.min_tokens_per_stream, args.total_tokens // streams)
            cpu0 = resource.getrusage(resource.RUSAGE_SELF)
            t0 = time.perf_counter()
            records = await run_streams(backend, streams, tokens, f"t{streams}", k > 1)
            wall = time.perf_counter() - t0
            cpu1 = resource.getrusage(resource.RUSAGE_SELF)
            cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
            fetch_stats(url)
            ok = [r for r in records if r.ok]
            total = sum(sum(r.event_tokens) for r in ok)
            chunks = sum(len(r.event_ns) for r in ok)
            print(f"  {streams:4d} streams: {total / wall:9.0f} tokens/s, "
                  f"{chunks / wall:8.0f} chunks/s, {total} tokens in {wall:.2f} s, "
                  f"client CPU {100 * cpu / wall:3.0f}% of one core, "
                  f"{len(records) - len(ok)} errors")
        await backend.close()
    finally:
        stop_server(proc)


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ttft-ms", type=float, default=50.0)
    p.add_argument("--itl-ms", type=float, default=10.0)
    p.add_argument("--tokens", type=int, default=100, help="tokens per stream (timing part)")
    p.add_argument("--rounds", type=int, default=3,
                   help="requests per stream in the timing part (the first is not counted)")
    p.add_argument("--tokens-per-chunk", type=int, default=1)
    p.add_argument("--error-streams", type=_ints, default=[1, 64])
    p.add_argument("--streams", type=_ints, default=[1, 64, 256])
    p.add_argument("--total-tokens", type=int, default=40_000,
                   help="tokens per throughput point, split over the streams")
    p.add_argument("--min-tokens-per-stream", type=int, default=200)
    p.add_argument("--http-client", default="auto", choices=["auto", "aiohttp", "httpx"],
                   help="the openai client's transport (auto: aiohttp when installed)")
    p.add_argument("--skip-timing", action="store_true", help="only the tokens/s part")
    args = p.parse_args()
    load = os.getloadavg()
    print(f"machine: {os.cpu_count()} CPUs, load average {load[0]:.2f} {load[1]:.2f} "
          f"{load[2]:.2f}; python {sys.version.split()[0]}")
    print(f"openai client transport: {args.http_client}")
    if not args.skip_timing:
        asyncio.run(timing_error(args))
    asyncio.run(throughput(args))
    load = os.getloadavg()
    print(f"load average after: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
