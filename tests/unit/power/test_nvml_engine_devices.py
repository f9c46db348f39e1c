"""NVML meters the engine's GPUs, not every GPU of the node: CUDA_VISIBLE_DEVICES (indices,
UUIDs, MIG instances) mapped to NVML's physical indices as CUDA reads it, the first
`count` of them when the engine uses fewer, and the metered GPUs named in power_note."""

from __future__ import annotations

import pytest

from harness.power.base import PowerError
from harness.power.nvml import EngineDevices, NvmlMeter, cuda_visible_to_nvml
from harness.power.session import PowerSession
from tests.support.fake_power import FakeGpu, FakeNvml

UUIDS = [f"GPU-{i}{i}{i}-aaaa" for i in range(8)]


@pytest.mark.parametrize("spec, indices, note", [
    (None, list(range(8)), ""),
    ("3", [3], ""),
    ("5,6", [5, 6], ""),
    (" 6 , 1 ", [6, 1], ""),
    ("GPU-444,GPU-222-aaaa", [4, 2], ""),
    ("1,9,2", [1], "entry '9' names no GPU"),          # CUDA stops at the first bad entry
    ("2,2,3", [2], "entry '2' names no GPU (or one named before)"),
    ("GPU-", [], "entry 'GPU-' names no GPU"),         # ambiguous prefix
    ("-1", [], "entry '-1' names no GPU"),
    ("", [], ""),
    ("MIG-GPU-777-aaaa/1/0", [7], "MIG instance: NVML meters its whole GPU (index 7)"),
    ("MIG-bbbb", [3], "MIG instance: NVML meters its whole GPU (index 3)"),
])
def test_cuda_visible_devices_to_nvml_indices(spec, indices, note):
    got, notes = cuda_visible_to_nvml(spec, UUIDS, {"MIG-bbbb-0001": 3})
    assert got == indices
    assert note in "; ".join(notes)
    if not note:
        assert notes == []


def node(watts: float = 100.0) -> tuple[FakeNvml, list[FakeGpu]]:
    """An 8-GPU node; GPU i draws `watts` x (i + 1)."""
    gpus = [FakeGpu(uuid=UUIDS[i], power_w=watts * (i + 1), energy_mj=10_000_000)
            for i in range(8)]
    return FakeNvml(gpus), gpus


def window(meter: NvmlMeter, gpus: list[FakeGpu], joules: dict[int, float]) -> list:
    meter.start()
    for i, j in joules.items():
        gpus[i].energy_mj += int(j * 1000)
    return meter.stop()


def test_a_one_gpu_engine_on_an_eight_gpu_node_is_charged_one_gpu():
    nvml, gpus = node()
    every = {i: 100.0 * (i + 1) for i in range(8)}  # each GPU's energy in the window
    # What the meter did before: every GPU the process sees, 3,600 J for one engine.
    before = NvmlMeter(nvml=nvml, poll_interval_s=3600, visible_devices=None)
    before.visible_devices = None
    assert sum(r.energy_j for r in window(before, gpus, every)) == pytest.approx(3600.0)
    meter = NvmlMeter(nvml=nvml, poll_interval_s=3600)
    meter.use_engine_devices(EngineDevices(visible=None, count=1, why="vLLM "
                                           "tensor_parallel_size 1 x pipeline_parallel_size 1"))
    (r,) = window(meter, gpus, every)
    assert r.domain == "gpu:0" and r.energy_j == pytest.approx(100.0)
    assert r.note.startswith("metered gpu:0 of 8 GPU(s) (NVML indices); the engine uses the "
                             "first 1 (vLLM tensor_parallel_size 1")


def test_visible_uuids_map_to_physical_gpus_and_tensor_parallel_takes_the_first():
    nvml, gpus = node()
    meter = NvmlMeter(nvml=nvml, poll_interval_s=3600)
    meter.use_engine_devices(EngineDevices(visible="GPU-555,GPU-222,1", count=2,
                                           why="vLLM tensor_parallel_size 2"))
    readings = window(meter, gpus, {5: 60.0, 2: 30.0, 1: 999.0})
    assert [r.domain for r in readings] == ["gpu:5", "gpu:2"]
    assert [r.energy_j for r in readings] == pytest.approx([60.0, 30.0])
    assert ("CUDA_VISIBLE_DEVICES='GPU-555,GPU-222,1' shows 5, 2, 1; the engine uses the "
            "first 2") in readings[0].note


def test_the_session_names_the_metered_gpus_in_power_source_and_power_note():
    nvml, gpus = node()
    session = PowerSession([NvmlMeter(nvml=nvml, poll_interval_s=3600)], "",
                           track_memory=False)
    session.attach(devices=EngineDevices(visible="3,4", count=1, why="vLLM "
                                         "tensor_parallel_size 1"))
    session.start()
    gpus[3].energy_mj += 50_000
    gpus[4].energy_mj += 70_000
    cols, _ = session.stop()
    assert cols["power_source"] == "nvml(gpu:3)" and cols["energy_j"] == pytest.approx(50.0)
    assert "metered gpu:3 of 8 GPU(s)" in cols["power_note"]


def test_an_engine_on_the_cpu_meters_no_gpu():
    nvml, _ = node()
    meter = NvmlMeter(nvml=nvml, poll_interval_s=3600)
    meter.use_engine_devices(EngineDevices(count=0, why="llama.cpp with n_gpu_layers 0 runs "
                                           "on the CPU"))
    with pytest.raises(PowerError, match="the engine uses no GPU .llama.cpp with n_gpu_layers"):
        meter.start()


def test_mixed_gpus_numbered_by_index_warn_about_the_device_order():
    nvml, gpus = node()
    gpus[1].name = "NVIDIA A100-SXM4-80GB"
    meter = NvmlMeter(nvml=nvml, poll_interval_s=3600)
    meter.use_engine_devices(EngineDevices(visible="1", count=None, device_order=None))
    (r,) = window(meter, gpus, {1: 5.0})
    assert "CUDA_DEVICE_ORDER is not PCI_BUS_ID" in r.note
    meter.use_engine_devices(EngineDevices(visible="1", device_order="PCI_BUS_ID"))
    (r,) = window(meter, gpus, {1: 5.0})
    assert "CUDA_DEVICE_ORDER" not in r.note


def test_a_mig_instance_meters_its_parent_gpu_with_a_note():
    nvml, gpus = node()
    gpus[6].mig_uuids = ["MIG-aaaa-1111", "MIG-bbbb-2222"]
    meter = NvmlMeter(nvml=nvml, poll_interval_s=3600)
    meter.use_engine_devices(EngineDevices(visible="MIG-bbbb-2222"))
    (r,) = window(meter, gpus, {6: 7.0})
    assert r.domain == "gpu:6" and r.energy_j == pytest.approx(7.0)
    assert "MIG instance: NVML meters its whole GPU (index 6)" in r.note
