"""Soak: run `harness bench` for a bounded time against the fake OpenAI server's fault
modes with a mix of healthy and faulty requests, and show that the harness's memory stays
flat and that it leaks no file descriptors.

It starts `harness/servers/fake.py` in its own process (`--mode MIX`), then `python -m
harness bench --backend openai` on a workload of back-to-back timed scenarios (so the run
looks like a long unattended sweep), samples the bench process's RSS, open file descriptors and
threads twice a second with psutil, and prints them with the request and error counts.

    .venv/bin/python bench/soak.py --seconds 60
    .venv/bin/python bench/soak.py --seconds 600 --concurrency 16 --check

Memory is compared between the end of the first scenario (warm: imports done, pools
filled) and the end of the run; `--check` exits 1 when RSS grew by more than
--max-growth-mb or the descriptor count by more than --max-fd-growth.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MIX = ("healthy+healthy+healthy+healthy+healthy+healthy+http500+cut+stall+"
               "invalid_json+http429_retry_after+reset+sse_error+malformed_sse")


def start_fault_server(mix: str) -> tuple[subprocess.Popen[str], str]:
    """The fake OpenAI server answering model `m` in the fault modes of `mix`, cycled;
    returns the process and its base URL."""
    proc = subprocess.Popen([sys.executable, "-m", "harness.servers.fake", "--port", "0",
                             "--model", "m", "--ttft-ms", "2", "--itl-ms", "1", "--mode",
                             mix], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if not line.startswith("listening on "):
        proc.kill()
        raise SystemExit(f"fault server did not start: {line!r}")
    return proc, line.removeprefix("listening on ")


def write_workload(path: Path, seconds: float, scenario_s: float, concurrency: int,
                   output_tokens: int) -> int:
    n = max(1, round(seconds / scenario_s))
    text = "".join(
        f'[[scenarios]]\nname = "soak{i:03d}"\ninput_tokens = 32\n'
        f"output_tokens = {output_tokens}\nduration_s = {seconds / n:.3f}\n"
        f"concurrency = {concurrency}\nwarmup_requests = 0\n\n" for i in range(n))
    path.write_text(text)
    return n


def sample(proc: psutil.Process) -> dict[str, float] | None:
    try:
        with proc.oneshot():
            return {"t_s": time.monotonic(), "rss_mb": proc.memory_info().rss / 2**20,
                    "fds": proc.num_fds(), "threads": proc.num_threads()}
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=60.0, help="length of the soak")
    p.add_argument("--scenario-seconds", type=float, default=10.0,
                   help="length of each timed scenario")
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--output-tokens", type=int, default=16)
    p.add_argument("--mix", default=DEFAULT_MIX, help="fault modes cycled over requests")
    p.add_argument("--timeout", type=float, default=2.0)
    p.add_argument("--stall-timeout", type=float, default=0.5)
    p.add_argument("--check", action="store_true", help="exit 1 on growth past the limits")
    p.add_argument("--max-growth-mb", type=float, default=20.0)
    p.add_argument("--max-fd-growth", type=int, default=8)
    args = p.parse_args(argv)

    server, url = start_fault_server(args.mix)
    tmp = Path(tempfile.mkdtemp(prefix="harness-soak-"))
    n_scen = write_workload(tmp / "soak.toml", args.seconds, args.scenario_seconds,
                            args.concurrency, args.output_tokens)
    out = tmp / "out"
    cmd = [sys.executable, "-m", "harness", "bench", "--backend", "openai", "--base-url",
           url, "--model", "m", "--workload", str(tmp / "soak.toml"),
           "--output", str(out), "--power", "none", "--quiet", "--timeout",
           str(args.timeout), "--stall-timeout", str(args.stall_timeout)]
    samples: list[dict[str, float]] = []
    scenario_end_idx: list[int] = []  # sample index when each scenario row appeared
    try:
        t0 = time.monotonic()
        bench = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)
        ps = psutil.Process(bench.pid)
        rows_seen = 0
        while bench.poll() is None:
            s = sample(ps)
            if s is not None:
                samples.append(s)
            csvs = [c for c in out.glob("*/*.csv") if not c.name.startswith(".")]
            if csvs:
                with open(csvs[0], newline="") as f:
                    n = sum(1 for _ in csv.DictReader(f))
                if n > rows_seen:
                    scenario_end_idx.extend([len(samples) - 1] * (n - rows_seen))
                    rows_seen = n
            time.sleep(0.5)
        _, stderr = bench.communicate()
        wall_s = time.monotonic() - t0
    finally:
        server.terminate()
        server.wait(10)
    if bench.returncode != 0:
        print(stderr, file=sys.stderr)
        raise SystemExit(f"harness bench exited with {bench.returncode}")

    (csv_path,) = [c for c in out.glob("*/*.csv") if not c.name.startswith(".")]
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    (jsonl,) = list(out.glob("*/*.requests.jsonl"))
    records = [json.loads(line) for line in jsonl.read_text().splitlines()]
    kinds = Counter(r["error"] or "ok" for r in records)
    requests = sum(int(r["requests"]) for r in rows)
    errors = sum(int(r["errors"]) for r in rows)

    # The run proper ends when the last row is written; after it the CLI prints its
    # summary and break-even hint (imports pandas), which is not the soak's concern.
    last = scenario_end_idx[-1] if scenario_end_idx else len(samples) - 1
    run = samples[: max(1, last)]
    warm = samples[scenario_end_idx[0]] if len(scenario_end_idx) > 1 else run[0]
    end = run[-1]
    half = [s for s in run if s["t_s"] >= run[len(run) // 2]["t_s"]]
    slope = _slope_mb_per_min(half)
    print(f"soak: {wall_s:.0f} s, {n_scen} scenarios x {args.scenario_seconds:g} s, "
          f"concurrency {args.concurrency}, {args.output_tokens} output tokens, mix "
          f"{args.mix}")
    print(f"requests: {requests} ({requests / wall_s:.1f}/s), lines in JSONL "
          f"{len(records)}, errors {errors}: "
          + ", ".join(f"{k}={v}" for k, v in sorted(kinds.items())))
    print(f"rss_mb: start {samples[0]['rss_mb']:.1f}, after first scenario "
          f"{warm['rss_mb']:.1f}, end of last scenario {end['rss_mb']:.1f}, max "
          f"{max(s['rss_mb'] for s in run):.1f} (at exit {samples[-1]['rss_mb']:.1f}); "
          f"growth after warm-up "
          f"{end['rss_mb'] - warm['rss_mb']:+.1f} MB; second-half slope {slope:+.2f} MB/min")
    fds = [int(s["fds"]) for s in run]
    print(f"open fds: after first scenario {int(warm['fds'])}, end {fds[-1]}, min {min(fds)}, "
          f"max {max(fds)}, median {statistics.median(fds):g}; threads end "
          f"{int(end['threads'])}, max {max(int(s['threads']) for s in run)}")
    print("rss_mb per scenario end: " + " ".join(f"{samples[i]['rss_mb']:.1f}"
                                               for i in scenario_end_idx))
    print("fds per scenario end:    " + " ".join(f"{int(samples[i]['fds'])}"
                                               for i in scenario_end_idx))
    ok = (len(records) == requests and end["rss_mb"] - warm["rss_mb"] <= args.max_growth_mb
          and fds[-1] - int(warm["fds"]) <= args.max_fd_growth)
    print(f"verdict: {'flat' if ok else 'GROWTH'} (limits: +{args.max_growth_mb:g} MB, "
          f"+{args.max_fd_growth} fds after the first scenario; every request in the JSONL)")
    return 1 if args.check and not ok else 0


def _slope_mb_per_min(samples: list[dict[str, float]]) -> float:
    """Least-squares slope of RSS over time."""
    if len(samples) < 3:
        return 0.0
    ts = [s["t_s"] for s in samples]
    ys = [s["rss_mb"] for s in samples]
    mt, my = statistics.fmean(ts), statistics.fmean(ys)
    den = sum((t - mt) ** 2 for t in ts)
    return 60 * sum((t - mt) * (y - my) for t, y in zip(ts, ys)) / den if den else 0.0


if __name__ == "__main__":
    sys.exit(main())
