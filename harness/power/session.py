"""The power session the runner wraps around each measured phase: it combines the
chosen meters, measures idle power before the phase, polls peak RSS, and turns the
readings into result-row columns plus a power timeline. A failing meter becomes an
`unavailable` reading with its reason; it never raises into the runner."""

from __future__ import annotations

import time
from typing import Any

from harness.power.base import Meter, PowerError, Reading, unavailable
from harness.power.columns import energy_columns
from harness.power.memory import MemoryPoller
from harness.power.nvml import EngineDevices, NvmlMeter


def _failed(meter: Meter, exc: BaseException, duration_s: float = 0.0) -> Reading:
    text = str(exc) if isinstance(exc, PowerError) else f"{type(exc).__name__}: {exc}"
    return unavailable(meter.name, meter.name, f"{meter.name} failed: {text}", duration_s)


class PowerSession:
    """Meters (possibly none) around a window. With no meter every energy column stays
    empty and `power_method` is `unavailable` with the reason in `power_note`."""

    def __init__(self, meters: list[Meter] | None = None,
                 reason: str = "power measurement off (--power none)",
                 track_memory: bool = True, summary: str = "") -> None:
        self.meters = list(meters or [])
        self.reason = reason
        self.summary = summary or reason
        self.memory = MemoryPoller() if track_memory else None
        self.idle: list[Reading] = []
        self._idle_timeline: list[dict[str, Any]] = []
        self._started: list[Meter] = []
        self._start_failures: list[Reading] = []
        self._t0 = 0.0
        self.last_readings: list[Reading] = []

    @property
    def has_meter(self) -> bool:
        return bool(self.meters)

    def attach(self, backend: Any = None, info: Any = None, server: Any = None,
               devices: EngineDevices | None = None) -> None:
        """Learn what the run uses: a managed server's process joins the RSS polling, and
        the NVML meter meters the engine's GPUs (`devices`) instead of every GPU seen."""
        pid = getattr(server, "pid", None)
        if self.memory is not None and isinstance(pid, int):
            self.memory.add_pid(pid)
        if devices is not None:
            for m in self.meters:
                if isinstance(m, NvmlMeter):
                    m.use_engine_devices(devices)

    # -- windows ---------------------------------------------------------------------
    def _start_meters(self) -> tuple[list[Meter], list[Reading]]:
        started, failures = [], []
        for m in self.meters:
            try:
                m.start()
                started.append(m)
            except Exception as exc:  # noqa: BLE001 - a failing meter is reported, not raised
                failures.append(_failed(m, exc))
        return started, failures

    def _stop_meters(self, started: list[Meter]) -> list[Reading]:
        readings: list[Reading] = []
        for m in started:
            try:
                readings += m.stop()
            except Exception as exc:  # noqa: BLE001 - a failing meter is reported, not raised
                readings.append(_failed(m, exc, time.perf_counter() - self._t0))
        return readings

    def measure_idle(self, seconds: float) -> None:
        """Average power of each domain over `seconds` with nothing running; used for
        every window after it (the runner measures it once, before any request)."""
        if not self.meters or seconds <= 0:
            return
        self._t0 = time.perf_counter()
        started, failures = self._start_meters()
        time.sleep(seconds)
        self.idle = self._stop_meters(started) + failures
        self._idle_timeline = _timeline(self.idle, "idle")

    def start(self) -> None:
        if self.memory is not None:
            self.memory.start()
        self._t0 = time.perf_counter()
        self._started, self._start_failures = self._start_meters()

    def stop(self) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """(row columns, timeline samples) of the window since `start()`."""
        readings = self._stop_meters(self._started) + self._start_failures
        self._started, self._start_failures = [], []
        cols = energy_columns(readings, self.idle, self.reason)
        cols["peak_rss_mb"] = self.memory.stop() if self.memory is not None else None
        timeline = self._idle_timeline + _timeline(readings, "measured")
        self._idle_timeline = []  # written once, with the first window's timeline
        self.last_readings = readings
        return cols, timeline

    def describe(self) -> str:
        if not self.meters:
            return f"unavailable ({self.summary})"
        return ", ".join(f"{m.name} ({m.method})" for m in self.meters)

    def close(self) -> None:
        for m in self.meters:
            try:
                m.close()
            except Exception:  # noqa: BLE001, S110 - closing; nothing useful to report
                pass


def _timeline(readings: list[Reading], phase: str) -> list[dict[str, Any]]:
    """Power samples as JSONL records, ordered by time."""
    rows = [{"phase": phase, "t_s": round(t, 4), "domain": r.domain, "source": r.source,
             "method": r.method, "power_w": round(w, 3)}
            for r in readings for t, w in r.timeline]
    rows.sort(key=lambda x: x["t_s"])
    return rows
