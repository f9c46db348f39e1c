"""RAPL on a fake sysfs tree: zone discovery, counter deltas, wraparound, resets and
unreadable files."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from harness.power.base import MEASURED, UNAVAILABLE, PowerError
from harness.power.rapl import RaplMeter, counter_delta_uj, discover_zones
from tests.support.fake_power import make_rapl_tree, set_energy, zone_path

TWO_SOCKETS = {
    "intel-rapl:0": {"name": "package-0", "energy_uj": 1000, "max": 262143328850},
    "intel-rapl:0:0": {"name": "core", "energy_uj": 500, "max": 262143328850},
    "intel-rapl:0:1": {"name": "dram", "energy_uj": 200, "max": 65712999613},
    "intel-rapl:1": {"name": "package-1", "energy_uj": 3000, "max": 262143328850},
    "intel-rapl:2": {"name": "psys", "energy_uj": 9000, "max": 262143328850},
}


def test_counter_delta_plain_and_wrapped() -> None:
    assert counter_delta_uj(100, 350, 1000, "z") == 250
    assert counter_delta_uj(900, 100, 1000, "z") == 200  # wrapped once
    assert counter_delta_uj(500, 500, 1000, "z") == 0


def test_counter_backwards_without_wrap_is_an_error() -> None:
    with pytest.raises(PowerError, match="went backwards without a wrap"):
        counter_delta_uj(500, 100, 1000, "cpu-package:0")  # 600 of 1000: not a wrap
    with pytest.raises(PowerError, match="max_energy_range_uj=None"):
        counter_delta_uj(900, 100, None, "cpu-package:0")  # range unknown


def test_discovers_package_and_dram_zones_only(tmp_path: Path) -> None:
    root = make_rapl_tree(tmp_path / "powercap", TWO_SOCKETS)
    zones = discover_zones(root)
    assert [z.domain for z in zones] == ["cpu-package:0", "dram:0", "cpu-package:1"]
    assert zones[1].max_range_uj == 65712999613
    ok, reason = RaplMeter(root).available()
    assert ok and "cpu-package:0, dram:0, cpu-package:1" in reason


def test_no_sysfs_and_no_zones_are_unavailable_with_reason(tmp_path: Path) -> None:
    ok, reason = RaplMeter(tmp_path / "missing").available()
    assert not ok and "does not exist" in reason
    root = make_rapl_tree(tmp_path / "pc", {"intel-rapl:0": {"name": "psys", "max": 10}})
    ok, reason = RaplMeter(root).available()
    assert not ok and "no RAPL package or dram zone" in reason


def test_unreadable_counter_is_unavailable_with_the_fix(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_rapl_tree(tmp_path / "pc", TWO_SOCKETS)
    locked = zone_path(root, "intel-rapl:0") / "energy_uj"
    locked.chmod(0)  # what the kernel does since 5.10: root-only energy_uj
    if os.geteuid() == 0:  # root reads any mode: make the read fail as it does for users
        real_read_text = Path.read_text

        def read_text(self: Path, *a, **k) -> str:
            if self == locked:
                raise PermissionError(13, "Permission denied", str(self))
            return real_read_text(self, *a, **k)

        monkeypatch.setattr(Path, "read_text", read_text)
    ok, reason = RaplMeter(root).available()
    assert not ok and "no permission" in reason and "chmod" in reason


def test_unreadable_counter_as_root_via_bad_content(tmp_path: Path) -> None:
    """Root can read any mode, so also check a counter whose content cannot be read."""
    root = make_rapl_tree(tmp_path / "pc", TWO_SOCKETS)
    (zone_path(root, "intel-rapl:1") / "energy_uj").write_text("garbage\n")
    ok, reason = RaplMeter(root).available()
    assert not ok and "cannot read" in reason and "intel-rapl:1" in reason


def test_window_energy_is_the_counter_delta_across_a_wrap(tmp_path: Path) -> None:
    zones = {"intel-rapl:0": {"name": "package-0", "energy_uj": 9_000_000,
                              "max": 10_000_000},
             "intel-rapl:0:2": {"name": "dram", "energy_uj": 0, "max": 10_000_000}}
    root = make_rapl_tree(tmp_path / "pc", zones)
    meter = RaplMeter(root, poll_interval_s=3600)  # the test drives the reads
    meter.start()
    set_energy(root, "intel-rapl:0", 9_800_000)
    set_energy(root, "intel-rapl:0:2", 1_000_000)
    meter.sample()
    set_energy(root, "intel-rapl:0", 700_000)  # wrapped: 200_000 + 700_000
    set_energy(root, "intel-rapl:0:2", 1_500_000)
    readings = {r.domain: r for r in meter.stop()}
    pkg, dram = readings["cpu-package:0"], readings["dram:0"]
    assert pkg.method == dram.method == MEASURED and pkg.source == "rapl"
    assert pkg.energy_j == pytest.approx(1.7)  # 0.8 J + 0.9 J
    assert dram.energy_j == pytest.approx(1.5)
    assert pkg.samples == 2 and pkg.peak_power_w is not None and pkg.peak_power_w > 0
    assert pkg.avg_power_w == pytest.approx(1.7 / pkg.duration_s)


def test_counter_reset_makes_the_zone_unavailable(tmp_path: Path) -> None:
    root = make_rapl_tree(tmp_path / "pc", {
        "intel-rapl:0": {"name": "package-0", "energy_uj": 5_000_000, "max": 10_000_000}})
    meter = RaplMeter(root, poll_interval_s=3600)
    meter.start()
    set_energy(root, "intel-rapl:0", 1_000_000)  # down by 4 J, far from the top: a reset
    (reading,) = meter.stop()
    assert reading.method == UNAVAILABLE and reading.energy_j is None
    assert "went backwards without a wrap" in reading.note


def test_reads_between_wraps_add_up_across_many_wraps(tmp_path: Path) -> None:
    """A 2 J range read every 0.3 J wraps seven times in 50 reads: every wrap is
    counted once."""
    max_uj = 2_000_000
    root = make_rapl_tree(tmp_path / "pc", {
        "intel-rapl:0": {"name": "package-0", "energy_uj": 1_900_000, "max": max_uj}})
    meter = RaplMeter(root, poll_interval_s=3600)
    meter.start()
    value = 1_900_000
    for _ in range(50):
        value = (value + 300_000) % max_uj
        set_energy(root, "intel-rapl:0", value)
        meter.sample()
    (reading,) = meter.stop()
    assert reading.method == MEASURED, reading.note
    assert reading.energy_j == pytest.approx(15.0)  # 50 x 0.3 J
    assert reading.samples == 51


class SteppingRapl(RaplMeter):
    """A meter whose counter advances `step_uj` (wrapping at `max_uj`) each time its own
    poller thread reads it: every poll sees exactly one step, however late the thread runs
    on a loaded machine, so the expected energy is known exactly."""

    def __init__(self, root: Path, step_uj: int, max_uj: int) -> None:
        super().__init__(root, poll_interval_s=0.005)
        self.step_uj, self.max_uj = step_uj, max_uj
        self.value = self.poller_reads = self.wraps = 0

    def _read(self, zone):  # noqa: ANN001, ANN202 - the meter's own signature
        if threading.current_thread().name == "rapl-poller":
            self.value += self.step_uj
            if self.value >= self.max_uj:
                self.value -= self.max_uj
                self.wraps += 1
            set_energy(self.root, zone.path.name, self.value)
            self.poller_reads += 1
        return super()._read(zone)


def test_own_poller_catches_every_wrap(tmp_path: Path) -> None:
    """The meter's thread, not the test, reads a counter that wraps every few reads."""
    root = make_rapl_tree(tmp_path / "pc", {
        "intel-rapl:0": {"name": "package-0", "energy_uj": 0, "max": 4_000_000}})
    meter = SteppingRapl(root, step_uj=1_200_000, max_uj=4_000_000)  # 0.3 of the range
    meter.start()
    deadline = time.monotonic() + 60
    while meter.poller_reads < 20 and time.monotonic() < deadline:
        time.sleep(0.01)
    (reading,) = meter.stop()
    assert meter.poller_reads >= 20, "the meter's own poller did not run"
    assert meter.wraps >= 5
    assert reading.method == MEASURED, reading.note
    assert reading.energy_j == pytest.approx(1.2 * meter.poller_reads)  # no wrap lost


