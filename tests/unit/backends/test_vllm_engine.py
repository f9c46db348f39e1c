"""The vLLM backend's pure parts: config, model-dir checks, server flags, engine metrics
conversion, offline timing records. No vLLM needed (the real engine runs in
tests/integration/test_vllm_*.py)."""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import pytest

from backends.base import Endpoint, Request
from backends.prometheus import vllm_summary
from backends.vllm.backend import VLLMBackend, safetensors_params, samples_from_engine_metrics
from backends.vllm.config import check_model_dir, config_from_settings, server_cli_args
from harness.config.settings import bench_settings
from harness.errors import UserError


def test_offline_config_collects_flags_and_engine_table():
    cfg = config_from_settings(bench_settings(
        {"model": "org/model", "max_num_seqs": 8, "enforce_eager": True, "timeout": 30,
         "engine": {"dtype": "bfloat16", "swap_space": 1}}), None)
    assert cfg["model"] == "org/model" and "base_url" not in cfg
    assert cfg["engine_args"] == {"dtype": "bfloat16", "swap_space": 1, "max_num_seqs": 8,
                                  "enforce_eager": True}
    assert VLLMBackend(**cfg).config.mode == "offline"


def test_serve_config_splits_client_and_server_settings(tmp_path: Path):
    pytest.importorskip("openai")
    cfg = config_from_settings(
        bench_settings({"model": "org/model", "server": "vllm",
                        "engine": {"temperature": 0.5, "server_args": ["--x"],
                                   "max_model_len": 512}}),
        Endpoint(base_url="http://127.0.0.1:8000/v1", model="org/model", kind="vllm",
                 force_length="ignore_eos", info={"engine_args": {"max_model_len": 512}}))
    assert cfg["base_url"] == "http://127.0.0.1:8000/v1"
    assert cfg["engine_args"] == {"max_model_len": 512}
    assert cfg["openai"]["force_length"] == "ignore_eos"  # vLLM honours ignore_eos
    assert cfg["openai"]["temperature"] == 0.5
    assert cfg["openai"]["tokenizer"] == "org/model"  # prompts sized with its tokenizer
    assert VLLMBackend(**cfg).config.mode == "serve"


def test_missing_model_and_unknown_setting_are_user_errors():
    with pytest.raises(UserError, match="--model"):
        config_from_settings(bench_settings({}), None)
    with pytest.raises(UserError, match="unknown setting"):
        VLLMBackend(model="m", tensor_parallel=2)


def test_model_dir_checks(tmp_path: Path):
    assert check_model_dir("meta-llama/Llama-3.1-8B") is None  # a hub id
    with pytest.raises(UserError, match="not found"):
        check_model_dir(str(tmp_path / "absent"))
    (tmp_path / "w.gguf").write_bytes(b"GGUF")
    with pytest.raises(UserError, match="llamacpp"):
        check_model_dir(str(tmp_path / "w.gguf"))
    with pytest.raises(UserError, match="no config.json"):
        check_model_dir(str(tmp_path))
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(UserError, match="no tokenizer"):
        check_model_dir(str(tmp_path))
    (tmp_path / "tokenizer.json").write_text("{}")
    assert check_model_dir(str(tmp_path)) == tmp_path


def test_server_cli_args():
    assert server_cli_args({"max_model_len": 512, "enforce_eager": True,
                            "enable_prefix_caching": False, "quantization": None,
                            "override_generation_config": {"a": 1}}) == [
        "--max-model-len", "512", "--enforce-eager", "--no-enable-prefix-caching",
        "--override-generation-config", '{"a": 1}']


def test_safetensors_params_reads_headers_only(tmp_path: Path):
    header = json.dumps({"a": {"dtype": "BF16", "shape": [4, 8], "data_offsets": [0, 64]},
                         "b": {"dtype": "BF16", "shape": [3], "data_offsets": [64, 70]},
                         "__metadata__": {"format": "pt"}}).encode()
    (tmp_path / "model.safetensors").write_bytes(struct.pack("<Q", len(header)) + header)
    assert safetensors_params(tmp_path) == 35


@dataclass
class Counter:  # the shapes of vLLM's `LLM.get_metrics()` objects (names matter)
    name: str
    labels: dict
    value: float


@dataclass
class Gauge:
    name: str
    labels: dict
    value: float


@dataclass
class Histogram:
    name: str
    labels: dict
    count: int
    sum: float
    buckets: dict


def test_engine_metrics_become_the_server_page_names():
    def page(prompt: int, ttft_sum: float, ttft_count: int) -> dict:
        return samples_from_engine_metrics([
            Counter("vllm:prompt_tokens", {"engine": "0"}, prompt),
            Histogram("vllm:time_to_first_token_seconds", {"engine": "0"}, ttft_count,
                      ttft_sum, {"0.1": ttft_count, "+Inf": ttft_count}),
            Gauge("vllm:kv_cache_usage_perc", {}, 0.5),
        ])

    before, after = page(100, 0.2, 2), page(300, 1.0, 6)
    assert after["vllm:prompt_tokens_total"][0][1] == 300
    assert after["vllm:time_to_first_token_seconds_bucket"][1][0]["le"] == "+Inf"
    assert after["vllm:kv_cache_usage_perc"][0][1] == 0.5
    cols = vllm_summary(before, after)
    assert cols["server_prompt_tokens"] == 200
    assert cols["server_ttft_ms_mean"] == pytest.approx(200.0)  # 0.8 s over 4 requests


def _output(n_out: int, first: float | None, last: float | None, sched: float | None):
    metrics = SimpleNamespace(first_token_ts=first, last_token_ts=last, scheduled_ts=sched)
    comp = SimpleNamespace(token_ids=list(range(n_out)), text="x" * n_out,
                           finish_reason="length")
    return SimpleNamespace(outputs=[comp], prompt_token_ids=[1] * 10, metrics=metrics)


def test_offline_result_places_events_at_engine_token_times():
    req = Request("r", "p", 10, 5)
    send, done = 1_000_000_000, 2_000_000_000  # perf_counter_ns
    # engine clock (seconds) offset by 0: first token at 1.2 s, last at 1.6 s
    res = VLLMBackend._result(req, _output(5, 1.2, 1.6, 1.1), send, done, offset_ns=0)
    first, last = res.events
    assert (first.t_ns, first.n_tokens) == (1_200_000_000, 1)
    assert (last.t_ns, last.n_tokens) == (1_600_000_000, 4)
    u = last.usage
    assert (u.input_tokens, u.output_tokens, u.source) == (10, 5, "engine")
    assert u.engine_prefill_ms == pytest.approx(100.0)
    assert u.engine_decode_ms == pytest.approx(400.0) and u.engine_decode_tokens == 4


def test_offline_result_without_engine_times_falls_back_to_batch_end():
    req = Request("r", "p", 10, 5)
    res = VLLMBackend._result(req, _output(5, None, None, None), 10, 50, offset_ns=0)
    assert [e.t_ns for e in res.events] == [50, 50]
    assert res.events[-1].usage.engine_prefill_ms is None
    # times outside the batch window (another clock) are not trusted either
    res = VLLMBackend._result(req, _output(5, 99.0, 99.5, 98.0), 10, 50, offset_ns=0)
    assert [e.t_ns for e in res.events] == [50, 50]
