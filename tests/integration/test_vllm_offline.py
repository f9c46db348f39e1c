"""vLLM offline batch mode for real (the CPU build here) on a tiny random-weight Llama,
through the real command line; then the bad input the issue names."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.support.vllm_runs import (
    harness,
    require_vllm,
    result_files,
    tiny_model,
    write_workload,
)

pytestmark = pytest.mark.slow
require_vllm()
__all__ = ["tiny_model"]  # the fixture, imported for pytest

ENGINE_FLAGS = ("--max-model-len", "512", "--max-num-seqs", "16", "--enforce-eager",
                "--dtype", "bfloat16")


def test_offline_batch_writes_rows_requests_and_engine_metrics(tmp_path: Path,
                                                               tiny_model: Path) -> None:
    workload = write_workload(tmp_path / "w.toml", requests=8, out=32, reps=2)
    out = tmp_path / "results"
    proc = harness("bench", "--backend", "vllm", "--model", str(tiny_model), "--workload",
                   str(workload), "--output", str(out), "--quiet", "--power", "none",
                   *ENGINE_FLAGS)
    assert proc.returncode == 0, proc.stderr[-3000:]
    files = result_files(out)
    (row,) = files["rows"]
    assert (row["backend"], row["engine"], row["load_mode"]) == ("vllm", "vllm", "batch")
    assert row["engine_version"] == __import__("vllm").__version__
    assert row["concurrency"] == "8" and row["requests"] == "16" and row["errors"] == "0"
    assert row["weights"] == "synthetic" and int(row["model_params"]) > 1_000_000
    assert len(row["model_sha256"]) == 64
    # ignore_eos + max_tokens: every request produced exactly 32 tokens, engine-counted
    assert int(row["output_tokens"]) == 16 * 32
    assert row["token_count_source"] == "engine"
    settings = json.loads(row["settings_json"])
    assert settings["mode"] == "offline"
    assert (settings["max_model_len"], settings["max_num_seqs"]) == (512, 16)
    assert settings["enforce_eager"] is True and settings["dtype"] == "bfloat16"
    assert settings["requested"]["max_num_seqs"] == 16
    reqs = files["requests"]
    assert len(reqs) == 16 and all(r["ok"] for r in reqs)
    for rep in (0, 1):
        sends = {r["send_ns"] for r in reqs if r["repetition"] == rep}
        assert len(sends) == 1  # the repetition was one batch, submitted at once
    # throughput: Σ N_out over each repetition's wall-clock window, mean over repetitions
    rates = []
    for rep in (0, 1):
        mine = [r for r in reqs if r["repetition"] == rep]
        window_ns = max(r["event_ns"][-1] for r in mine) - min(r["send_ns"] for r in mine)
        rates.append(sum(r["output_tokens"] for r in mine) / (window_ns / 1e9))
    assert float(row["output_throughput_tok_s"]) == pytest.approx(sum(rates) / 2, rel=1e-3)
    for r in reqs:
        assert r["output_tokens"] == 32 and r["input_tokens"] >= 48
        assert 0 < r["ttft_ms"] < r["e2e_ms"] and r["tpot_ms"] > 0
        assert r["engine_prefill_ms"] > 0 and r["engine_decode_tokens"] == 31
        assert r["event_tokens"] == [1, 31]

    # the engine's own counters over the measured window agree with the client's counts
    assert int(float(row["server_generation_tokens"])) == int(row["output_tokens"])
    assert int(float(row["server_prompt_tokens"])) == int(row["input_tokens"])
    assert float(row["server_ttft_ms_mean"]) > 0 and float(row["server_itl_ms_mean"]) > 0
    (entry,) = files["server_metrics"]
    assert entry["scenario"] == "decode" and entry["details"]["source"].startswith("engine")
    ttft_hist = entry["details"]["histograms"]["vllm:time_to_first_token_seconds"]
    assert ttft_hist["count"] == 16


def test_model_dir_without_config_or_tokenizer_is_one_line(tmp_path: Path,
                                                           tiny_model: Path) -> None:
    no_config = tmp_path / "no-config"
    shutil.copytree(tiny_model, no_config)
    (no_config / "config.json").unlink()
    proc = harness("bench", "--backend", "vllm", "--model", str(no_config), "--workload",
                   "smoke", "--output", str(tmp_path / "r"))
    assert proc.returncode == 2
    assert "has no config.json" in proc.stderr and "Traceback" not in proc.stderr

    no_tok = tmp_path / "no-tokenizer"
    no_tok.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(tiny_model / name, no_tok / name)
    proc = harness("bench", "--backend", "vllm", "--model", str(no_tok), "--workload",
                   "smoke", "--output", str(tmp_path / "r"))
    assert proc.returncode == 2
    assert "has no tokenizer" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "r").exists() or not any((tmp_path / "r").rglob("*.csv"))


def test_engine_settings_vllm_rejects_are_one_line(tmp_path: Path, tiny_model: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("[engine]\nmax_num_seq = 4\n")
    proc = harness("bench", "--backend", "vllm", "--model", str(tiny_model), "--workload",
                   "smoke", "--config", str(config), "--output", str(tmp_path / "r"))
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "'max_num_seq'" in proc.stderr and "max_num_seqs" in proc.stderr
    assert "Traceback" not in proc.stderr

    proc = harness("bench", "--backend", "vllm", "--model", str(tiny_model), "--workload",
                   "smoke", "--dtype", "float7", "--output", str(tmp_path / "r"))
    assert proc.returncode == 2, proc.stderr[-2000:]
    error = [ln for ln in proc.stderr.splitlines() if ln.startswith("harness bench: error")]
    assert len(error) == 1 and "float7" in error[0] and "dtype" in error[0]
    assert "Traceback" not in proc.stderr

