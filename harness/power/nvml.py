"""NVIDIA GPUs through NVML (`nvidia-ml-py`, module `pynvml`, imported on first use).

Energy is the delta of `nvmlDeviceGetTotalEnergyConsumption` (mJ since driver load,
Volta and newer) between the window's edges. A background thread polls power at 20 Hz
for the peak and the timeline: the instantaneous field `NVML_FI_DEV_POWER_INSTANT` where
the driver has it, else `nvmlDeviceGetPowerUsage`, which is a 1-second average that lags
real power (9-11% low during a 5 s load on an H200) and so is never used for energy when
the counter exists. GPUs without the counter integrate the polled samples. The same
thread records device memory used, for the peak. NVML errors become `PowerError`.

Which GPUs: the engine's, not every GPU of the node. NVML numbers GPUs by PCI bus and
ignores `CUDA_VISIBLE_DEVICES`, so the engine's `CUDA_VISIBLE_DEVICES` (indices, GPU
UUIDs or their prefixes, MIG UUIDs) is mapped to NVML indices as CUDA reads it, and only
the first `count` of them are metered when the engine uses fewer than it sees (vLLM:
tensor x pipeline parallel size), as vLLM maps logical to physical device ids. The
GPUs metered and why are said in the first reading's note.
"""

from __future__ import annotations

import os
import re
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


@dataclass(frozen=True)
class EngineDevices:
    """The GPUs an engine runs on, as the engine sees them: its `CUDA_VISIBLE_DEVICES`
    (None: unset, every GPU) and how many of those it uses from the first (None: all;
    0: none, e.g. llama.cpp with n_gpu_layers 0), with where that came from."""

    visible: str | None = None
    count: int | None = None
    why: str = ""
    device_order: str | None = None  # the engine's CUDA_DEVICE_ORDER


