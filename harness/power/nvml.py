"""NVIDIA GPUs through NVML (`nvidia-ml-py`, module `pynvml`, imported on first use).

Energy is the delta of `nvmlDeviceGetTotalEnergyConsumption` (mJ since driver load,
Volta and newer) between the window's edges. A background thread polls power at 20 Hz
for the peak and the timeline: the instantaneous field `NVML_FI_DEV_POWER_INSTANT` where
the driver has it, else `nvmlDeviceGetPowerUsage`, which is a 1-second average that lags
real power (9-11% low during a 5 s load on an H200) and so is never used for energy when
the counter exists. GPUs without the counter integrate the polled samples. The same
thread records device memory used, for the peak. Every GPU the process can see
(`CUDA_VISIBLE_DEVICES` respected) is read. NVML errors become `PowerError`.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from harness.power.base import (
    MEASURED,
    Meter,
    Poller,
    PowerError,
    Reading,
    trapezoid_j,
    unavailable,
)

POLL_INTERVAL_S = 0.05
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_FUNCTION_NOT_FOUND = 13
FI_DEV_POWER_INSTANT = 186  # NVML_FI_DEV_POWER_INSTANT, when pynvml lacks the constant


def _load_pynvml() -> Any:
    try:
        import pynvml
    except ImportError:
        raise PowerError("NVML: nvidia-ml-py is not installed "
                         "(pip install nvidia-ml-py)") from None
    return pynvml


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


@dataclass
class Gpu:
    """One GPU being metered and what was read from it during the window."""

    index: int
    handle: Any
    name: str
    energy_start_mj: int | None = None   # None: no energy counter, integrate samples
    power_source: str = "instant"        # instant | average (GetPowerUsage) | none
    power: list[tuple[float, float]] = field(default_factory=list)
    mem_peak_mb: float | None = None
    error: str = ""


class NvmlMeter(Meter):
    """GPU energy from NVML counters (measured)."""

    name = "nvml"
    method = MEASURED

    def __init__(self, nvml: Any = None, poll_interval_s: float = POLL_INTERVAL_S,
                 visible_devices: str | None = None) -> None:
        self._nvml = nvml
        self.poll_interval_s = poll_interval_s
        self.visible_devices = (os.environ.get("CUDA_VISIBLE_DEVICES")
                                if visible_devices is None else visible_devices)
        self._initialized = False
        self.gpus: list[Gpu] = []
        self._poller: Poller | None = None
        self._lock = threading.Lock()
        self._t0 = 0.0
        self._t_last = 0.0

    # -- library plumbing -------------------------------------------------------------
    @property
    def lib(self) -> Any:
        if self._nvml is None:
            self._nvml = _load_pynvml()
        return self._nvml

    def _call(self, what: str, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except self.lib.NVMLError as exc:
            raise PowerError(f"NVML {what} failed: {exc}") from None

    def _is_unsupported(self, exc: BaseException) -> bool:
        cls = getattr(self.lib, "NVMLError_NotSupported", None)
        if cls is not None and isinstance(exc, cls):
            return True
        return getattr(exc, "value", None) in (NVML_ERROR_NOT_SUPPORTED,
                                               NVML_ERROR_FUNCTION_NOT_FOUND)

    def _init(self) -> None:
        if not self._initialized:
            try:
                self.lib.nvmlInit()
            except self.lib.NVMLError as exc:
                raise PowerError(f"NVML init failed: {exc} (no NVIDIA GPU or driver "
                                 "here?)") from None
            self._initialized = True

    def close(self) -> None:
        if self._initialized:
            try:
                self.lib.nvmlShutdown()
            except Exception:  # noqa: BLE001, S110 - shutting down; nothing to report
                pass
            self._initialized = False

    def _selected_indices(self) -> list[int]:
        count = int(self._call("device count", self.lib.nvmlDeviceGetCount))
        spec = self.visible_devices
        if spec is None:
            return list(range(count))
        wanted = [s.strip() for s in spec.split(",") if s.strip()]
        indices: list[int] = []
        for item in wanted:
            if item.isdigit():
                if int(item) < count:
                    indices.append(int(item))
                continue
            for i in range(count):  # a UUID (GPU-...) or MIG id: match by prefix
                handle = self._call("handle", self.lib.nvmlDeviceGetHandleByIndex, i)
                try:
                    uuid = _text(self.lib.nvmlDeviceGetUUID(handle))
                except Exception:  # noqa: BLE001, S112 - no UUID: cannot match this entry
                    continue
                if uuid.startswith(item) and i not in indices:
                    indices.append(i)
        return indices

    def _open_gpus(self) -> list[Gpu]:
        self._init()
        gpus = []
        for i in self._selected_indices():
            handle = self._call(f"handle of GPU {i}", self.lib.nvmlDeviceGetHandleByIndex, i)
            try:
                name = _text(self.lib.nvmlDeviceGetName(handle))
            except self.lib.NVMLError:
                name = "NVIDIA GPU"
            gpus.append(Gpu(index=i, handle=handle, name=name))
        if not gpus:
            raise PowerError("NVML: no NVIDIA GPU visible"
                             + (f" (CUDA_VISIBLE_DEVICES={self.visible_devices!r})"
                                if self.visible_devices is not None else ""))
        return gpus

    # -- single reads -----------------------------------------------------------------
    def _energy_mj(self, gpu: Gpu) -> int:
        return int(self._call(f"total energy of GPU {gpu.index}",
                              self.lib.nvmlDeviceGetTotalEnergyConsumption, gpu.handle))

    def _instant_power_w(self, gpu: Gpu) -> float:
        field_id = getattr(self.lib, "NVML_FI_DEV_POWER_INSTANT", FI_DEV_POWER_INSTANT)
        values = self.lib.nvmlDeviceGetFieldValues(gpu.handle, [field_id])
        v = values[0]
        if getattr(v, "nvmlReturn", 0) != 0:
            raise self.lib.NVMLError(getattr(v, "nvmlReturn", NVML_ERROR_NOT_SUPPORTED))
        value = v.value
        by_type = {0: "dVal", 1: "uiVal", 2: "ulVal", 3: "ullVal", 4: "sllVal", 5: "siVal"}
        raw = getattr(value, by_type.get(getattr(v, "valueType", 1), "uiVal"))
        return float(raw) / 1000.0

    def _power_w(self, gpu: Gpu) -> float:
        if gpu.power_source == "instant":
            return self._instant_power_w(gpu)
        return float(self.lib.nvmlDeviceGetPowerUsage(gpu.handle)) / 1000.0

    def _probe(self, gpu: Gpu) -> None:
        """Find out which counters this GPU has: energy counter, instantaneous power."""
        try:
            gpu.energy_start_mj = int(self.lib.nvmlDeviceGetTotalEnergyConsumption(gpu.handle))
        except self.lib.NVMLError as exc:
            if not self._is_unsupported(exc):
                raise PowerError(f"NVML total energy of GPU {gpu.index} failed: {exc}") \
                    from None
            gpu.energy_start_mj = None
        for source in ("instant", "average"):
            gpu.power_source = source
            try:
                self._power_w(gpu)
                break
            except self.lib.NVMLError:
                continue
        else:
            gpu.power_source = "none"

    # -- the interface ----------------------------------------------------------------
    def available(self) -> tuple[bool, str]:
        try:
            gpus = self._open_gpus()
            parts = []
            for g in gpus:
                self._probe(g)
                how = ("energy counter" if g.energy_start_mj is not None
                       else "no energy counter: integrates power samples")
                parts.append(f"gpu:{g.index} {g.name} ({how})")
        except PowerError as exc:
            return False, str(exc)
        return True, "NVML " + "; ".join(parts)

    def start(self) -> None:
        self.gpus = self._open_gpus()
        for g in self.gpus:
            self._probe(g)
            if g.energy_start_mj is None and g.power_source == "none":
                g.error = "NVML: neither energy counter nor power reading supported"
        self._t0 = time.perf_counter()
        self.sample()
        self._poller = Poller(self.sample, self.poll_interval_s, "nvml-poller")
        self._poller.start()

    def sample(self) -> None:
        """Read power and memory of every GPU once (the poller calls this at 20 Hz)."""
        with self._lock:
            t = self._t_last = time.perf_counter() - self._t0
            for g in self.gpus:
                if g.error:
                    continue
                try:
                    if g.power_source != "none":
                        g.power.append((t, self._power_w(g)))
                    used_mb = self.lib.nvmlDeviceGetMemoryInfo(g.handle).used / 2**20
                    g.mem_peak_mb = max(g.mem_peak_mb or 0.0, used_mb)
                except self.lib.NVMLError as exc:
                    if g.energy_start_mj is None:  # samples were its only energy source
                        g.error = f"NVML power reading of GPU {g.index} failed: {exc}"

    def stop(self) -> list[Reading]:
        if self._poller is not None:
            self._poller.stop()
        self.sample()
        duration = self._t_last  # the final sample closes the window
        return [self._reading(g, duration) for g in self.gpus]

    def _reading(self, g: Gpu, duration: float) -> Reading:
        domain = f"gpu:{g.index}"
        if g.error:
            return unavailable(domain, self.name, g.error, duration)
        watts = [w for _, w in g.power]
        peak = max(watts, default=None)
        lag = ("" if g.power_source == "instant" else
               "; power from nvmlDeviceGetPowerUsage, a 1-s average that lags: "
               "peak understated")
        if g.energy_start_mj is not None:
            try:
                end_mj = self._energy_mj(g)
            except PowerError as exc:
                return unavailable(domain, self.name, str(exc), duration)
            if end_mj < g.energy_start_mj:
                return unavailable(domain, self.name,
                                   f"NVML total energy of GPU {g.index} went backwards "
                                   f"({g.energy_start_mj} -> {end_mj} mJ; driver reloaded?)",
                                   duration)
            energy_j = (end_mj - g.energy_start_mj) / 1000.0
            note = f"{g.name}: total-energy counter delta; peak from {len(watts)} samples" + lag
        else:
            if len(g.power) < 2:
                return unavailable(domain, self.name,
                                   f"{g.name}: no energy counter and too few power samples",
                                   duration)
            energy_j = trapezoid_j(g.power)
            note = (f"{g.name}: no energy counter (pre-Volta): energy integrated from "
                    f"{len(watts)} power samples at {1 / self.poll_interval_s:.0f} Hz" + lag)
        return Reading(domain=domain, source=self.name, method=MEASURED, energy_j=energy_j,
                       avg_power_w=energy_j / duration if duration > 0 else None,
                       peak_power_w=peak, samples=len(watts), duration_s=duration,
                       note=note, mem_peak_mb=g.mem_peak_mb, timeline=list(g.power))
