"""NVML on a real NVIDIA GPU (skipped elsewhere): the energy counter rises under load,
agrees within 5% with instantaneous power integrated over a steady load, and a short
llama.cpp run on the GPU gives a plausible J/token. Figures are printed (pytest -s)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from harness.power.base import MEASURED, trapezoid_j
from harness.power.nvml import NvmlMeter

pytestmark = pytest.mark.gpu


def _nvidia_gpu() -> bool:
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            return pynvml.nvmlDeviceGetCount() > 0
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # noqa: BLE001 - no library, no driver or no GPU: skip
        return False


if not _nvidia_gpu():
    pytest.skip("no NVIDIA GPU with NVML here", allow_module_level=True)


def _steady_load(seconds: float) -> None:
    """Keep GPU 0 busy with matrix multiplications (PyTorch with CUDA)."""
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("PyTorch without CUDA: no load generator")
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.float16)
    b = torch.randn(8192, 8192, device="cuda", dtype=torch.float16)
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        for _ in range(20):
            a @ b
        torch.cuda.synchronize()


def test_energy_counter_rises_under_load_and_matches_instant_power() -> None:
    meter = NvmlMeter()  # the GPUs CUDA_VISIBLE_DEVICES shows; the load runs on the first
    ok, reason = meter.available()
    assert ok, reason
    _steady_load(2.0)  # ramp up clocks before the window
    meter.start()
    _steady_load(8.0)
    r = meter.stop()[0]
    meter.close()
    assert r.method == MEASURED, r.note
    assert r.energy_j is not None and r.energy_j > 0
    integrated = trapezoid_j(r.timeline)
    print(f"\n{r.domain}: counter {r.energy_j:.1f} J, integrated samples {integrated:.1f} J over "
          f"{r.duration_s:.2f} s, avg {r.avg_power_w:.1f} W, peak {r.peak_power_w:.1f} W, "
          f"{r.samples} samples; {r.note}")
    if "lags" in r.note:
        pytest.skip("no instantaneous power field on this GPU/driver: the 1-s average "
                    "lags, so the 5% agreement check does not apply")
    assert r.samples >= 8 * 10  # >= 10 Hz
    assert abs(integrated - r.energy_j) / r.energy_j < 0.05


def test_llamacpp_on_gpu_gives_a_plausible_j_per_token(tmp_path: Path) -> None:
    llama_cpp = pytest.importorskip("llama_cpp")
    if not llama_cpp.llama_supports_gpu_offload():
        pytest.skip("llama-cpp-python built without GPU offload")
    from backends.llamacpp import LlamaCppBackend
    from harness.power import open_session
    from harness.results.files import RunFiles
    from harness.results.machine import fingerprint
    from harness.runner.runner import RunOptions, RunState, new_run_id, run_workload
    from workloads.spec import load_workload

    toml = tmp_path / "gpu.toml"
    toml.write_text('description = "short decode on the GPU"\nseed = 5\n'
                    "[defaults]\nrepetitions = 2\nwarmup_requests = 1\nconcurrency = 1\n"
                    '[[scenarios]]\nname = "decode"\ninput_tokens = 64\n'
                    "output_tokens = 256\nrequests = 4\n")
    workload = load_workload(str(toml))
    session = open_session("nvml")

    async def run() -> list[dict]:
        backend = LlamaCppBackend(model=None, n_ctx=512, n_gpu_layers=-1)
        info = await backend.open()
        try:
            run_id = new_run_id()
            files = RunFiles(tmp_path / "out", fingerprint(), run_id, workload.name)
            state = RunState()
            await run_workload(backend, info, workload, files, fingerprint(), run_id,
                               session, RunOptions(quiet=True, idle_power_s=2.0), state)
            files.close()
            return state.rows
        finally:
            await backend.close()

    (row,) = asyncio.run(run())
    print(f"\nllama.cpp GPU: {row['output_throughput_tok_s']:.1f} out tok/s, "
          f"{row['energy_j']:.1f} J ({row['energy_above_idle_j']:.1f} above idle "
          f"{row['idle_power_w']:.1f} W), {row['j_per_output_token']:.4f} J/out tok, "
          f"peak {row['peak_power_w']:.1f} W, GPU mem {row['gpu_mem_peak_mb']:.0f} MB")
    assert row["power_method"] == "measured" and "nvml" in row["power_source"]
    # A 270M model on a datacenter GPU: well under a joule per token, above a millijoule.
    assert 1e-3 < row["j_per_output_token"] < 5.0
    assert row["gpu_mem_peak_mb"] > 0
