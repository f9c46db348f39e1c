"""Helpers of the reliability tests: run `python -m harness bench` as users do, write
small workloads, read what a run left behind."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from harness.servers.fake import FakeTiming, ThreadedFakeServer

ROOT = Path(__file__).resolve().parents[2]


def write_workload(path: Path, *scenarios: dict[str, Any]) -> Path:
    """A workload TOML with the given scenarios (name, input_tokens, output_tokens, ...)."""
    text = ""
    for s in scenarios:
        text += "[[scenarios]]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in s.items())
    path.write_text(text)
    return path


def fake_server(**timing: Any) -> ThreadedFakeServer:
    """The fake OpenAI server in a background thread, serving model `m` fast (first token
    after 5 ms, then one every 2 ms) unless `timing` says otherwise; its fault modes are
    reached through `server.fault_url(MODE, ...)`."""
    return ThreadedFakeServer(FakeTiming(**{"model": "m", "ttft_ms": 5.0, "itl_ms": 2.0,
                                            **timing}))


def bench_argv(base_url: str, workload: Path, out: Path, *extra: str) -> list[str]:
    """`harness bench` on the openai backend against `base_url`, model `m`, no power
    meter, and no length probe at start (the tests count every request the server saw)."""
    return [sys.executable, "-m", "harness", "bench", "--backend", "openai", "--base-url",
            base_url, "--model", "m", "--workload", str(workload), "--output", str(out),
            "--power", "none", "--force-length", "none", *extra]


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without any real key, plus `extra`."""
    env = {k: v for k, v in os.environ.items()
           if not k.endswith(("_API_KEY", "_TOKEN")) and k not in ("OPENAI_LOG",)}
    env.update(extra)
    return env


def run_bench(argv: list[str], env: dict[str, str] | None = None,
              timeout_s: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, check=False, cwd=ROOT, capture_output=True, text=True, timeout=timeout_s,
                          env=env or clean_env())


def start_bench(argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env or clean_env())


def wait_for(predicate: Any, timeout_s: float = 120, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def jsonl_records(out: Path) -> list[dict[str, Any]]:
    """Every line of the run's requests JSONL, each parsed (fails on a broken line)."""
    files = list(out.glob("*/*.requests.jsonl"))
    if not files:
        return []
    (path,) = files
    return [json.loads(line) for line in path.read_text().splitlines()]


def jsonl_count(out: Path) -> int:
    files = list(out.glob("*/*.requests.jsonl"))
    return len(files[0].read_text().splitlines()) if files else 0


def csv_rows(out: Path) -> list[dict[str, str]]:
    files = [p for p in out.glob("*/*.csv") if not p.name.startswith(".")]
    if not files:
        return []
    (path,) = files
    with open(path, newline="") as f:
        return list(csv.DictReader(f))
