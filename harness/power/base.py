"""The meter interface every power source implements, the reading it returns, and a
background poller the meters share.

A meter answers `available()` → (bool, reason), is wrapped around a window with
`start()` / `stop()`, and `stop()` returns one `Reading` per domain it covers
(`gpu:0`, `cpu-package:0`, `dram:0`, `soc`, ...).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

MEASURED, ESTIMATED, UNAVAILABLE = "measured", "estimated", "unavailable"


class PowerError(Exception):
    """A meter failed (library error, unreadable file, counter that went backwards).

    Raised inside meters; the session turns it into an `unavailable` reading with the
    message as its note, so a failing meter never loses the throughput results."""


@dataclass
class Reading:
    """Energy of one domain over one window."""

    domain: str                      # gpu:0, cpu-package:0, dram:0, soc, cpu, ...
    source: str                      # nvml, rapl, apple-ioreport, apple-powermetrics, estimate
    method: str                      # measured | estimated | unavailable
    energy_j: float | None = None
    avg_power_w: float | None = None
    peak_power_w: float | None = None
    samples: int = 0
    duration_s: float = 0.0
    note: str = ""
    mem_peak_mb: float | None = None  # device memory used, peak (GPUs)
    # (seconds since the window started, watts): the timeline, not written in the row
    timeline: list[tuple[float, float]] = field(default_factory=list, repr=False)

    def to_json(self) -> dict[str, Any]:
        """The reading without its timeline."""
        return {k: v for k, v in self.__dict__.items() if k != "timeline"}


def unavailable(domain: str, source: str, note: str, duration_s: float = 0.0) -> Reading:
    """A reading that says why there is no figure."""
    return Reading(domain=domain, source=source, method=UNAVAILABLE, note=note,
                   duration_s=duration_s)


class Meter:
    """Base of every meter. Subclasses set `name` and `method` and implement the rest."""

    name = "meter"
    method = MEASURED

    def available(self) -> tuple[bool, str]:
        raise NotImplementedError

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> list[Reading]:
        raise NotImplementedError

    def close(self) -> None:
        """Release what `start` or `available` opened (libraries, processes)."""


def trapezoid_j(points: list[tuple[float, float]]) -> float:
    """Energy in joules of (t_s, watts) samples by the trapezoid rule."""
    return sum((t1 - t0) * (w0 + w1) / 2 for (t0, w0), (t1, w1) in pairwise(points))


class Poller:
    """Calls `tick()` every `interval_s` (first call one interval after `start()`) on a
    daemon thread until `stop()`.

    An exception in `tick` stops the polling and is kept in `error`, so the meter can
    report it instead of crashing the benchmark."""

    def __init__(self, tick: Callable[[], None], interval_s: float, name: str) -> None:
        self.tick, self.interval_s = tick, interval_s
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        next_t = time.perf_counter() + self.interval_s
        while not self._stop.wait(max(0.0, next_t - time.perf_counter())):
            try:
                self.tick()
            except Exception as exc:  # noqa: BLE001 - kept and reported by the meter
                self.error = exc
                return
            next_t += self.interval_s
            next_t = max(next_t, time.perf_counter())  # fell behind: no burst to catch up

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
