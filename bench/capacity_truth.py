"""The in-flight truth of `harness bench` rows against a server whose capacity is known.

Runs the real command line, `harness bench --server command`, on the project's fake SSE
server (harness/servers/fake.py: first token --ttft-ms after a request arrives, then one
token every --itl-ms, --output-len tokens) and prints, per closed-loop concurrency N:
requests sent, achieved concurrency (time-weighted mean, peak), whole-window and
steady-state output throughput, each beside the ideal N x output-len / (TTFT + (len-1) x
ITL). Then `--concurrency auto` against the same server limited to --slots answers at
once (the others wait, as on a server with that many slots): the rows of the sweep and
the knee it marks. Nothing is asserted; the load average is printed before and after.

  .venv/bin/python bench/capacity_truth.py
  .venv/bin/python bench/capacity_truth.py --concurrency 1,8,32 --slots 4
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness.results.files import read_rows  # noqa: E402

WORKLOAD = """
seed = 21
[[scenarios]]
name = "decode"
input_tokens = 16
output_tokens = {output_len}
requests = 4
warmup_requests = 1
repetitions = {repetitions}
"""


def load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def bench(workdir: Path, server_args: str, *args: str) -> list[dict]:
    out = workdir / f"out{len(list(workdir.glob('out*')))}"
    command = f"{sys.executable} -m harness.servers.fake --port {{port}} {server_args}"
    proc = subprocess.run([sys.executable, "-m", "harness", "bench", "--server", "command",
                           "--server-command", command, "--model", "fake-model",
                           "--workload", str(workdir / "w.toml"), "--output", str(out),
                           "--power", "none", "--quiet", *args], cwd=ROOT,
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(proc.stderr)
    (csv_path,) = [p for p in out.glob("*/*.csv") if not p.name.startswith(".")]
    return read_rows(csv_path)


def fmt(value: float | None, spec: str = ".1f") -> str:
    return "-" if value is None else format(value, spec)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--concurrency", default="1,4,16,64")
    p.add_argument("--ttft-ms", type=float, default=50.0)
    p.add_argument("--itl-ms", type=float, default=10.0)
    p.add_argument("--output-len", type=int, default=64)
    p.add_argument("--repetitions", type=int, default=2)
    p.add_argument("--slots", type=int, default=8, help="server slots for the auto sweep")
    args = p.parse_args()
    per_stream = args.output_len / ((args.ttft_ms + (args.output_len - 1) * args.itl_ms) / 1e3)
    server = f"--ttft-ms {args.ttft_ms:g} --itl-ms {args.itl_ms:g}"
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "w.toml").write_text(WORKLOAD.format(output_len=args.output_len,
                                                     repetitions=args.repetitions))
        print(f"fake server {server}, {args.output_len} output tokens; {load()}")
        rows = bench(work, server, "--concurrency", args.concurrency)
        print(f"{'c':>4} {'requests':>8} {'in flight mean':>14} {'peak':>5} {'ok':>3} "
              f"{'tok/s window':>12} {'tok/s steady':>12} {'ideal':>8} {'steady/ideal':>12}")
        for r in rows:
            ideal = r["concurrency"] * per_stream
            steady = r["output_throughput_steady_tok_s"]
            print(f"{r['concurrency']:>4} {r['requests']:>8} "
                  f"{fmt(r['concurrency_achieved_mean'], '.2f'):>14} "
                  f"{r['concurrency_achieved_peak']!s:>5} {r['capacity_ok']!s:>3} "
                  f"{fmt(r['output_throughput_tok_s']):>12} {fmt(steady):>12} "
                  f"{ideal:>8.1f} {fmt(steady / ideal if steady else None, '.3f'):>12}")
        print(f"after the sweep: {load()}")
        print(f"\n--concurrency auto against {args.slots} server slots ({load()})")
        rows = bench(work, f"{server} --max-streams {args.slots}", "--concurrency", "auto",
                     "--max-concurrency", "64")
        for r in rows:
            print(f"  c={r['concurrency']:<3} knee={r['knee']} "
                  f"{fmt(r['output_throughput_tok_s']):>8} tok/s window, "
                  f"{fmt(r['output_throughput_steady_tok_s']):>8} steady, TTFT p90 "
                  f"{fmt(r['ttft_ms_p90'])} ms")
        knee = [r for r in rows if r["knee"] == 1]
        if knee:
            note = [n for n in (knee[0]["notes"] or "").split("; ") if "knee" in n]
            print(f"  knee: c={knee[0]['concurrency']}: {note[0] if note else ''}")
        print(f"after: {load()}")


if __name__ == "__main__":
    main()
