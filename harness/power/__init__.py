"""Power and energy meters (one module per source) behind one interface.

`open_session(mode)` returns a `PowerSession` that the runner uses around the measured
phase: `measure_idle(seconds)`, `start()`, `stop()` → columns for the result row plus
timeline samples. Meters: `nvml` (NVIDIA GPUs), `rapl` (CPU package and DRAM on
Linux), `apple` (Apple Silicon SoC), `estimate` (CPU utilization × TDP, only on request).
"""

from __future__ import annotations

from typing import Any

from harness.errors import UserError, did_you_mean
from harness.power.apple import AppleMeter
from harness.power.base import Meter, PowerError, Reading
from harness.power.estimate import EstimateMeter
from harness.power.nvml import EngineDevices, NvmlMeter
from harness.power.rapl import DEFAULT_ROOT, RaplMeter
from harness.power.session import PowerSession

MODES = ("auto", "none", "nvml", "rapl", "apple", "estimate")
AUTO_METERS = ("nvml", "rapl", "apple")  # measured sources; `estimate` only when asked


def make_meter(name: str, **options: Any) -> Meter:
    """A meter by name. Options: nvml (a pynvml-like module), rapl_root, zeus,
    powermetrics_cmd, is_mac, tdp_w, cpu_model (the tests pass fakes this way)."""
    if name == "nvml":
        return NvmlMeter(nvml=options.get("nvml"))
    if name == "rapl":
        return RaplMeter(root=options.get("rapl_root") or DEFAULT_ROOT)
    if name == "apple":
        return AppleMeter(zeus=options.get("zeus"), use_zeus=options.get("use_zeus", True),
                          powermetrics_cmd=options.get("powermetrics_cmd"),
                          is_mac=options.get("is_mac"))
    if name == "estimate":
        return EstimateMeter(tdp_w=options.get("tdp_w"), cpu_model=options.get("cpu_model"))
    raise UserError(f"unknown power meter '{name}' (--power); known: {', '.join(MODES)}."
                    + did_you_mean(name, MODES))


def open_session(mode: str = "auto", **options: Any) -> PowerSession:
    """The power session for `--power MODE`.

    An explicit meter that is unavailable here is bad input (UserError, exit 2, with the
    reason); `auto` uses every measured meter available and otherwise runs without one,
    saying why in `power_note`."""
    mode = (mode or "auto").strip().lower()
    if mode not in MODES:
        raise UserError(f"unknown power meter '{mode}' (--power); known: "
                        f"{', '.join(MODES)}." + did_you_mean(mode, MODES))
    tdp_w = options.get("tdp_w")
    if tdp_w is not None and (not isinstance(tdp_w, (int, float)) or tdp_w <= 0):
        raise UserError(f"--tdp-w must be a number of watts > 0, got {tdp_w!r}")
    if mode == "none":
        return PowerSession([], "power measurement off (--power none)")
    if mode != "auto":
        meter = make_meter(mode, **options)
        ok, reason = meter.available()
        if not ok:
            meter.close()
            raise UserError(f"--power {mode}: not available here: {reason}")
        return PowerSession([meter], "")
    meters, reasons = [], []
    for name in AUTO_METERS:
        meter = make_meter(name, **options)
        ok, reason = meter.available()
        if ok:
            meters.append(meter)
        else:
            meter.close()
            reasons.append(f"{name}: {reason}")
    if meters:
        return PowerSession(meters, "")
    return PowerSession([], "no power meter available (" + "; ".join(reasons)
                        + "); --power estimate gives a CPU utilization x TDP estimate",
                        summary="no meter here (nvml, rapl, apple: see `harness env`); "
                                "--power estimate for an estimate")


def meter_status(**options: Any) -> list[dict[str, Any]]:
    """Each power meter this harness knows: name, method, available (bool), reason."""
    status = []
    for name in ("nvml", "rapl", "apple", "estimate"):
        meter = make_meter(name, **options)
        try:
            ok, reason = meter.available()
        except Exception as exc:  # noqa: BLE001 - a probe must never break `harness env`
            ok, reason = False, f"probe failed: {exc}"
        finally:
            meter.close()
        status.append({"name": name, "method": meter.method, "available": ok,
                       "reason": reason})
    return status


__all__ = ["MODES", "EngineDevices", "Meter", "PowerError", "PowerSession", "Reading", "make_meter",
           "meter_status", "open_session"]
