"""RAPL on Linux: CPU package and DRAM energy from `/sys/class/powercap/intel-rapl:*`.

The same sysfs interface serves Intel and AMD (Zen) CPUs. Each zone has a cumulative
`energy_uj` counter that wraps at `max_energy_range_uj`; the meter polls the counters
often enough that at most one wrap can happen between two reads, and adds the deltas.
Core/uncore sub-zones are parts of the package and `psys` overlaps it, so only
`package-N` and `dram` zones are read. The sysfs root is a parameter so tests can use a
fake tree.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from harness.power.base import MEASURED, Meter, Poller, PowerError, Reading, unavailable

DEFAULT_ROOT = Path("/sys/class/powercap")
POLL_INTERVAL_S = 0.1
# Poll at least twice per wrap at this power, so one wrap at most lies between reads.
MAX_PLAUSIBLE_ZONE_W = 2000.0


def counter_delta_uj(previous: int, current: int, max_range_uj: int | None, zone: str) -> int:
    """The energy between two reads of a RAPL counter, allowing for one wraparound.

    A counter that went backwards is a wrap only when the range is known and the
    wrapped delta is under half the range (reads are far more frequent than wraps);
    anything else is a reset or a broken counter, raised as PowerError."""
    if current >= previous:
        return current - previous
    if max_range_uj:
        wrapped = max_range_uj - previous + current
        if 0 <= wrapped < max_range_uj // 2:
            return wrapped
    raise PowerError(f"RAPL counter {zone} went backwards without a wrap "
                     f"({previous} -> {current} uJ, max_energy_range_uj={max_range_uj}); "
                     "energy for this window is unknown")


@dataclass
class Zone:
    """One RAPL zone to read."""

    domain: str           # cpu-package:0, dram:0
    path: Path            # the zone folder
    max_range_uj: int | None
    last_uj: int = 0
    total_uj: int = 0
    error: str = ""
    timeline: list[tuple[float, float]] = field(default_factory=list)


def _read_int(path: Path) -> int:
    return int(path.read_text().strip())


def discover_zones(root: Path = DEFAULT_ROOT) -> list[Zone]:
    """Package and DRAM zones under `root`; PowerError with the reason when none."""
    if not root.is_dir():
        raise PowerError(f"no RAPL: {root} does not exist (not Linux, a VM or container "
                         "without powercap, or the intel_rapl driver is not loaded)")
    zones: list[Zone] = []
    try:
        tops = sorted(p for p in root.iterdir() if re.fullmatch(r"intel-rapl:\d+", p.name))
    except OSError as exc:
        raise PowerError(f"cannot list {root}: {exc}") from None
    for top in tops:
        candidates = [top] + sorted(p for p in top.iterdir()
                                    if re.fullmatch(r"intel-rapl:\d+:\d+", p.name))
        package_index = None
        for zone_dir in candidates:
            try:
                name = (zone_dir / "name").read_text().strip()
            except OSError:
                continue
            if m := re.fullmatch(r"package-(\d+)", name):
                package_index = int(m.group(1))
                domain = f"cpu-package:{package_index}"
            elif name == "dram":
                index = package_index if package_index is not None else top.name.split(":")[1]
                domain = f"dram:{index}"
            else:
                continue  # core, uncore (parts of the package), psys (overlaps it)
            try:
                max_range = _read_int(zone_dir / "max_energy_range_uj")
            except (OSError, ValueError):
                max_range = None
            zones.append(Zone(domain=domain, path=zone_dir, max_range_uj=max_range))
    if not zones:
        raise PowerError(f"no RAPL package or dram zone under {root}")
    return zones


class RaplMeter(Meter):
    """CPU package and DRAM energy from RAPL counters (measured)."""

    name = "rapl"
    method = MEASURED

    def __init__(self, root: Path | str = DEFAULT_ROOT,
                 poll_interval_s: float | None = None) -> None:
        self.root = Path(root)
        self.poll_interval_s = poll_interval_s
        self.zones: list[Zone] = []
        self._lock = threading.Lock()
        self._poller: Poller | None = None
        self._t0 = 0.0
        self._t_last = 0.0
        self._error: PowerError | None = None

    def available(self) -> tuple[bool, str]:
        try:
            zones = discover_zones(self.root)
            for z in zones:
                self._read(z)
        except PowerError as exc:
            return False, str(exc)
        return True, f"RAPL {', '.join(z.domain for z in zones)} ({self.root})"

    def _read(self, zone: Zone) -> int:
        path = zone.path / "energy_uj"
        try:
            return _read_int(path)
        except PermissionError:
            raise PowerError(f"no permission to read {path} (root only since Linux 5.10, "
                             "CVE-2020-8694): run as root or make energy_uj readable "
                             "(chmod a+r)") from None
        except (OSError, ValueError) as exc:
            raise PowerError(f"cannot read {path}: {exc}") from None

    def _interval(self) -> float:
        if self.poll_interval_s is not None:
            return self.poll_interval_s
        ranges = [z.max_range_uj for z in self.zones if z.max_range_uj]
        if not ranges:
            return POLL_INTERVAL_S
        wrap_s = min(ranges) / 1e6 / MAX_PLAUSIBLE_ZONE_W
        return max(0.001, min(POLL_INTERVAL_S, wrap_s / 2))

    def start(self) -> None:
        self.zones = discover_zones(self.root)
        self._error = None
        for z in self.zones:
            z.last_uj = self._read(z)
        self._t0 = self._t_last = time.perf_counter()
        self._poller = Poller(self.sample, self._interval(), "rapl-poller")
        self._poller.start()

    def sample(self) -> None:
        """Read every zone once and add the deltas (called by the poller, and at stop)."""
        with self._lock:
            now = time.perf_counter()
            dt = now - self._t_last
            for z in self.zones:
                if z.error:
                    continue
                try:
                    current = self._read(z)
                    delta = counter_delta_uj(z.last_uj, current, z.max_range_uj, z.domain)
                except PowerError as exc:  # this zone only; the others go on
                    z.error = str(exc)
                    continue
                z.last_uj = current
                z.total_uj += delta
                if dt > 0:
                    z.timeline.append((now - self._t0, delta / 1e6 / dt))
            self._t_last = now

    def stop(self) -> list[Reading]:
        if self._poller is not None:
            self._poller.stop()
        error = self._poller.error if self._poller is not None else None
        if error is None:
            self.sample()
        duration = time.perf_counter() - self._t0
        if error is not None:
            return [unavailable(z.domain, self.name, f"RAPL failed: {error}", duration)
                    for z in self.zones]
        readings = []
        for z in self.zones:
            if z.error:
                readings.append(unavailable(z.domain, self.name, f"RAPL failed: {z.error}",
                                            duration))
                continue
            energy_j = z.total_uj / 1e6
            readings.append(Reading(
                domain=z.domain, source=self.name, method=MEASURED, energy_j=energy_j,
                avg_power_w=energy_j / duration if duration > 0 else None,
                peak_power_w=max((w for _, w in z.timeline), default=None),
                samples=len(z.timeline), duration_s=duration,
                note=f"energy_uj counter delta (wraps handled); peak over "
                     f"{self._interval() * 1000:.0f} ms intervals",
                timeline=list(z.timeline)))
        return readings
