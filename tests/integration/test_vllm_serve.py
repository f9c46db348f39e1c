"""vLLM serve mode for real (the CPU build here): a managed vLLM OpenAI server on the tiny
Llama, benchmarked at concurrency 1 and 8 through the openai client (c=8 really has 8
requests in flight), with the server's Prometheus /metrics stored beside the client
figures; then a server killed mid-run. How much faster c=8 is, is a figure printed by
bench/vllm_batching.py, never asserted here."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.support.vllm_runs import (
    ROOT,
    VLLM_ENV,
    harness,
    require_vllm,
    result_files,
    tiny_model,
    write_workload,
)

pytestmark = pytest.mark.slow
require_vllm()
__all__ = ["tiny_model"]  # the fixture, imported for pytest

SERVE_FLAGS = ("--server", "vllm", "--max-model-len", "512", "--enforce-eager",
               "--max-num-seqs", "16", "--quiet", "--power", "none")


def peak_in_flight(records: list[dict]) -> int:
    """The most requests open at once, from each record's [send_ns, end_ns] (an end and a
    send at the same instant do not overlap)."""
    edges = sorted([(r["send_ns"], 1) for r in records] + [(r["end_ns"], -1) for r in records])
    level = peak = 0
    for _, step in edges:
        level += step
        peak = max(peak, level)
    return peak


def test_serve_c1_c8_rows_server_metrics_and_8_in_flight(tmp_path: Path,
                                                         tiny_model: Path) -> None:
    workload = write_workload(tmp_path / "w.toml", requests=16, out=64,
                              concurrency="[1, 8]")
    out = tmp_path / "results"
    config = tmp_path / "c.toml"  # sample /metrics often: the c=8 window lasts ~a second
    config.write_text("[engine]\nmetrics_sample_s = 0.2\n")
    proc = harness("bench", "--model", str(tiny_model), "--workload", str(workload),
                   "--output", str(out), "--config", str(config), *SERVE_FLAGS)
    assert proc.returncode == 0, proc.stderr[-3000:]
    files = result_files(out)
    rows = {int(r["concurrency"]): r for r in files["rows"]}
    assert set(rows) == {1, 8}
    for row in rows.values():
        assert (row["backend"], row["engine"], row["load_mode"]) == ("vllm", "vllm", "closed")
        assert row["engine_version"] == __import__("vllm").__version__
        assert row["requests"] == "16" and row["errors"] == "0", row["error_kinds"]
        assert int(row["output_tokens"]) == 16 * 64  # ignore_eos: exact length
        assert row["token_count_source"] == "engine"  # usage from the server
        assert row["weights"] == "synthetic" and len(row["model_sha256"]) == 64
        settings = json.loads(row["settings_json"])
        assert settings["mode"] == "serve" and settings["force_length"] == "ignore_eos"
        assert settings["engine_args"] == {"max_model_len": 512, "enforce_eager": True,
                                           "max_num_seqs": 16}
        assert "--max-model-len 512" in settings["server"]["argv"]
        # The server's own counters over the window: the same tokens the client counted.
        assert int(float(row["server_generation_tokens"])) == int(row["output_tokens"])
        assert int(float(row["server_prompt_tokens"])) == int(row["input_tokens"])
        assert float(row["server_ttft_ms_mean"]) > 0 and float(row["server_itl_ms_mean"]) > 0
        assert float(row["server_e2e_ms_mean"]) > 0
        assert row["server_preemptions"] in ("0", "0.0")
        # the client's E2E includes the HTTP path the server's histogram does not see
        assert float(row["e2e_ms_mean"]) >= 0.9 * float(row["server_e2e_ms_mean"])
    # Peaks (KV cache, running requests) are sampled gauges, best effort: a busy server
    # answers /metrics late, so they are not asserted; the histograms below are exact.

    entries = {e["load"]: e for e in files["server_metrics"]}
    assert set(entries) == {"c=1", "c=8"}
    hist = entries["c=8"]["details"]["histograms"]
    assert hist["vllm:e2e_request_latency_seconds"]["count"] == 16
    assert entries["c=8"]["details"]["source"].endswith("/metrics")
    assert files["server_log"] is not None and "api_server" in files["server_log"].read_text()

    # Concurrency: c=8 had 8 requests in flight at once, c=1 one, from the per-request
    # [send, end] intervals and in the row's own column. (How much faster that is depends
    # on the machine: bench/vllm_batching.py prints it.)
    for c in (1, 8):
        records = [r for r in files["requests"] if r["load"] == f"c={c}"]
        assert len(records) == int(rows[c]["requests"])
        assert all(r["end_ns"] is not None for r in records)
        assert peak_in_flight(records) == c
        assert int(float(rows[c]["concurrency_achieved_peak"])) == c


def test_server_killed_mid_run_keeps_completed_requests_and_says_so(tmp_path: Path,
                                                                   tiny_model: Path) -> None:
    workload = write_workload(tmp_path / "w.toml", requests=12, out=96)
    out = tmp_path / "results"
    cmd = [sys.executable, "-m", "harness", "bench", "--model", str(tiny_model),
           "--workload", str(workload), "--output", str(out), *SERVE_FLAGS]
    import os

    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, **VLLM_ENV})
    try:
        deadline = time.monotonic() + 500
        jsonl = None
        while time.monotonic() < deadline and proc.poll() is None:
            found = list(out.glob("*/*.requests.jsonl")) if out.exists() else []
            if found and len(found[0].read_text().splitlines()) >= 3:
                jsonl = found[0]
                break
            time.sleep(0.2)
        assert jsonl is not None, "the run never completed 3 requests"
        servers = [p for p in psutil.Process(proc.pid).children(recursive=True)
                   if "vllm.entrypoints.openai.api_server" in " ".join(p.cmdline())]
        assert servers, "no vLLM server process found"
        servers[0].kill()
        _, stderr = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    files = result_files(out)
    (row,) = files["rows"]
    ok = [r for r in files["requests"] if r["ok"]]
    failed = [r for r in files["requests"] if not r["ok"]]
    assert len(ok) >= 3 and failed, (len(ok), len(failed))
    assert all(r["output_tokens"] == 96 for r in ok)
    assert {r["error"] for r in failed} <= {"connection", "stream_cut", "http_5xx", "timeout"}
    assert int(row["errors"]) == len(failed) and int(row["requests"]) == 12
    line = [ln for ln in stderr.splitlines() if "server exited with code" in ln]
    assert len(line) == 1 and "vllm server" in line[0] and "completed requests are kept" \
        in line[0], stderr[-2000:]
    assert "  | " in stderr  # the server log tail follows
    assert proc.returncode == 0