def test_default_poll_interval_is_under_half_the_wrap_time(tmp_path: Path) -> None:
    root = make_rapl_tree(tmp_path / "pc", {
        "intel-rapl:0": {"name": "package-0", "energy_uj": 0, "max": 100_000_000}})
    meter = RaplMeter(root)
    meter.zones = discover_zones(root)
    # 100 J range at the 2 kW assumed worst case wraps in 50 ms: poll every 25 ms.
    assert meter._interval() == pytest.approx(0.025)
    root2 = make_rapl_tree(tmp_path / "pc2", TWO_SOCKETS)
    meter2 = RaplMeter(root2)
    meter2.zones = discover_zones(root2)
    assert meter2._interval() == pytest.approx(0.1)


def test_a_failing_zone_does_not_take_the_others_down(tmp_path: Path) -> None:
    root = make_rapl_tree(tmp_path / "pc", {
        "intel-rapl:0": {"name": "package-0", "energy_uj": 0, "max": 10**12},
        "intel-rapl:0:2": {"name": "dram", "energy_uj": 4_000_000, "max": 10**12}})
    meter = RaplMeter(root, poll_interval_s=3600)
    meter.start()
    set_energy(root, "intel-rapl:0:2", 1_000_000)  # reset
    set_energy(root, "intel-rapl:0", 2_000_000)
    meter.sample()
    set_energy(root, "intel-rapl:0:2", 9_000_000)  # later reads of a failed zone are ignored
    set_energy(root, "intel-rapl:0", 3_000_000)
    pkg, dram = meter.stop()
    assert pkg.method == MEASURED and pkg.energy_j == pytest.approx(3.0)
    assert dram.method == UNAVAILABLE and "went backwards" in dram.note
