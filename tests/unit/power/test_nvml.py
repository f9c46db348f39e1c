"""NVML meter against a fake NVML module with pynvml's functions: counter deltas,
unsupported calls, several GPUs, errors."""

from __future__ import annotations

import time

import pytest

from harness.power.base import MEASURED, UNAVAILABLE
from harness.power.nvml import NvmlMeter
from tests.support.fake_power import FakeGpu, FakeNvml


def test_energy_is_the_counter_delta_and_peak_the_instant_samples() -> None:
    gpu = FakeGpu(energy_mj=5_000_000, power_w=250.0)
    meter = NvmlMeter(nvml=FakeNvml([gpu]), poll_interval_s=3600, visible_devices=None)
    meter.start()
    gpu.power_w, gpu.mem_used_mb = 690.0, 41_000.0
    meter.sample()
    gpu.power_w, gpu.mem_used_mb = 400.0, 30_000.0
    gpu.energy_mj += 12_345  # 12.345 J over the window
    (r,) = meter.stop()
    assert (r.domain, r.source, r.method) == ("gpu:0", "nvml", MEASURED)
    assert r.energy_j == pytest.approx(12.345)
    assert r.peak_power_w == pytest.approx(690.0)
    assert r.samples == 3 and [w for _, w in r.timeline] == [250.0, 690.0, 400.0]
    assert r.mem_peak_mb == pytest.approx(41_000.0)
    assert "instant" in gpu.calls
    assert "average" not in gpu.calls  # the lagging 1-s average is not used when instant is
    assert "counter delta" in r.note and "lags" not in r.note


def test_every_visible_gpu_and_cuda_visible_devices() -> None:
    gpus = [FakeGpu(uuid=f"GPU-{i}abc", energy_mj=1000 * i) for i in range(3)]
    nvml = FakeNvml(gpus)
    meter = NvmlMeter(nvml=nvml, poll_interval_s=3600, visible_devices=None)
    meter.start()
    for i, g in enumerate(gpus):
        g.energy_mj += 1000 * (i + 1)
    readings = meter.stop()
    assert [r.domain for r in readings] == ["gpu:0", "gpu:1", "gpu:2"]
    assert [r.energy_j for r in readings] == pytest.approx([1.0, 2.0, 3.0])

    only = NvmlMeter(nvml=nvml, poll_interval_s=3600, visible_devices="2,GPU-0")
    only.start()
    assert [g.index for g in only.gpus] == [2, 0]
    only.stop()
    ok, reason = NvmlMeter(nvml=nvml, visible_devices="").available()
    assert not ok and "no NVIDIA GPU visible" in reason


def test_gpu_without_energy_counter_integrates_samples() -> None:
    gpu = FakeGpu(has_energy=False, power_w=100.0)
    meter = NvmlMeter(nvml=FakeNvml([gpu]), poll_interval_s=0.01, visible_devices=None)
    ok, reason = meter.available()
    assert ok and "integrates power samples" in reason
    meter.start()
    time.sleep(0.3)
    (r,) = meter.stop()
    assert r.method == MEASURED and "integrated" in r.note
    # Constant 100 W from the first sample (at start) to the last (at stop).
    assert r.energy_j == pytest.approx(100.0 * r.duration_s, rel=0.02)
    assert r.samples >= 3


def test_instant_field_unsupported_falls_back_to_the_lagging_average() -> None:
    gpu = FakeGpu(has_instant=False, power_w=300.0, average_power_w=270.0)
    meter = NvmlMeter(nvml=FakeNvml([gpu]), poll_interval_s=3600, visible_devices=None)
    meter.start()
    gpu.energy_mj += 3000
    (r,) = meter.stop()
    assert r.energy_j == pytest.approx(3.0)  # energy still from the counter
    assert r.peak_power_w == pytest.approx(270.0)
    assert "1-s average that lags" in r.note


def test_no_counter_and_no_power_reading_is_unavailable() -> None:
    gpu = FakeGpu(has_energy=False, has_instant=False, has_average=False)
    meter = NvmlMeter(nvml=FakeNvml([gpu]), poll_interval_s=3600, visible_devices=None)
    meter.start()
    (r,) = meter.stop()
    assert r.method == UNAVAILABLE and "neither energy counter nor power" in r.note


def test_counter_going_backwards_is_unavailable_for_that_gpu_only() -> None:
    a, b = FakeGpu(energy_mj=10_000), FakeGpu(energy_mj=10_000)
    meter = NvmlMeter(nvml=FakeNvml([a, b]), poll_interval_s=3600, visible_devices=None)
    meter.start()
    a.energy_mj = 500  # driver reloaded
    b.energy_mj += 2000
    ra, rb = meter.stop()
    assert ra.method == UNAVAILABLE and "went backwards" in ra.note
    assert rb.method == MEASURED and rb.energy_j == pytest.approx(2.0)


def test_init_failure_and_missing_library_are_unavailable_with_reason() -> None:
    ok, reason = NvmlMeter(nvml=FakeNvml([], init_error=12)).available()
    assert not ok and "NVML init failed" in reason and "Library Not Found" in reason


def test_nvml_errors_inside_the_window_become_power_errors() -> None:
    """A non-'not supported' error on the energy call is reported, not raised."""
    nvml = FakeNvml([FakeGpu()])
    meter = NvmlMeter(nvml=nvml, poll_interval_s=3600, visible_devices=None)
    meter.start()

    def broken(handle):  # GPU fell off the bus
        raise nvml.NVMLError(15)

    nvml.nvmlDeviceGetTotalEnergyConsumption = broken
    (r,) = meter.stop()
    assert r.method == UNAVAILABLE and "NVML total energy of GPU 0 failed" in r.note


def test_real_pynvml_without_a_driver_is_unavailable() -> None:
    """The real nvidia-ml-py on this GPU-less machine: a reason, no exception."""
    pytest.importorskip("pynvml")
    import pynvml

    try:
        pynvml.nvmlInit()
        pynvml.nvmlShutdown()
        pytest.skip("an NVIDIA driver is present here")
    except pynvml.NVMLError:
        pass
    ok, reason = NvmlMeter().available()
    assert not ok and reason.startswith("NVML init failed")
