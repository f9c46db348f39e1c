"""Pure functions: meter readings → the energy columns of a result row.

Rule: energy_j sums the *measured* domains only. Estimated domains are summed only when
nothing is measured (power_method=estimated); when both exist, the estimated energy is
left out of energy_j and power_note says how much was left out.
"""

from __future__ import annotations

from typing import Any

from harness.format import MISSING, fmt
from harness.power.base import ESTIMATED, MEASURED, UNAVAILABLE, Reading

J_PER_KWH = 3.6e6


def summed_peak_w(readings: list[Reading]) -> float | None:
    """Peak of the summed power timeline of several domains.

    Each domain holds its last sampled value until its next sample (a step function);
    the sum is evaluated at every sample time. With a single domain: its own peak."""
    with_peak = [r for r in readings if r.peak_power_w is not None]
    if not with_peak:
        return None
    if len(with_peak) == 1 or any(not r.timeline for r in with_peak):
        if len(with_peak) == 1:
            return with_peak[0].peak_power_w
        return sum(r.peak_power_w for r in with_peak)  # type: ignore[misc]
    times = sorted({t for r in with_peak for t, _ in r.timeline})
    best = None
    cursors = [0] * len(with_peak)
    for t in times:
        total = 0.0
        for k, r in enumerate(with_peak):
            tl = r.timeline
            while cursors[k] + 1 < len(tl) and tl[cursors[k] + 1][0] <= t:
                cursors[k] += 1
            total += tl[cursors[k]][1]
        best = total if best is None else max(best, total)
    return best


def _source_label(readings: list[Reading]) -> str:
    by_source: dict[str, list[str]] = {}
    for r in readings:
        by_source.setdefault(r.source, []).append(r.domain)
    return "+".join(f"{s}({','.join(d)})" for s, d in by_source.items())


def energy_columns(readings: list[Reading], idle: list[Reading] | None = None,
                   reason: str = "") -> dict[str, Any]:
    """Row columns for one measured window (and the idle window measured before it)."""
    measured = [r for r in readings if r.method == MEASURED and r.energy_j is not None]
    estimated = [r for r in readings if r.method == ESTIMATED and r.energy_j is not None]
    missing = [r for r in readings if r not in measured and r not in estimated]
    gpu_mem = [r.mem_peak_mb for r in readings if r.mem_peak_mb is not None]
    notes: list[str] = []
    cols: dict[str, Any] = {"gpu_mem_peak_mb": round(sum(gpu_mem), 1) if gpu_mem else None}
    chosen = measured or estimated
    if not chosen:
        why = "; ".join(f"{r.domain}: {r.note}" for r in missing) or reason or "no meter"
        cols.update(power_method=UNAVAILABLE, power_source="none", power_note=why)
        return cols
    method = MEASURED if measured else ESTIMATED
    energy_j = sum(r.energy_j for r in chosen)  # type: ignore[misc]
    window_s = max(r.duration_s for r in chosen)
    if measured and estimated:
        left_out = sum(r.energy_j for r in estimated)  # type: ignore[misc]
        notes.append(f"estimated {_source_label(estimated)} {left_out:.1f} J not included "
                     "in energy_j (measured domains only)")
    for r in missing:
        notes.append(f"{r.domain} ({r.source}) unavailable, not in energy_j: {r.note}")
    notes += [f"{r.domain}: {r.note}" for r in chosen if r.note]
    idle_w = None
    if idle:
        by_domain = {(r.source, r.domain): r for r in idle
                     if r.method == method and r.avg_power_w is not None}
        matched = [by_domain.get((r.source, r.domain)) for r in chosen]
        if all(m is not None for m in matched):
            idle_w = sum(m.avg_power_w for m in matched)  # type: ignore[union-attr,misc]
        else:
            notes.append("idle power not measured for every domain")
    cols.update(
        energy_j=round(energy_j, 6),  # 6 places: avg_power_w = energy_j / power_window_s
        power_window_s=round(window_s, 6),  # holds to 1e-3 on sub-second windows too
        avg_power_w=round(energy_j / window_s, 3) if window_s > 0 else None,
        peak_power_w=_round(summed_peak_w(chosen)),
        idle_power_w=_round(idle_w),
        energy_above_idle_j=(round(energy_j - idle_w * window_s, 3)
                             if idle_w is not None else None),
        power_method=method,
        power_source=_source_label(chosen),
        power_note="; ".join(notes),
    )
    return cols


def per_token_columns(energy_j: float | None, input_tokens: int | None,
                      output_tokens: int | None) -> dict[str, Any]:
    """J per output token, J per token (input + output) and tokens per kWh."""
    cols: dict[str, Any] = {"j_per_output_token": None, "j_per_token": None,
                            "tokens_per_kwh": None}
    if energy_j is None:
        return cols
    out = output_tokens or 0
    total = out + (input_tokens or 0)
    if out > 0:
        cols["j_per_output_token"] = energy_j / out
    if total > 0:
        cols["j_per_token"] = energy_j / total
        if energy_j > 0:
            cols["tokens_per_kwh"] = total / (energy_j / J_PER_KWH)
    return cols


def _round(x: float | None, digits: int = 3) -> float | None:
    return None if x is None else round(x, digits)


def joules_label(row: dict[str, Any]) -> str:
    """J per output token for the printed table: 3 significant digits, `est` when it is
    an estimate, `-` when power was not measured."""
    text = fmt(row.get("j_per_output_token"), "j")
    if text == MISSING:
        return text
    return text + " est" if row.get("power_method") == ESTIMATED else text


def power_summary(rows: list[dict[str, Any]]) -> str:
    """One line under the printed table saying how energy was obtained."""
    methods = {r.get("power_method") for r in rows}
    sources = sorted({str(r.get("power_source")) for r in rows
                      if r.get("power_method") in (MEASURED, ESTIMATED)})
    if methods <= {UNAVAILABLE, None}:
        note = next((r.get("power_note") for r in rows if r.get("power_note")), "")
        if not note or len(note) > 100:
            note = "no power meter here: `harness env` says why; --power estimate estimates"
        return f"energy: not measured ({note})"
    if ESTIMATED in methods and MEASURED not in methods:
        return (f"energy: ESTIMATED, not measured ({', '.join(sources)}); "
                "see power_note in the CSV")
    return f"energy: measured ({', '.join(sources)}); timeline in the .power.jsonl file"
