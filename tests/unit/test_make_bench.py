"""`make bench` on llama.cpp runs two commands: the in-process bench (one user) and a
capacity sweep of the same model and workload on llama-server (many users) into the same
OUTPUT, after `make llama-server`; CAPACITY=0 leaves the sweep out; the other backends run
one command. Checked with `make -n` (what it would run; nothing is measured here: the
README has a real `make bench` run with its figures)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make not installed")


def commands(*variables: str) -> list[str]:
    """The harness commands `make -n bench` would run, and the llama-server build."""
    out = subprocess.run(["make", "-n", "--no-print-directory", "bench", *variables],
                         cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return [" ".join(ln.split()) for ln in out.splitlines()
            if "harness bench" in ln or "build-llama-tool" in ln]


def test_default_runs_in_process_then_a_llama_server_sweep() -> None:
    build, one, many = commands("OUTPUT=/tmp/out", "MODEL=m.gguf", "ARGS=--n-threads 2")
    assert build.endswith("bash scripts/build-llama-tool llama-server llama-bench")
    assert one == ".venv/bin/harness bench --workload default --output /tmp/out --model " \
                  "m.gguf --n-threads 2"
    assert many == (".venv/bin/harness bench --server llama-server --workload default "
                    "--output /tmp/out --concurrency 1,2,4,8 --model m.gguf --n-threads 2")


def test_the_sweep_is_overridable_and_can_be_skipped() -> None:
    *_, many = commands("CAPACITY_CONCURRENCY=1,4", "CAPACITY_ARGS=--repetitions 2",
                        "WORKLOAD=chat")
    assert many == (".venv/bin/harness bench --server llama-server --workload chat --output "
                    "results --concurrency 1,4 --repetitions 2")
    *_, many = commands("CAPACITY_CONCURRENCY=auto", "CAPACITY_MAX_CONCURRENCY=16")
    assert many.endswith("--concurrency auto --max-concurrency 16")
    for off in ("CAPACITY=0", "CAPACITY=no"):
        assert commands(off) == [".venv/bin/harness bench --workload default --output results"]


def test_other_backends_run_one_command() -> None:
    (one,) = commands("BACKEND=openai", "ARGS=--base-url http://127.0.0.1:9/v1")
    assert "--server llama-server" not in one and "--backend openai" in one
