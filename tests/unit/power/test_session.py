"""Readings → row columns (hand-computed), the CPU estimate, meter selection for each
--power mode, and the session around idle and measured windows on fake hardware."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from harness.errors import UserError
from harness.power import meter_status, open_session
from harness.power.base import ESTIMATED, MEASURED, Reading, unavailable
from harness.power.columns import energy_columns, per_token_columns, summed_peak_w
from harness.power.estimate import EstimateMeter, known_tdp_w
from tests.support.fake_power import FakeGpu, FakeNvml, make_rapl_tree, set_energy

NO_HW = {"nvml": FakeNvml([], init_error=12), "rapl_root": "/nonexistent/powercap",
         "is_mac": False}


def r(domain: str, source: str, method: str, energy_j: float, duration_s: float = 10.0,
      peak: float | None = None, timeline=None, mem=None, note: str = "") -> Reading:
    return Reading(domain=domain, source=source, method=method, energy_j=energy_j,
                   avg_power_w=energy_j / duration_s, peak_power_w=peak, samples=1,
                   duration_s=duration_s, note=note, timeline=timeline or [],
                   mem_peak_mb=mem)


def test_measured_domains_sum_with_idle_and_above_idle() -> None:
    readings = [r("gpu:0", "nvml", MEASURED, 3000.0, mem=20_000.0),
                r("gpu:1", "nvml", MEASURED, 2000.0, mem=10_000.0),
                r("cpu-package:0", "rapl", MEASURED, 1000.0)]
    idle = [r("gpu:0", "nvml", MEASURED, 600.0), r("gpu:1", "nvml", MEASURED, 600.0),
            r("cpu-package:0", "rapl", MEASURED, 300.0)]  # 60 + 60 + 30 W
    cols = energy_columns(readings, idle)
    assert cols["energy_j"] == 6000.0 and cols["avg_power_w"] == 600.0
    assert cols["idle_power_w"] == 150.0
    assert cols["energy_above_idle_j"] == 6000.0 - 150.0 * 10.0
    assert cols["power_method"] == "measured"
    assert cols["power_source"] == "nvml(gpu:0,gpu:1)+rapl(cpu-package:0)"
    assert cols["gpu_mem_peak_mb"] == 30_000.0


def test_estimates_are_never_summed_with_measured_energy() -> None:
    cols = energy_columns([r("gpu:0", "nvml", MEASURED, 500.0),
                           r("cpu", "estimate", ESTIMATED, 400.0)])
    assert cols["energy_j"] == 500.0 and cols["power_method"] == "measured"
    assert "estimated estimate(cpu) 400.0 J not included" in cols["power_note"]
    only_est = energy_columns([r("cpu", "estimate", ESTIMATED, 400.0)])
    assert only_est["energy_j"] == 400.0 and only_est["power_method"] == "estimated"


def test_unavailable_domains_are_named_and_left_out() -> None:
    cols = energy_columns([r("cpu-package:0", "rapl", MEASURED, 100.0),
                           unavailable("dram:0", "rapl", "RAPL failed: went backwards")])
    assert cols["energy_j"] == 100.0
    assert "dram:0 (rapl) unavailable, not in energy_j: RAPL failed" in cols["power_note"]
    none = energy_columns([unavailable("gpu:0", "nvml", "NVML init failed")])
    assert none["power_method"] == "unavailable" and none.get("energy_j") is None
    assert none["power_source"] == "none" and "NVML init failed" in none["power_note"]
    assert energy_columns([], reason="no meter here")["power_note"] == "no meter here"


def test_idle_missing_for_a_domain_leaves_above_idle_empty() -> None:
    cols = energy_columns([r("gpu:0", "nvml", MEASURED, 100.0),
                           r("gpu:1", "nvml", MEASURED, 100.0)],
                          [r("gpu:0", "nvml", MEASURED, 10.0)])
    assert cols["idle_power_w"] is None and cols["energy_above_idle_j"] is None
    assert "idle power not measured for every domain" in cols["power_note"]


def test_peak_of_the_summed_timeline_not_the_sum_of_peaks() -> None:
    a = r("gpu:0", "nvml", MEASURED, 1.0, peak=300.0,
          timeline=[(0.0, 100.0), (1.0, 300.0), (2.0, 100.0)])
    b = r("cpu-package:0", "rapl", MEASURED, 1.0, peak=200.0,
          timeline=[(0.5, 200.0), (1.5, 50.0)])
    # at t=1.0: 300 + 200 (held since 0.5) = 500; never 300 + 200 at another time
    assert summed_peak_w([a, b]) == 500.0
    c = r("cpu-package:0", "rapl", MEASURED, 1.0, peak=200.0, timeline=[(0.5, 200.0),
                                                                         (0.9, 50.0)])
    assert summed_peak_w([a, c]) == 350.0  # 300 + 50, below 300 + 200
    assert summed_peak_w([a]) == 300.0


def test_per_token_columns_hand_computed() -> None:
    cols = per_token_columns(360.0, input_tokens=800, output_tokens=400)
    assert cols["j_per_output_token"] == pytest.approx(0.9)
    assert cols["j_per_token"] == pytest.approx(0.3)
    assert cols["tokens_per_kwh"] == pytest.approx(1200 / (360.0 / 3.6e6))  # 12 M
    assert per_token_columns(None, 10, 10) == {"j_per_output_token": None,
                                               "j_per_token": None, "tokens_per_kwh": None}
    assert per_token_columns(5.0, 10, 0)["j_per_output_token"] is None


def test_known_tdp_table_and_estimate_meter() -> None:
    assert known_tdp_w("AMD EPYC 7763 64-Core Processor") == 280.0
    assert known_tdp_w("Intel(R) Xeon(R) Processor") is None
    ok, reason = EstimateMeter(cpu_model="Intel(R) Xeon(R) Processor").available()
    assert not ok and "--tdp-w" in reason
    meter = EstimateMeter(tdp_w=100.0, cpu_model="x", poll_interval_s=0.02,
                          cpu_percent=lambda: 50.0)
    meter.start()
    time.sleep(0.2)
    (rd,) = meter.stop()
    assert rd.method == ESTIMATED and rd.source == "estimate" and rd.domain == "cpu"
    assert rd.energy_j == pytest.approx(50.0 * rd.duration_s, rel=0.05)
    assert rd.peak_power_w == 50.0 and "not a measurement" in rd.note


def test_unknown_meter_and_bad_tdp_are_user_errors() -> None:
    with pytest.raises(UserError, match="Did you mean 'rapl'"):
        open_session("rapll")
    with pytest.raises(UserError, match="--tdp-w must be"):
        open_session("estimate", tdp_w=-5)


def test_explicit_meter_unavailable_is_a_user_error_with_reason() -> None:
    with pytest.raises(UserError, match="--power rapl: not available here: no RAPL"):
        open_session("rapl", **NO_HW)
    with pytest.raises(UserError, match="--power nvml: .*NVML init failed"):
        open_session("nvml", **NO_HW)
    with pytest.raises(UserError, match="--power apple: .*not macOS"):
        open_session("apple", **NO_HW)
    with pytest.raises(UserError, match="--power estimate: .*--tdp-w"):
        open_session("estimate", cpu_model="Mystery CPU", **NO_HW)


def test_auto_without_hardware_is_unavailable_and_never_estimates() -> None:
    session = open_session("auto", tdp_w=65.0, cpu_model="x", **NO_HW)
    assert not session.has_meter
    session.start()
    cols, timeline = session.stop()
    assert cols["power_method"] == "unavailable" and cols.get("energy_j") is None
    assert "nvml: NVML init failed" in cols["power_note"]
    assert "rapl: no RAPL" in cols["power_note"] and "--power estimate" in cols["power_note"]
    assert timeline == [] and cols["peak_rss_mb"] > 0
    assert "unavailable" in session.describe()


def test_auto_combines_nvml_and_rapl(tmp_path: Path) -> None:
    root = make_rapl_tree(tmp_path / "pc", {
        "intel-rapl:0": {"name": "package-0", "energy_uj": 0, "max": 10**12}})
    gpu = FakeGpu(energy_mj=0, power_w=200.0)
    session = open_session("auto", nvml=FakeNvml([gpu]), rapl_root=root, is_mac=False)
    assert session.has_meter and session.describe() == "nvml (measured), rapl (measured)"
    session.measure_idle(0.2)  # counters stand still: 0 W idle
    session.start()
    time.sleep(0.2)
    gpu.energy_mj += 60_000  # 60 J
    set_energy(root, "intel-rapl:0", 20_000_000)  # 20 J
    cols, timeline = session.stop()
    assert cols["power_method"] == "measured"
    assert cols["power_source"] == "nvml(gpu:0)+rapl(cpu-package:0)"
    window = cols["power_window_s"]
    assert cols["energy_j"] == pytest.approx(80.0)
    assert cols["avg_power_w"] == pytest.approx(80.0 / window, rel=1e-2)  # window rounded
    assert cols["idle_power_w"] == 0.0 and cols["energy_above_idle_j"] == pytest.approx(80.0)
    phases = {s["phase"] for s in timeline}
    assert phases == {"idle", "measured"}
    assert {s["domain"] for s in timeline} == {"gpu:0", "cpu-package:0"}
    assert cols["gpu_mem_peak_mb"] == pytest.approx(1000.0)


def test_a_meter_failing_at_start_is_reported_not_raised(tmp_path: Path) -> None:
    root = make_rapl_tree(tmp_path / "pc", {
        "intel-rapl:0": {"name": "package-0", "energy_uj": 0, "max": 10**12}})
    session = open_session("rapl", rapl_root=root)
    (root / "intel-rapl:0" / "energy_uj").write_text("broken\n")
    session.start()
    cols, _ = session.stop()
    assert cols["power_method"] == "unavailable"
    assert "rapl failed: cannot read" in cols["power_note"]


def test_meter_status_lists_every_meter_with_a_reason() -> None:
    status = meter_status(**NO_HW, cpu_model="Intel(R) Xeon(R) Processor")
    assert [m["name"] for m in status] == ["nvml", "rapl", "apple", "estimate"]
    assert all(not m["available"] and m["reason"] for m in status)
    assert {m["name"]: m["method"] for m in status}["estimate"] == "estimated"


def test_printed_labels_say_estimated_or_not_measured() -> None:
    from harness.power.columns import joules_label, power_summary

    est = {"j_per_output_token": 0.012345, "power_method": "estimated",
           "power_source": "estimate(cpu)"}
    meas = {"j_per_output_token": 0.5, "power_method": "measured", "power_source": "nvml(gpu:0)"}
    none = {"j_per_output_token": None, "power_method": "unavailable",
            "power_note": "power measurement off (--power none)"}
    assert joules_label(est) == "0.0123 est" and joules_label(meas) == "0.5"
    assert joules_label(none) == "-"
    assert power_summary([est]).startswith("energy: ESTIMATED, not measured")
    assert power_summary([meas]).startswith("energy: measured (nvml(gpu:0))")
    assert power_summary([none]) == "energy: not measured (power measurement off (--power none))"
