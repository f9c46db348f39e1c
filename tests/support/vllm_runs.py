"""Shared pieces of the vLLM integration tests: the tiny model and the command line.

The tests run in .venv-vllm (make test does this); elsewhere they skip.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
# Small KV cache and in-tree caches; nothing may be fetched from a model hub.
VLLM_ENV = {"VLLM_CPU_KVCACHE_SPACE": "1", "HF_HUB_OFFLINE": "1",
            "VLLM_CACHE_ROOT": str(ROOT / ".cache" / "vllm"),
            "TORCHINDUCTOR_CACHE_DIR": str(ROOT / ".cache" / "inductor")}

WORKLOAD = """\
description = "vLLM integration test: {requests} requests of 48 input and {out} output tokens"
seed = 7

[defaults]
warmup_requests = 1
repetitions = {reps}
concurrency = {concurrency}

[[scenarios]]
name = "decode"
input_tokens = 48
output_tokens = {out}
requests = {requests}
"""


def require_vllm() -> None:
    pytest.importorskip("vllm", reason="vLLM is installed in .venv-vllm (make install-vllm)")


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight Llama with a locally trained BPE tokenizer, built once."""
    require_vllm()
    from harness.models.tiny_llama import build_tiny_llama

    return build_tiny_llama(tmp_path_factory.mktemp("models") / "tiny-llama")


def write_workload(path: Path, requests: int, out: int, reps: int = 1,
                   concurrency: str = "1") -> Path:
    path.write_text(WORKLOAD.format(requests=requests, out=out, reps=reps,
                                    concurrency=concurrency))
    return path


def harness(*args: str, timeout: float = 600, env: dict[str, str] | None = None
            ) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness", *args], check=False, cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **VLLM_ENV, **(env or {})})


def result_files(out: Path) -> dict[str, Any]:
    """The CSV rows, request records and server-metrics entries of the one run in `out`."""
    (machine_dir,) = [p for p in out.iterdir() if p.is_dir()]
    (csv_path,) = machine_dir.glob("*.csv")
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    stem = csv_path.name[: -len(".csv")]
    requests = [json.loads(line) for line in
                (machine_dir / f"{stem}.requests.jsonl").read_text().splitlines()]
    metrics_path = machine_dir / f"{stem}.server_metrics.json"
    server = json.loads(metrics_path.read_text()) if metrics_path.exists() else None
    logs = list(machine_dir.glob("*.server.log"))
    return {"rows": rows, "requests": requests, "server_metrics": server,
            "server_log": logs[0] if logs else None, "dir": machine_dir}
