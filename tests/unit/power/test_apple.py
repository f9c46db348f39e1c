"""Apple meter: powermetrics plist samples (parsed, split from a stream, windowed), a
powermetrics stand-in process, sudo refusing, and zeus-apple-silicon's window API."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from harness.power.apple import (
    AppleMeter,
    PmSample,
    parse_plist_sample,
    split_plist_stream,
    window_energy_j,
)
from harness.power.base import ESTIMATED, PowerError
from tests.support.fake_power import FAKE_POWERMETRICS, FakeZeus, powermetrics_plist


def test_plist_sample_energy_from_the_energy_keys() -> None:
    s = parse_plist_sample(powermetrics_plist(elapsed_ms=200, cpu_mw=5000, gpu_mw=10000,
                                              ane_mw=500))
    assert s.elapsed_s == pytest.approx(0.2)
    assert s.parts_j == pytest.approx({"cpu": 1.0, "gpu": 2.0, "ane": 0.1})
    assert s.energy_j == pytest.approx(3.1) and s.power_w == pytest.approx(15.5)


def test_plist_sample_energy_from_power_when_no_energy_keys() -> None:
    s = parse_plist_sample(powermetrics_plist(elapsed_ms=500, cpu_mw=2000, gpu_mw=0,
                                              with_energy=False))
    assert s.energy_j == pytest.approx(1.0)  # 2 W x 0.5 s


def test_bad_plist_sample_is_a_power_error() -> None:
    with pytest.raises(PowerError, match="unreadable plist"):
        parse_plist_sample(b"<plist>not closed")


def test_stream_split_at_end_tags_keeps_the_incomplete_tail() -> None:
    """powermetrics puts a NUL before each sample: a sample is complete at </plist>,
    not at the next NUL (which comes one sampling period later)."""
    a, b = powermetrics_plist(100, 1000, 0), powermetrics_plist(100, 2000, 0)
    docs, rest = split_plist_stream(b"\0" + a + b"\0" + b + b"\0" + b[:40])
    assert [parse_plist_sample(d).energy_j for d in docs] == pytest.approx([0.1, 0.2])
    assert rest == b"\n\0" + b[:40]
    docs, rest = split_plist_stream(b"\0" + a)  # the latest sample, no NUL after it yet
    assert len(docs) == 1 and rest == b"\n"


def test_window_energy_counts_partial_samples_by_overlap() -> None:
    samples = [PmSample(elapsed_s=1.0, energy_j=10.0, parts_j={}, t_end=t)
               for t in (1.0, 2.0, 3.0)]
    # window 0.5 .. 2.25: half of the first, all of the second, a quarter of the third
    assert window_energy_j(samples, 0.5, 2.25) == pytest.approx(5 + 10 + 2.5)


def test_not_a_mac_is_unavailable() -> None:
    ok, reason = AppleMeter(is_mac=False).available()
    assert not ok and "not macOS" in reason


def test_without_zeus_and_without_passwordless_sudo(tmp_path: Path) -> None:
    script = tmp_path / "powermetrics.py"
    script.write_text(FAKE_POWERMETRICS)
    meter = AppleMeter(use_zeus=False, is_mac=True,
                       powermetrics_cmd=[sys.executable, str(script), "--fail"])
    ok, reason = meter.available()
    assert not ok
    assert "zeus-apple-silicon not installed" in reason
    assert "a password is required" in reason and "sudoers" in reason


@pytest.mark.slow  # timing-dependent: a child process, placed by arrival time
def test_powermetrics_window_with_a_stand_in_process(tmp_path: Path) -> None:
    """A process speaking powermetrics' plist protocol at a constant 10 W (4 W CPU, 6 W
    GPU), read through the meter's real subprocess and stream code."""
    script = tmp_path / "powermetrics.py"
    script.write_text(FAKE_POWERMETRICS)
    meter = AppleMeter(use_zeus=False, is_mac=True,
                       powermetrics_cmd=[sys.executable, str(script), "-i", "50"])
    ok, reason = meter.available()
    assert ok and "powermetrics" in reason and "estimated" in reason
    meter.start()
    time.sleep(1.0)
    (r,) = meter.stop()
    assert (r.domain, r.source, r.method) == ("soc", "apple-powermetrics", ESTIMATED)
    assert r.samples >= 3
    assert r.peak_power_w == pytest.approx(10.0, rel=0.05)  # each sample's own mJ / elapsed
    # Samples are placed by arrival time, which lags on a loaded machine: the exact
    # overlap arithmetic is tested above; here the units and the order of magnitude.
    assert r.energy_j == pytest.approx(10.0 * r.duration_s, rel=0.35)
    assert "model-based estimates" in r.note
    assert meter._proc is None  # the process was stopped


@pytest.mark.slow  # timing-dependent: a sampling thread timed against the clock
def test_zeus_window_sums_cpu_gpu_ane_dram() -> None:
    meter = AppleMeter(zeus=FakeZeus(), is_mac=True)
    ok, reason = meter.available()
    assert ok and "IOReport" in reason
    meter.start()
    time.sleep(0.35)
    (r,) = meter.stop()
    assert (r.domain, r.source, r.method) == ("soc", "apple-ioreport", ESTIMATED)
    # 5 + 15 + 0 + 1 W = 21 W
    assert r.energy_j == pytest.approx(21.0 * r.duration_s, rel=0.05)
    # ticks are timed around IOReport calls: a loaded machine stretches the gaps
    assert r.peak_power_w == pytest.approx(21.0, rel=0.3)
    assert "cpu_total" in r.note and "dram" in r.note
