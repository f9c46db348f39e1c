"""A `harness model synth --format hf` folder served by vLLM's dummy weight loading (the CPU
build here), through the real command line: rows say weights=synthetic with the shape."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.vllm_runs import harness, require_vllm, result_files, write_workload

pytestmark = pytest.mark.slow
require_vllm()

TINY = ("--arch", "llama", "--hidden", "256", "--ffn", "512", "--layers", "2", "--heads", "4",
        "--kv-heads", "2", "--vocab", "1000")
SHAPE = "custom-llama-h256-f512-l2-a4-kv2-v1000"


def test_hf_shape_runs_on_vllm_dummy_weights(tmp_path: Path) -> None:
    folder = tmp_path / "tiny-shape"
    proc = harness("model", "synth", *TINY, "--format", "hf", "--out", str(folder))
    assert proc.returncode == 0, proc.stderr
    assert not list(folder.glob("*.safetensors"))  # no weights: vLLM makes them
    config = tmp_path / "engine.toml"
    config.write_text('[engine]\nload_format = "dummy"\n')
    workload = write_workload(tmp_path / "w.toml", requests=4, out=16)
    out = tmp_path / "results"
    proc = harness("bench", "--backend", "vllm", "--model", str(folder), "--config",
                   str(config), "--workload", str(workload), "--output", str(out), "--quiet",
                   "--power", "none", "--max-model-len", "256", "--max-num-seqs", "8",
                   "--enforce-eager", "--dtype", "bfloat16")
    assert proc.returncode == 0, proc.stderr[-3000:]
    (row,) = result_files(out)["rows"]
    assert row["weights"] == "synthetic" and row["model"] == f"synthetic:{SHAPE}"
    assert row["errors"] == "0" and int(row["output_tokens"]) == 4 * 16
    settings = json.loads(row["settings_json"])
    assert settings["requested"]["load_format"] == "dummy"


def test_hf_config_and_tokenizer_load_in_transformers(tmp_path: Path) -> None:
    """What vLLM reads first: the config and the tokenizer, through transformers."""
    transformers = pytest.importorskip("transformers")
    out = tmp_path / "llama-shape"
    proc = harness("model", "synth", "--shape", "llama3-8b", "--format", "hf", "--out",
                   str(out))
    assert proc.returncode == 0, proc.stderr
    config = transformers.AutoConfig.from_pretrained(out)
    assert type(config).__name__ == "LlamaConfig"
    assert (config.hidden_size, config.num_hidden_layers, config.num_key_value_heads) == (
        4096, 32, 8)
    tokenizer = transformers.AutoTokenizer.from_pretrained(out)
    ids = tokenizer("hello world")["input_ids"]
    assert ids[0] == 1 and tokenizer.decode(ids[1:]) == "hello world"
