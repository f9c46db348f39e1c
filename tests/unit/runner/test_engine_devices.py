"""Which GPUs a bench run's engine uses, as the NVML meter is told: vLLM's parallel sizes,
llama.cpp on every visible GPU or none, a managed server's own CUDA_VISIBLE_DEVICES."""

from __future__ import annotations

import pytest

from harness.config.settings import bench_settings
from harness.runner.session import engine_devices
from harness.servers.managed import ManagedServer, ServerSpec


@pytest.fixture(autouse=True)
def _no_env(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.delenv("CUDA_DEVICE_ORDER", raising=False)


def test_vllm_uses_tensor_times_pipeline_parallel_gpus(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,5,6,7")
    d = engine_devices(bench_settings({"tensor_parallel_size": 2,
                                       "engine": {"pipeline_parallel_size": 2}}), "vllm", None)
    assert (d.visible, d.count) == ("4,5,6,7", 4)
    assert d.why == "vLLM tensor_parallel_size 2 x pipeline_parallel_size 2"
    one = engine_devices(bench_settings({}), "vllm", None)
    assert one.count == 1  # vLLM's default: one GPU, the first visible


def test_llamacpp_uses_every_visible_gpu_or_none_with_no_layers_offloaded():
    assert engine_devices(bench_settings({}), "llamacpp", None).count is None
    cpu = engine_devices(bench_settings({"n_gpu_layers": 0}), "llamacpp", None)
    assert cpu.count == 0 and "n_gpu_layers 0" in cpu.why


def test_a_managed_servers_own_environment_decides(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    spec = ServerSpec(kind="vllm", argv=["vllm", "serve"], base_url="http://x/v1", model=None,
                      env={"CUDA_VISIBLE_DEVICES": "GPU-abc", "CUDA_DEVICE_ORDER": "PCI_BUS_ID"})
    d = engine_devices(bench_settings({"server": "vllm"}), "vllm", ManagedServer(spec))
    assert (d.visible, d.count, d.device_order) == ("GPU-abc", 1, "PCI_BUS_ID")


def test_an_endpoint_the_harness_did_not_start_is_unknown():
    d = engine_devices(bench_settings({"base_url": "http://gpu-box:8000/v1"}), "openai", None)
    assert d.count is None and "not known" in d.why
