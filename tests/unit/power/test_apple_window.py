"""The powermetrics window opens at its first sample, not at the process's start: the
start-up (sudo, powermetrics' own) is covered by no sample, and counting it as window
time understated energy and power. A stand-in process speaks powermetrics' plist
protocol at a constant 10 W after a 1 s start-up."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from harness.power.apple import AppleMeter
from harness.power.base import PowerError
from tests.support.fake_power import FAKE_POWERMETRICS

# A child process with a 1 s start-up, samples placed by arrival time: timing-dependent.
pytestmark = pytest.mark.slow


def meter_for(tmp_path: Path, *args: str) -> AppleMeter:
    script = tmp_path / "powermetrics.py"
    script.write_text(FAKE_POWERMETRICS)
    return AppleMeter(use_zeus=False, is_mac=True,
                      powermetrics_cmd=[sys.executable, str(script), "-i", "50", *args])


def test_the_window_starts_at_the_first_sample(tmp_path: Path) -> None:
    meter = meter_for(tmp_path, "--startup-s", "1.0")
    meter.via = "powermetrics"
    before = time.perf_counter()
    meter.start()
    first = meter._samples[0]
    assert meter._t0 == first.t_end  # the window opens where coverage begins
    assert meter._t0 - before >= 1.0  # after the start-up, which no sample covers
    time.sleep(0.8)
    (r,) = meter.stop()
    assert r.duration_s == pytest.approx(time.perf_counter() - meter._t0, abs=0.5)
    # Each sample's energy over its own interval is exactly 10 W; samples are placed by
    # arrival time, which lags on a loaded machine, hence the tolerance. Opened at the
    # process's start, the window would have held the 1 s start-up with no energy in it.
    assert r.avg_power_w == pytest.approx(10.0, rel=0.35)
    assert first not in [s for s in meter._samples if s.t_end > meter._t0]


def test_no_first_sample_is_a_power_error_and_the_process_is_stopped(tmp_path: Path,
                                                                      monkeypatch) -> None:
    monkeypatch.setattr("harness.power.apple.POWERMETRICS_FIRST_SAMPLE_TIMEOUT_S", 0.3)
    meter = meter_for(tmp_path, "--startup-s", "2")  # the -n 1 probe waits it out
    with pytest.raises(PowerError, match="powermetrics gave no first sample .none within"):
        meter.start()
    assert meter._proc is None
