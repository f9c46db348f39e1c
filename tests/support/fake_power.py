"""Fakes for the power hardware this machine lacks: a RAPL sysfs tree, an NVML module
object with pynvml's functions, zeus-apple-silicon, and a powermetrics that prints plist
samples. Only hardware is faked; the meters under test are the real code."""

from __future__ import annotations

import os
import plistlib
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any


# -- RAPL sysfs ----------------------------------------------------------------------------
def make_rapl_tree(root: Path, zones: dict[str, dict[str, Any]]) -> Path:
    """zones: {"intel-rapl:0": {"name": "package-0", "energy_uj": 0, "max": 1000}, ...};
    sub-zones are given as "intel-rapl:0:1"."""
    root.mkdir(parents=True, exist_ok=True)
    for zone, spec in zones.items():
        parts = zone.split(":")
        path = root / zone if len(parts) == 2 else root / ":".join(parts[:2]) / zone
        path.mkdir(parents=True, exist_ok=True)
        (path / "name").write_text(spec["name"] + "\n")
        (path / "energy_uj").write_text(f"{spec.get('energy_uj', 0)}\n")
        if spec.get("max") is not None:
            (path / "max_energy_range_uj").write_text(f"{spec['max']}\n")
    return root


def zone_path(root: Path, zone: str) -> Path:
    parts = zone.split(":")
    return root / zone if len(parts) == 2 else root / ":".join(parts[:2]) / zone


def set_energy(root: Path, zone: str, value_uj: int) -> None:
    """Write a counter value the way the kernel shows it (atomically for readers)."""
    path = zone_path(root, zone) / "energy_uj"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(f"{value_uj}\n")
    os.replace(tmp, path)


class RaplWriter:
    """Advances fake RAPL counters at constant power on a thread, wrapping at `max`."""

    def __init__(self, root: Path, watts: dict[str, float], max_uj: dict[str, int],
                 step_s: float = 0.005) -> None:
        self.root, self.watts, self.max_uj, self.step_s = root, watts, max_uj, step_s
        self.values = {z: 0 for z in watts}
        self.wraps = {z: 0 for z in watts}
        self.backwards_after_s: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        t0 = last = time.perf_counter()
        while not self._stop.wait(self.step_s):
            now = time.perf_counter()
            for z, w in self.watts.items():
                if z in self.backwards_after_s and now - t0 > self.backwards_after_s.pop(z):
                    self.values[z] //= 3  # a drop far from the top: a reset, not a wrap
                    set_energy(self.root, z, self.values[z])
                    continue
                v = self.values[z] + int(w * (now - last) * 1e6)
                if v >= self.max_uj[z]:
                    v -= self.max_uj[z]
                    self.wraps[z] += 1
                self.values[z] = v
                set_energy(self.root, z, v)
            last = now

    def __enter__(self) -> RaplWriter:  # noqa: PYI034
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


# -- NVML ----------------------------------------------------------------------------------
class NVMLError(Exception):
    def __init__(self, value: int = 999) -> None:
        super().__init__(value)
        self.value = value

    def __str__(self) -> str:
        return {3: "Not Supported", 12: "NVML Shared Library Not Found"}.get(
            self.value, f"NVML error {self.value}")


class NVMLError_NotSupported(NVMLError):
    def __init__(self, value: int = 3) -> None:
        super().__init__(3)


@dataclass
class FakeGpu:
    name: str = "NVIDIA H100 80GB HBM3"
    uuid: str = "GPU-aaaa"
    energy_mj: int = 1_000_000
    has_energy: bool = True
    has_instant: bool = True
    has_average: bool = True
    power_w: float = 300.0
    average_power_w: float | None = None  # GetPowerUsage, the lagging 1-s average
    mem_used_mb: float = 1000.0
    calls: list[str] = field(default_factory=list)
    mig_uuids: list[str] | None = None  # MIG instances when the GPU is in MIG mode


