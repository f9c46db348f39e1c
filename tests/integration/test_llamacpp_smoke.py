"""The real llama.cpp backend on the real default model through the `smoke` workload,
driven through the real command line; then bad input and Ctrl-C."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.results.schema import COLUMNS

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]

CORE = """schema_version run_id started_at_utc machine_id hostname cpu_model cpu_cores
ram_gb gpu_name gpu_count os python_version harness_version harness_commit backend
engine_version model model_sha256 model_params quant weights workload scenario
concurrency request_rate_rps repetitions warmup_requests load_avg_1m token_count_source
requests errors input_tokens output_tokens duration_s request_throughput_rps
output_throughput_tok_s total_throughput_tok_s output_throughput_tok_s_std prefill_tok_s
decode_tok_s engine_prefill_tok_s engine_decode_tok_s goodput_rps ttft_ms_mean ttft_ms_p50
ttft_ms_p90 ttft_ms_p99 tpot_ms_mean tpot_ms_p50 tpot_ms_p90 tpot_ms_p99 itl_ms_p50
itl_ms_p90 itl_ms_p99 e2e_ms_mean e2e_ms_p50 e2e_ms_p90 e2e_ms_p99 energy_j
energy_above_idle_j avg_power_w peak_power_w idle_power_w j_per_output_token power_method
power_source peak_rss_mb gpu_mem_peak_mb""".split()


def harness(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=600, **kw)


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_smoke_bench_writes_the_three_files(tmp_path: Path) -> None:
    out = tmp_path / "results"
    proc = harness("bench", "--workload", "smoke", "--output", str(out), "--quiet",
                   "--power", "none")
    assert proc.returncode == 0, proc.stderr
    assert "out tok/s" in proc.stdout and "prefill" in proc.stdout
    (machine_dir,) = list(out.iterdir())
    csvs = list(machine_dir.glob("*.csv"))
    jsonls = list(machine_dir.glob("*.requests.jsonl"))
    assert len(csvs) == 1 and len(jsonls) == 1
    machine = json.loads((machine_dir / "machine.json").read_text())
    assert machine["machine_id"] == machine_dir.name and machine["cpu_threads"] >= 1

    rows = read_csv(csvs[0])
    assert set(CORE) <= set(rows[0]) and list(rows[0])[: len(COLUMNS)] == COLUMNS
    by_name = {r["scenario"]: r for r in rows}
    assert set(by_name) == {"prefill", "decode"}
    for name, n_in, n_out in (("prefill", 128, 4), ("decode", 16, 32)):
        r = by_name[name]
        assert r["status"] == "complete" and r["backend"] == "llamacpp"
        assert r["weights"] == "real" and r["quant"] == "Q4_K_M"
        assert len(r["model_sha256"]) == 64 and int(r["model_params"]) > 200_000_000
        assert int(r["requests"]) == 4 and int(r["errors"]) == 0
        # prompts hit the requested size exactly (BOS included); output forced to length
        assert int(r["input_tokens"]) == 4 * n_in
        assert int(r["output_tokens"]) == 4 * n_out
        assert r["token_count_source"] == "engine"
        for col in ("output_throughput_tok_s", "ttft_ms_p50", "e2e_ms_p99", "prefill_tok_s",
                    "engine_prefill_tok_s", "engine_decode_tok_s", "load_avg_1m"):
            assert float(r[col]) > 0, col
        assert float(r["e2e_ms_p50"]) >= float(r["ttft_ms_p50"])
    assert float(by_name["decode"]["tpot_ms_mean"]) > 0
    assert float(by_name["decode"]["decode_tok_s"]) > 0

    records = [json.loads(line) for line in jsonls[0].read_text().splitlines()]
    assert len(records) == 8
    for rec in records:
        assert rec["ok"] and rec["error"] is None
        assert rec["engine_prefill_tokens"] == rec["input_tokens"]
        # the engine times N_out - 1 decode steps: the first token comes from prefill
        assert rec["engine_decode_tokens"] == rec["output_tokens"] - 1
        assert len(rec["event_ns"]) == rec["output_tokens"]
    prompts_unique = {r["request_id"] for r in records}
    assert len(prompts_unique) == 8


@pytest.mark.parametrize("args,message", [
    (["--model", "/nonexistent/model.gguf"], "model file not found: /nonexistent/model.gguf"),
    (["--backend", "llamacp"], "Did you mean 'llamacpp'?"),
    (["--workload", "smok"], "Did you mean 'smoke'?"),
    (["--concurrency", "0"], "--concurrency takes integers >= 1"),
])
def test_bad_input_is_one_line_and_exit_2(args: list[str], message: str,
                                          tmp_path: Path) -> None:
    proc = harness("bench", "--output", str(tmp_path), "--quiet", *args)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 or "usage:" in proc.stderr


def test_corrupt_and_non_gguf_model_files(tmp_path: Path) -> None:
    not_gguf = tmp_path / "model.gguf"
    not_gguf.write_bytes(b"<html>not a model</html>")
    proc = harness("bench", "--model", str(not_gguf), "--output", str(tmp_path), "--quiet")
    assert proc.returncode == 2 and "is not a GGUF file" in proc.stderr
    corrupt = tmp_path / "corrupt.gguf"
    corrupt.write_bytes(b"GGUF" + os.urandom(4096))
    proc = harness("bench", "--model", str(corrupt), "--output", str(tmp_path), "--quiet")
    assert proc.returncode == 2, proc.stderr
    assert "could not load" in proc.stderr and "Traceback" not in proc.stderr


def test_workload_file_errors_name_file_key_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[[scenarios]]\nname = "x"\ninput_tokens = 8\noutput_tokens = "many"\n')
    proc = harness("bench", "--workload", str(bad), "--output", str(tmp_path), "--quiet")
    assert proc.returncode == 2
    assert f"{bad}:4: 'output_tokens' must be int, got str 'many'" in proc.stderr


@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupt_keeps_measured_requests(tmp_path: Path, sig: int, code: int) -> None:
    workload = tmp_path / "long.toml"
    workload.write_text('[[scenarios]]\nname = "long"\ninput_tokens = 32\n'
                        'output_tokens = 24\nrequests = 500\nwarmup_requests = 0\n')
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "harness", "bench", "--workload",
                             str(workload), "--output", str(out), "--quiet", "--power", "none"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 180
    jsonl: list[Path] = []
    while time.time() < deadline:
        jsonl = list(out.glob("*/*.requests.jsonl"))
        if jsonl and len(jsonl[0].read_text().splitlines()) >= 2:
            break
        time.sleep(0.2)
    assert jsonl, "no request was measured in time"
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == code, stderr
    lines = jsonl[0].read_text().splitlines()
    records = [json.loads(line) for line in lines]  # every line is valid JSON
    assert len(records) >= 2
    (csv_path,) = list(out.glob("*/*.csv"))
    (row,) = read_csv(csv_path)
    assert row["status"] == "partial"
    assert int(row["requests"]) == len(records)
    assert float(row["output_throughput_tok_s"]) > 0
    assert "Traceback" not in stderr
