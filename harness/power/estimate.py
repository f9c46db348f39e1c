"""An estimate, not a measurement: CPU utilization (psutil, whole machine) × the CPU's
TDP. The TDP comes from `--tdp-w` or a small table of known CPUs. Always labelled
`estimated`; it ignores idle floors, turbo above TDP, memory, fans and power supplies.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable

from harness.power.base import ESTIMATED, Meter, Poller, PowerError, Reading, trapezoid_j
from harness.results.machine import fingerprint

POLL_INTERVAL_S = 0.25

# (regex on the CPU model name, TDP in watts: the vendor's rated TDP / base power).
KNOWN_TDP_W: list[tuple[str, float]] = [
    (r"EPYC 9654\b", 360.0),
    (r"EPYC 7763\b", 280.0),
    (r"EPYC 7742\b", 225.0),
    (r"Xeon.*Platinum 8480\+?", 350.0),
    (r"Xeon.*Platinum 8380\b", 270.0),
    (r"Xeon.*Platinum 8275CL\b", 240.0),
    (r"Ryzen 9 7950X\b", 170.0),
    (r"Ryzen 9 5950X\b", 105.0),
    (r"Core\(TM\) i9-13900K\b", 125.0),
    (r"Core\(TM\) i9-14900K\b", 125.0),
    (r"Core\(TM\) i7-12700K\b", 125.0),
    (r"Apple M1\b(?! (Pro|Max|Ultra))", 20.0),
    (r"Apple M2 Max\b", 40.0),
    (r"Apple M2 Ultra\b", 80.0),
]


def known_tdp_w(cpu_model: str) -> float | None:
    """The table's TDP for this CPU model name, or None."""
    for pattern, tdp in KNOWN_TDP_W:
        if re.search(pattern, cpu_model or ""):
            return tdp
    return None


def estimated_power_w(cpu_percent: float, tdp_w: float) -> float:
    """Machine-wide CPU utilization (0-100 %) × TDP."""
    return max(0.0, min(cpu_percent, 100.0)) / 100.0 * tdp_w


class CpuBusy:
    """Machine-wide CPU utilization (%) since the previous call, from psutil.cpu_times()
    deltas kept here (psutil.cpu_percent's reference point is shared process-wide)."""

    def __init__(self) -> None:
        self._last: tuple[float, float] | None = None

    def __call__(self) -> float:
        import psutil

        t = psutil.cpu_times()
        idle = t.idle + getattr(t, "iowait", 0.0)
        total = sum(t) - getattr(t, "guest", 0.0) - getattr(t, "guest_nice", 0.0)
        last, self._last = self._last, (idle, total)
        if last is None or total <= last[1]:
            return 0.0
        return 100.0 * (1.0 - (idle - last[0]) / (total - last[1]))


class EstimateMeter(Meter):
    """CPU power estimated from utilization × TDP (estimated)."""

    name = "estimate"
    method = ESTIMATED

    def __init__(self, tdp_w: float | None = None, cpu_model: str | None = None,
                 poll_interval_s: float = POLL_INTERVAL_S,
                 cpu_percent: Callable[[], float] | None = None) -> None:
        if cpu_model is None:
            cpu_model = str(fingerprint().get("cpu_model") or "")
        self.cpu_model = cpu_model
        self.tdp_w = tdp_w
        self.tdp_source = "--tdp-w"
        if tdp_w is None:
            self.tdp_w = known_tdp_w(cpu_model)
            self.tdp_source = "table of known CPUs"
        self.poll_interval_s = poll_interval_s
        self._cpu_percent = cpu_percent  # utilization % since the last call (tests: a fake)
        self._points: list[tuple[float, float]] = []
        self._lock = threading.Lock()
        self._poller: Poller | None = None
        self._t0 = 0.0

    def _percent(self) -> float:
        if self._cpu_percent is None:
            self._cpu_percent = CpuBusy()
        return float(self._cpu_percent())

    def available(self) -> tuple[bool, str]:
        if self.tdp_w is None:
            return False, (f"TDP of '{self.cpu_model}' unknown: give it with --tdp-w "
                           "(only with --power estimate)")
        if self.tdp_w <= 0:
            return False, f"--tdp-w must be > 0, got {self.tdp_w:g}"
        return True, (f"CPU utilization x TDP {self.tdp_w:g} W ({self.tdp_source}); "
                      "an estimate, only with --power estimate")

    def start(self) -> None:
        ok, reason = self.available()
        if not ok:
            raise PowerError(reason)
        self._points = []
        self._percent()  # psutil: the first call only sets the reference point
        self._t0 = time.perf_counter()
        self._poller = Poller(self.sample, self.poll_interval_s, "estimate-poller")
        self._poller.start()

    def sample(self) -> None:
        """Utilization since the last call → watts at this instant."""
        with self._lock:
            t = time.perf_counter() - self._t0
            w = estimated_power_w(self._percent(), float(self.tdp_w or 0))
            # Utilization is an average over the interval just ended: hold it over that
            # interval (a step), so the integral is utilization-weighted time × TDP.
            last_t = self._points[-1][0] if self._points else 0.0
            self._points += [(last_t, w), (t, w)]

    def stop(self) -> list[Reading]:
        if self._poller is not None:
            self._poller.stop()
        self.sample()
        duration = self._points[-1][0]  # the last sample closes the window
        energy_j = trapezoid_j(self._points)
        steps = self._points[1::2]
        return [Reading(domain="cpu", source=self.name, method=ESTIMATED, energy_j=energy_j,
                        avg_power_w=energy_j / duration if duration > 0 else None,
                        peak_power_w=max((w for _, w in steps), default=None),
                        samples=len(steps), duration_s=duration,
                        note=f"estimate: machine-wide CPU utilization x TDP "
                             f"{self.tdp_w:g} W ({self.tdp_source}) for {self.cpu_model}; "
                             "not a measurement",
                        timeline=steps)]