class FakeNvml:
    """An object with the pynvml functions the meter calls, over a list of FakeGpu."""

    NVML_FI_DEV_POWER_INSTANT = 186
    NVMLError = NVMLError
    NVMLError_NotSupported = NVMLError_NotSupported

    def __init__(self, gpus: list[FakeGpu], init_error: int | None = None) -> None:
        self.gpus = gpus
        self.init_error = init_error
        self.initialized = 0

    def nvmlInit(self) -> None:
        if self.init_error is not None:
            raise NVMLError(self.init_error)
        self.initialized += 1

    def nvmlShutdown(self) -> None:
        self.initialized -= 1

    def nvmlDeviceGetCount(self) -> int:
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, i: int) -> FakeGpu:
        return self.gpus[i]

    def nvmlDeviceGetName(self, h: FakeGpu) -> bytes:
        return h.name.encode()

    def nvmlDeviceGetUUID(self, h: FakeGpu) -> str:
        return h.uuid

    def nvmlDeviceGetMaxMigDeviceCount(self, h: FakeGpu) -> int:
        if h.mig_uuids is None:
            raise NVMLError_NotSupported()
        return 7

    def nvmlDeviceGetMigDeviceHandleByIndex(self, h: FakeGpu, k: int) -> Any:
        if h.mig_uuids is None or k >= len(h.mig_uuids):
            raise NVMLError(13)  # no instance in this slot
        return SimpleNamespace(uuid=h.mig_uuids[k])

    def nvmlDeviceGetTotalEnergyConsumption(self, h: FakeGpu) -> int:
        h.calls.append("energy")
        if not h.has_energy:
            raise NVMLError_NotSupported()
        return h.energy_mj

    def nvmlDeviceGetFieldValues(self, h: FakeGpu, ids: list[int]) -> list[Any]:
        assert ids == [186]
        h.calls.append("instant")
        ret = 0 if h.has_instant else 3
        value = SimpleNamespace(uiVal=int(h.power_w * 1000))
        return [SimpleNamespace(fieldId=186, nvmlReturn=ret, valueType=1, value=value)]

    def nvmlDeviceGetPowerUsage(self, h: FakeGpu) -> int:
        h.calls.append("average")
        if not h.has_average:
            raise NVMLError_NotSupported()
        w = h.power_w if h.average_power_w is None else h.average_power_w
        return int(w * 1000)

    def nvmlDeviceGetMemoryInfo(self, h: FakeGpu) -> Any:
        return SimpleNamespace(used=int(h.mem_used_mb * 2**20), total=80 * 2**30)


# -- Apple ---------------------------------------------------------------------------------
def powermetrics_plist(elapsed_ms: float, cpu_mw: float, gpu_mw: float, ane_mw: float = 0.0,
                       with_energy: bool = True) -> bytes:
    """One sample as `powermetrics -f plist --samplers cpu_power,gpu_power` prints it."""
    elapsed_s = elapsed_ms / 1000
    processor: dict[str, Any] = {
        "clusters": [{"name": "E-Cluster", "freq_hz": 1.0e9}],
        "cpu_power": cpu_mw, "gpu_power": gpu_mw, "ane_power": ane_mw,
        "combined_power": cpu_mw + gpu_mw + ane_mw,
    }
    if with_energy:
        processor.update(cpu_energy=int(cpu_mw * elapsed_s), gpu_energy=int(gpu_mw * elapsed_s),
                         ane_energy=int(ane_mw * elapsed_s))
    doc = {"is_delta": True, "elapsed_ns": int(elapsed_ms * 1e6), "hw_model": "Mac14,13",
           "kern_osversion": "23A344", "timestamp": "2026-11-27T18:00:00Z",
           "processor": processor, "thermal_pressure": "Nominal",
           "gpu": {"freq_hz": 389.0, "idle_ratio": 0.9}}
    return plistlib.dumps(doc)


FAKE_POWERMETRICS = '''
import sys, time, plistlib
args = sys.argv[1:]
count = int(args[args.index("-n") + 1]) if "-n" in args else None
interval_ms = float(args[args.index("-i") + 1]) if "-i" in args else 100
startup_s = float(args[args.index("--startup-s") + 1]) if "--startup-s" in args else 0.0
if "--fail" in args:
    sys.stderr.write("sudo: a password is required\\n")
    sys.exit(1)
time.sleep(startup_s)  # sudo and powermetrics' own start-up: no sample covers it
n = 0
last = time.perf_counter()
while count is None or n < count:
    time.sleep(interval_ms / 1000)
    now = time.perf_counter()
    el = (now - last) * 1e3
    last = now
    doc = {"elapsed_ns": int(el * 1e6), "processor": {
        "cpu_energy": int(4000 * el / 1e3), "gpu_energy": int(6000 * el / 1e3),
        "ane_energy": 0, "cpu_power": 4000.0, "gpu_power": 6000.0, "ane_power": 0.0,
        "combined_power": 10000.0}}
    sys.stdout.buffer.write(b"\\0" + plistlib.dumps(doc))  # NUL before, as powermetrics
    sys.stdout.buffer.flush()
    n += 1
'''


class FakeZeus:
    """zeus_apple_silicon's surface: AppleEnergyMonitor with begin/end windows, whose
    counters advance at fixed mW per part while time passes."""

    def __init__(self, mw: dict[str, float] | None = None) -> None:
        self.mw = mw or {"cpu_total_mj": 5000.0, "gpu_mj": 15000.0, "ane_mj": 0.0,
                         "dram_mj": 1000.0}
        zeus = self

        class AppleEnergyMonitor:
            def __init__(self) -> None:
                self.windows: dict[str, float] = {}

            def begin_window(self, label: str) -> None:
                self.windows[label] = time.perf_counter()

            def end_window(self, label: str) -> Any:
                dt = time.perf_counter() - self.windows.pop(label)
                return SimpleNamespace(**{k: v * dt for k, v in zeus.mw.items()},
                                       efficiency_cores_mj=None, gpu_sram_mj=None)

        self.AppleEnergyMonitor = AppleEnergyMonitor