def cuda_visible_to_nvml(spec: str | None, uuids: list[str],
                         mig_parents: dict[str, int] | None = None
                         ) -> tuple[list[int], list[str]]:
    """NVML indices of the GPUs that `CUDA_VISIBLE_DEVICES=spec` shows to CUDA, in CUDA's
    order (the first is cuda:0), and notes. `uuids[i]` is NVML GPU i's UUID;
    `mig_parents` maps MIG instance UUIDs to their GPU's index.

    As CUDA reads it: entries are indices or (unique prefixes of) `GPU-` UUIDs; a MIG
    instance (`MIG-<uuid>`, or the older `MIG-GPU-<uuid>/gi/ci`) stands for its GPU, whose
    counters are all NVML has; the list ends at the first entry that names no GPU or one
    already named, so `-1` or an empty value shows none. None shows every GPU."""
    if spec is None:
        return list(range(len(uuids))), []
    out: list[int] = []
    notes: list[str] = []

    def by_prefix(prefix: str, names: list[str]) -> int | None:
        found = [i for i, u in enumerate(names) if u.startswith(prefix)]
        return found[0] if len(found) == 1 else None

    for raw in spec.split(","):
        item = raw.strip()
        idx: int | None = None
        if re.fullmatch(r"\d+", item):
            idx = int(item) if int(item) < len(uuids) else None
        elif item.startswith("MIG-GPU-"):
            idx = by_prefix(item[4:].split("/")[0], uuids)
        elif item.startswith("MIG-"):
            migs = list(mig_parents or {})
            k = by_prefix(item, migs)
            idx = (mig_parents or {})[migs[k]] if k is not None else None
        elif item.startswith("GPU-"):
            idx = by_prefix(item, uuids)
        if item.startswith("MIG-") and idx is not None:
            notes.append(f"{item} is a MIG instance: NVML meters its whole GPU (index {idx}), "
                         "other instances' work included")
        if idx is None or idx in out:
            if item:
                notes.append(f"CUDA_VISIBLE_DEVICES entry {item!r} names no GPU (or one named "
                             "before): CUDA ignores it and every entry after it")
            break
        out.append(idx)
    return out, notes


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
                 visible_devices: str | None = None, device_count: int | None = None
                 ) -> None:
        self._nvml = nvml
        self.poll_interval_s = poll_interval_s
        self.visible_devices = (os.environ.get("CUDA_VISIBLE_DEVICES")
                                if visible_devices is None else visible_devices)
        self.device_count = device_count
        self.devices_why = "this process's CUDA_VISIBLE_DEVICES; the engine's use not known"
        self.device_order = os.environ.get("CUDA_DEVICE_ORDER")
        self.selection_note = ""
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

    def use_engine_devices(self, devices: EngineDevices) -> None:
        """Meter the engine's GPUs (`devices`) from the next window on."""
        self.visible_devices = devices.visible
        self.device_count = devices.count
        self.devices_why = devices.why
        self.device_order = devices.device_order

    def _uuid(self, handle: Any) -> str:
        try:
            return _text(self.lib.nvmlDeviceGetUUID(handle))
        except Exception:  # noqa: BLE001 - no UUID: no entry can name this GPU by UUID
            return ""

    def _mig_parents(self, count: int) -> dict[str, int]:
        """MIG instance UUID -> index of its GPU, for GPUs in MIG mode."""
        parents: dict[str, int] = {}
        for i in range(count):
            handle = self._call("handle", self.lib.nvmlDeviceGetHandleByIndex, i)
            try:
                for k in range(int(self.lib.nvmlDeviceGetMaxMigDeviceCount(handle))):
                    try:
                        mig = self.lib.nvmlDeviceGetMigDeviceHandleByIndex(handle, k)
                    except self.lib.NVMLError:
                        continue  # no instance in this slot
                    parents[self._uuid(mig)] = i
            except (self.lib.NVMLError, AttributeError):
                continue  # not in MIG mode, or an NVML without MIG
        return parents

    def _selected_indices(self) -> list[int]:
        """NVML indices of the engine's GPUs; sets `selection_note` to say which."""
        count = int(self._call("device count", self.lib.nvmlDeviceGetCount))
        spec = self.visible_devices
        handles = [self._call("handle", self.lib.nvmlDeviceGetHandleByIndex, i)
                   for i in range(count)] if spec is not None else []
        uuids = [self._uuid(h) for h in handles] if spec is not None else [""] * count
        migs = self._mig_parents(count) if spec is not None and "MIG-" in spec else None
        visible, notes = cuda_visible_to_nvml(spec, uuids, migs)
        used = visible if self.device_count is None else visible[:self.device_count]
        shown = ", ".join(f"gpu:{i}" for i in used) or "none"
        text = f"metered {shown} of {count} GPU(s) (NVML indices)"
        if spec is not None:
            text += (f"; CUDA_VISIBLE_DEVICES={spec!r} shows "
                     f"{', '.join(map(str, visible)) or 'none'}")
        if self.device_count is not None and self.device_count < len(visible):
            text += f"; the engine uses the first {self.device_count}"
        if self.devices_why:
            text += f" ({self.devices_why})"
        if (spec is not None and re.search(r"(^|,)\s*\d", spec)
                and (self.device_order or "").upper() != "PCI_BUS_ID"):
            names = {_text(self.lib.nvmlDeviceGetName(h)) for h in handles}
            if len(names) > 1:
                notes.append("the GPUs differ and CUDA_DEVICE_ORDER is not PCI_BUS_ID: CUDA "
                             "may number them fastest first, NVML by PCI bus; give UUIDs in "
                             "CUDA_VISIBLE_DEVICES to be sure which are metered")
        self.selection_note = "; ".join([text, *notes])
        return used

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
        if not gpus and self.device_count == 0:
            raise PowerError(f"NVML: the engine uses no GPU ({self.devices_why})")
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
        readings = [self._reading(g, duration) for g in self.gpus]
        if readings and self.selection_note:
            first = readings[0]
            first.note = f"{self.selection_note}; {first.note}" if first.note \
                else self.selection_note
        return readings

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
