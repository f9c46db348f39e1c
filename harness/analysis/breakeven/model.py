"""The break-even model: measured throughput and power, priced against hosted APIs.

Pure functions, no I/O: result rows (a pandas DataFrame from `harness.results.files.load_frame`)
plus prices (`harness.analysis.prices`) in, numbers and text out. Volumes are total tokens (input +
output) per month, in the measured workload's own input:output mix; a month is 30 days
(2,592,000 s, 720 h), as in the source article.

For one machine option:
  capacity      C = total_tok_s x 2,592,000 x utilization                 (tokens/month)
  fixed         A = purchase_usd / amortize_months            (owned; or usd_per_hour x 720)
                    + idle_power_w x 720 h x electricity x PUE               (per machine)
  marginal      b = energy_above_idle_j / (input + output tokens) x electricity x PUE
                    (energy per token above idle, both over the row's own power window;
                    for rows without it, or power given by flag or catalog:
                    (load_power_w - idle_power_w) / total_tok_s)
  local cost    L(V) = ops + n(V) x A + b x V,   n(V) = max(1, ceil(V / C))
  API cost      P(V) = p x V,  p = share_in x price_in + share_out x price_out   (per token)
  break-even    the least V with L(V) <= P(V): with n machines V* = (ops + n A) / (p - b);
                none when p <= b, or when a full machine costs more than its tokens would
                at the API (A + b C > p C): "capacity below break-even".
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from harness.analysis.prices import (
    ApiPrice,
    Catalog,
    HardwarePrice,
    LocalModel,
    comparison,
    like_for_like,
    load_catalog,
)
from harness.errors import CheckFailed, UserError, did_you_mean

SECONDS_PER_MONTH = 30 * 86_400
HOURS_PER_MONTH = 30 * 24
MTOK = 1_000_000
DEFAULT_VOLUMES_MTOK: tuple[float, ...] = (5, 20, 50, 200, 500)
REQUIRED_COLUMNS = ("total_throughput_tok_s", "input_tokens", "output_tokens")


# ------------------------------------------------------------------ inputs

@dataclass(frozen=True)
class Measured:
    """What one machine was measured to do on one scenario of a workload."""

    total_tok_s: float  # (input + output) tokens per second, the workload's own mix
    input_share: float  # input tokens / (input + output) tokens
    load_power_w: float | None = None
    idle_power_w: float | None = None
    power_origin: str = "none"  # measured | estimated | catalog | flag | none
    label: str = ""
    machine_id: str = ""
    machine_name: str = ""  # GPU or CPU model
    model: str = ""
    weights: str = ""
    workload: str = ""
    scenario: str = ""
    backend: str = ""
    served_by: str = ""  # how the engine ran: "llama.cpp in process", "--server llama-server"
    concurrency: int | None = None
    selection: str = ""  # the rule that chose the row: best meeting the SLO | knee | ...
    selection_reason: str = ""  # which row, why it, and which rows were refused
    # Energy above idle per (input + output) token, both over the row's own power window
    # (energy_above_idle_j / tokens); None when the row has no such energy figure.
    above_idle_j_per_token: float | None = None
    source_file: str = ""
    row: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def synthetic(self) -> bool:
        return self.weights == "synthetic"


@dataclass(frozen=True)
class Economics:
    """What running one machine costs: owned (amortized purchase) or rented (per hour)."""

    name: str
    kind: str  # owned | rented
    purchase_usd: float | None = None
    amortize_months: float | None = None
    rent_usd_per_hour: float | None = None
    electricity_usd_per_kwh: float = 0.119
    pue: float = 1.0
    ops_usd_per_month: float = 0.0  # for the whole deployment, not per machine
    utilization: float = 1.0  # share of the month a machine may be busy: capacity and duty
    date: str = ""
    source: str = ""


@dataclass(frozen=True)
class CostModel:
    """The linear cost model of one option: L(V) = ops + n(V) A + b V."""

    capacity_full_tok: float  # tokens/month of one machine at 100% utilization
    utilization: float
    machine_fixed_usd: float  # A: hardware (or rent) + idle energy, per machine per month
    marginal_usd_per_mtok: float  # b: energy above idle per million tokens
    ops_usd: float  # per deployment per month
    hardware_usd: float  # hardware or rent part of A
    idle_energy_usd: float  # idle-energy part of A

    @property
    def capacity_tok(self) -> float:
        """Tokens/month one machine makes at the planned utilization."""
        return self.capacity_full_tok * self.utilization


@dataclass(frozen=True)
class BreakEven:
    """The break-even volume against one API price, or None with the reason."""

    volume_tok: float | None
    machines: int | None
    reason: str
    one_machine_volume_tok: float | None  # (ops + A) / (p - b): what one machine would need


@dataclass(frozen=True)
class HybridPlan:
    """Local machines for the base load, the API for the overflow."""

    machines: int
    local_tok: float
    api_tok: float
    usd: float
    local_only_usd: float
    api_only_usd: float


# ------------------------------------------------------------------ basic arithmetic

def capacity_tok_per_month(total_tok_s: float, utilization: float = 1.0) -> float:
    """Tokens one machine makes in a 30-day month at the given utilization."""
    return total_tok_s * SECONDS_PER_MONTH * utilization


def hardware_usd_per_month(econ: Economics) -> float:
    """Amortized purchase (owned) or 24/7 rent (rented), per machine per month."""
    if econ.kind == "rented":
        return float(econ.rent_usd_per_hour or 0.0) * HOURS_PER_MONTH
    return float(econ.purchase_usd or 0.0) / float(econ.amortize_months or 1.0)


def energy_usd_per_month(load_power_w: float, idle_power_w: float, duty_cycle: float,
                         electricity_usd_per_kwh: float, pue: float = 1.0) -> float:
    """Electricity for one machine busy `duty_cycle` of the month and idle the rest."""
    avg_w = duty_cycle * load_power_w + (1.0 - duty_cycle) * idle_power_w
    return avg_w / 1000.0 * HOURS_PER_MONTH * electricity_usd_per_kwh * pue


def blended_usd_per_mtok(api: ApiPrice, input_share: float,
                         cached_input_share: float = 0.0) -> float:
    """An API's price per million tokens at this input:output mix; `cached_input_share`
    of the input tokens at the cached-input price where the API gives one."""
    input_price = api.input_usd_per_mtok
    if cached_input_share and api.cached_input_usd_per_mtok is not None:
        input_price = (cached_input_share * api.cached_input_usd_per_mtok
                       + (1.0 - cached_input_share) * api.input_usd_per_mtok)
    return input_share * input_price + (1.0 - input_share) * api.output_usd_per_mtok


def cost_model(measured: Measured, econ: Economics) -> CostModel:
    """The cost model of running `measured` on machines priced by `econ`. Rented machines
    include their energy in the rent; without power figures energy is not priced."""
    hardware = hardware_usd_per_month(econ)
    idle_usd = 0.0
    marginal = 0.0
    if econ.kind == "owned" and measured.load_power_w is not None:
        load_w = measured.load_power_w
        idle_w = measured.idle_power_w if measured.idle_power_w is not None else load_w
        idle_w = min(idle_w, load_w)  # a noisy idle reading above load adds no energy
        idle_usd = energy_usd_per_month(load_w, idle_w, 0.0, econ.electricity_usd_per_kwh,
                                        econ.pue)
        if measured.above_idle_j_per_token is not None:
            # energy above idle over the tokens of the same power window
            joules_per_mtok_above_idle = measured.above_idle_j_per_token * MTOK
        else:  # older rows, or power from flags or the catalog
            joules_per_mtok_above_idle = (load_w - idle_w) / measured.total_tok_s * MTOK
        marginal = joules_per_mtok_above_idle / 3.6e6 * econ.electricity_usd_per_kwh * econ.pue
    return CostModel(
        capacity_full_tok=capacity_tok_per_month(measured.total_tok_s, 1.0),
        utilization=econ.utilization, machine_fixed_usd=hardware + idle_usd,
        marginal_usd_per_mtok=marginal, ops_usd=econ.ops_usd_per_month,
        hardware_usd=hardware, idle_energy_usd=idle_usd)


def machines_needed(volume_tok: float, capacity_tok: float) -> int:
    """Machines needed for a monthly volume (at least one)."""
    if volume_tok <= 0:
        return 1
    return max(1, math.ceil(volume_tok / capacity_tok - 1e-9))


def local_monthly_usd(model: CostModel, volume_tok: float) -> tuple[int, float]:
    """(machines, USD/month) to serve `volume_tok` tokens/month locally."""
    n = machines_needed(volume_tok, model.capacity_tok)
    usd = model.ops_usd + n * model.machine_fixed_usd + model.marginal_usd_per_mtok * (
        volume_tok / MTOK)
    return n, usd


def cost_per_mtok(model: CostModel, utilization: float | None = None) -> float:
    """USD per million tokens of a one-machine deployment busy `utilization` of the
    month (default: the model's planned utilization); 1.0 gives the cost at full load."""
    u = model.utilization if utilization is None else utilization
    volume_mtok = model.capacity_full_tok * u / MTOK
    return (model.ops_usd + model.machine_fixed_usd) / volume_mtok + model.marginal_usd_per_mtok


def break_even(model: CostModel, api_usd_per_mtok: float) -> BreakEven:
    """The least monthly volume at which local costs no more than the API, or None with
    the reason. Machines are added as volume outgrows capacity."""
    p, b = api_usd_per_mtok, model.marginal_usd_per_mtok
    fixed_one = model.ops_usd + model.machine_fixed_usd
    cap_mtok = model.capacity_tok / MTOK
    if p <= b:
        return BreakEven(None, None,
                         f"energy alone costs ${b:.3g}/M tokens at this throughput, the "
                         f"API ${p:.3g}/M", None)
    one_machine_mtok = fixed_one / (p - b)
    margin = cap_mtok * (p - b) - model.machine_fixed_usd  # what a full machine saves
    if margin < 0 or (margin == 0 and model.ops_usd > 0):
        return BreakEven(
            None, None,
            f"capacity below break-even: a machine makes at most {cap_mtok:,.3g} M "
            f"tokens/month (${cap_mtok * p:,.0f} at ${p:.3g}/M) and costs "
            f"${model.machine_fixed_usd + b * cap_mtok:,.0f}/month; break-even needs "
            f"{one_machine_mtok:,.3g} M", one_machine_mtok * MTOK)
    n = 1 if model.ops_usd == 0 else max(1, math.ceil(model.ops_usd / margin - 1e-12))
    volume_mtok = (model.ops_usd + n * model.machine_fixed_usd) / (p - b)
    reason = "" if n == 1 else f"needs {n} machines to spread the operations cost"
    return BreakEven(volume_mtok * MTOK, n, reason, one_machine_mtok * MTOK)


def hybrid_plan(model: CostModel, api_usd_per_mtok: float, volume_tok: float) -> HybridPlan:
    """The cheapest split of `volume_tok`: n local machines run full, the API takes the
    rest (n = 0 is pure API, n = ceil(V/C) pure local)."""
    cap = model.capacity_tok
    p_tok = api_usd_per_mtok / MTOK
    b_tok = model.marginal_usd_per_mtok / MTOK
    candidates = sorted({0, math.floor(volume_tok / cap + 1e-9), machines_needed(volume_tok, cap)})
    best: tuple[float, int, float] | None = None
    for n in candidates:
        local = min(volume_tok, n * cap)
        usd = ((model.ops_usd if n > 0 else 0.0) + n * model.machine_fixed_usd
               + b_tok * local + p_tok * (volume_tok - local))
        if best is None or usd < best[0] - 1e-9:
            best = (usd, n, local)
    assert best is not None
    usd, n, local = best
    return HybridPlan(machines=n, local_tok=local, api_tok=volume_tok - local, usd=usd,
                      local_only_usd=local_monthly_usd(model, volume_tok)[1],
                      api_only_usd=p_tok * volume_tok)


# ------------------------------------------------------------------ rows → measurements

def as_float(value: Any) -> float | None:
    """A float from a result cell; None when empty, NaN or not a number."""
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f


def _machine_name(row: dict[str, Any]) -> str:
    gpu = str(row.get("gpu_name") or "")
    count = int(as_float(row.get("gpu_count")) or 0)
    if gpu:
        return f"{count}x {gpu}" if count > 1 else gpu
    return str(row.get("cpu_model") or row.get("hostname") or row.get("machine_id") or "?")


def measured_from_row(row: dict[str, Any], selection: str = "",
                      selection_reason: str = "") -> Measured:
    """A Measured from one result row: total throughput and input share from its token
    counts, load and idle power where the row has them, and the energy above idle per
    token of the row's own power window (`energy_above_idle_j` / input + output tokens;
    clamped at 0: an idle reading above load adds no energy)."""
    inp = as_float(row.get("input_tokens")) or 0.0
    out = as_float(row.get("output_tokens")) or 0.0
    total = as_float(row.get("total_throughput_tok_s"))
    out_tps = as_float(row.get("output_throughput_tok_s"))
    if (total is None or total <= 0) and out_tps and out > 0:
        total = out_tps * (inp + out) / out
    if total is None or total <= 0 or inp + out <= 0:
        raise UserError(f"{row.get('source_file') or 'result row'}: scenario "
                        f"{row.get('scenario')!r} has no throughput (total_throughput_tok_s, "
                        "input_tokens, output_tokens); rerun `harness bench`")
    load_w = as_float(row.get("avg_power_w"))
    idle_w = as_float(row.get("idle_power_w"))
    method = str(row.get("power_method") or "")
    origin = "none" if load_w is None else ("estimated" if method == "estimated" else "measured")
    above_idle_j = as_float(row.get("energy_above_idle_j"))
    per_token = None if above_idle_j is None else max(0.0, above_idle_j) / (inp + out)
    conc = as_float(row.get("concurrency"))
    weights = str(row.get("weights") or "")
    name = _machine_name(row)
    label = (f"{name} · {row.get('model') or '?'} · {row.get('scenario') or '?'}"
             + (f" c={int(conc)}" if conc is not None else "")
             + (" · SYNTHETIC weights" if weights == "synthetic" else ""))
    return Measured(
        total_tok_s=float(total), input_share=inp / (inp + out), load_power_w=load_w,
        idle_power_w=idle_w, power_origin=origin, label=label,
        machine_id=str(row.get("machine_id") or ""), machine_name=name,
        model=str(row.get("model") or ""), weights=weights,
        workload=str(row.get("workload") or ""), scenario=str(row.get("scenario") or ""),
        backend=str(row.get("backend") or ""), served_by=served_by(row),
        concurrency=int(conc) if conc is not None else None, selection=selection,
        selection_reason=selection_reason, above_idle_j_per_token=per_token,
        source_file=str(row.get("source_file") or ""), row=dict(row))


_GROUP = ["machine_id", "model", "quant", "weights", "backend", "workload", "scenario",
          "load_mode"]
# The percentile a row's TTFT and TPOT must keep within the SLO: the one the saturation
# sweep (`--concurrency auto`) judges the knee by, so "the best row meeting the SLO" and
# "the knee" are judged alike.
SLO_PERCENTILE = 90
# A closed-loop row that held fewer than this share of its labelled concurrency in flight
# (time-weighted mean) did not measure the machine at that load: never priced.
MIN_ACHIEVED_CONCURRENCY = 0.9


def served_by(row: dict[str, Any]) -> str:
    """How a row's engine ran: `--server KIND (openai backend)` for a managed server (the
    kind from the row's settings), `llama.cpp in process`, `vLLM in process`, else the
    backend (and engine)."""
    try:
        settings = json.loads(str(row.get("settings_json") or "{}"))
    except ValueError:
        settings = {}
    server = settings.get("server") if isinstance(settings, dict) else None
    kind = server.get("kind") if isinstance(server, dict) else None
    backend = str(row.get("backend") or "?")
    if kind:
        return f"--server {kind} ({backend} backend)"
    if backend == "llamacpp":
        return "llama.cpp in process"
    if backend == "vllm":
        return "vLLM in process"
    engine = str(row.get("engine") or "")
    return f"{backend} backend" + (f" ({engine})" if engine and engine != backend else "")


def _single_stream(group: list[dict[str, Any]]) -> bool:
    """Whether every usable row of a group measured one request at a time (closed loop,
    c=1): one user's speed, not what the machine serves to many."""
    return all(str(r.get("load_mode") or "closed") == "closed"
               and not as_float(r.get("request_rate_rps"))
               and (as_float(r.get("concurrency")) or 1.0) <= 1 for r in group)


def _row_used(m: Measured) -> str:
    """'tg128 c=1, llama.cpp in process, 61.2 out tok/s, results/x.csv'."""
    out = as_float(m.row.get("output_throughput_tok_s"))
    return ", ".join(p for p in (
        _row_label(m.row).split(" (run ")[0], m.served_by,
        f"{out:.4g} out tok/s" if out is not None else f"{m.total_tok_s:.4g} tok/s",
        m.source_file) if p)


def prefer_capacity(picked: list[tuple[Measured, list[dict[str, Any]]]]
                    ) -> tuple[list[Measured], list[str]]:
    """Of the rows chosen for one model file (its sha256, else its name) on one machine
    and one scenario, the capacity rows win over single-stream ones: `make bench` on
    llama.cpp writes the in-process rows (one request at a time, c=1) and a llama-server
    concurrency sweep of the same model; the machine's capacity is the sweep's row, so
    the single-stream one is not priced (said in the reason and a note; `--concurrency
    1` prices c=1 rows). `picked`: each chosen Measured with its group's usable rows."""
    def key(m: Measured) -> tuple[str, ...]:
        return (m.machine_id, str(m.row.get("model_sha256") or "") or m.model, m.workload,
                m.scenario)

    by_key: dict[tuple[str, ...], list[tuple[Measured, bool]]] = {}
    for m, group in picked:
        by_key.setdefault(key(m), []).append((m, _single_stream(group)))
    dropped: set[int] = set()
    replaced: dict[int, Measured] = {}
    notes: list[str] = []
    for items in by_key.values():
        single = [m for m, one in items if one]
        capacity = [m for m, one in items if not one]
        if not single or not capacity:
            continue
        instead = "; ".join(_row_used(m) for m in single)
        for m in single:
            dropped.add(id(m))
        for m in capacity:
            replaced[id(m)] = replace(m, selection_reason=(
                f"{m.selection_reason}; priced instead of the single-stream row(s) of the "
                f"same model on this machine ({instead}): they measure one user"))
        notes.append(f"scenario {capacity[0].scenario!r}: the capacity row ("
                     + "; ".join(_row_used(m) for m in capacity) + ") is priced, not the "
                     f"single-stream row(s) ({instead}); --concurrency 1 prices c=1 rows")
    return ([replaced.get(id(m), m) for m, _ in picked if id(m) not in dropped], notes)


def _row_label(row: dict[str, Any]) -> str:
    """'chat c=8' or 'chat 2/s', with the run id when there is one."""
    rate = as_float(row.get("request_rate_rps"))
    conc = as_float(row.get("concurrency"))
    load = f"{rate:g}/s" if rate else (f"c={int(conc)}" if conc is not None else "?")
    run = str(row.get("run_id") or "")
    return f"{row.get('scenario') or '?'} {load}" + (f" (run {run})" if run else "")


def refusal_reasons(row: dict[str, Any]) -> tuple[list[str], list[str]]:
    """Why a result row cannot be priced as capacity (empty: it can), and caveats when it
    is accepted. Refused: an interrupted row (`status=partial`), any failed request (its
    throughput counts only the successes, and at a load where requests fail the machine
    is past its capacity), a busy machine (`noisy=1`), and too few requests in flight:
    `capacity_ok=0`, or, in files without that column, a closed-loop
    `concurrency_achieved_mean` below 90% of `concurrency`. Files older than both columns
    are accepted with a caveat."""
    reasons: list[str] = []
    caveats: list[str] = []
    if str(row.get("status") or "") == "partial":
        reasons.append("partial (interrupted)")
    errors = as_float(row.get("errors")) or 0.0
    if errors > 0:
        requests = as_float(row.get("requests"))
        of = f" of {int(requests)}" if requests else ""
        reasons.append(f"{int(errors)}{of} requests failed")
    if (as_float(row.get("noisy")) or 0.0) >= 1:
        load = as_float(row.get("load_avg_1m"))
        reasons.append("machine busy (noisy=1" + (f", load average {load:g}" if load is not None
                                                  else "") + ")")
    target = as_float(row.get("concurrency"))
    achieved = as_float(row.get("concurrency_achieved_mean"))
    capacity_ok = as_float(row.get("capacity_ok"))
    in_flight = (f"{achieved:.3g} in flight on average" if achieved is not None
                 else "in flight below target")
    if capacity_ok is not None:
        if capacity_ok == 0:
            reasons.append(f"capacity_ok=0 ({in_flight}"
                           + (f" for c={int(target)})" if target is not None else ")"))
    elif str(row.get("load_mode") or "closed") == "closed" and target:
        if achieved is None:
            caveats.append("no achieved-concurrency columns (file older than them): requests "
                           "in flight not checked")
        elif achieved < MIN_ACHIEVED_CONCURRENCY * target:
            reasons.append(f"{in_flight} for c={int(target)} (< "
                           f"{MIN_ACHIEVED_CONCURRENCY:.0%})")
    return reasons, caveats


def _slo_check(row: dict[str, Any], slo_ttft_ms: float | None,
               slo_tpot_ms: float | None) -> tuple[bool | None, str]:
    """Whether a row's p90 TTFT and TPOT are within the SLOs (the given ones, else the
    row's own `slo_ttft_ms`/`slo_tpot_ms`): None when no SLO applies; and the text."""
    given = slo_ttft_ms is not None or slo_tpot_ms is not None
    limits = {"TTFT": slo_ttft_ms if given else as_float(row.get("slo_ttft_ms")),
              "TPOT": slo_tpot_ms if given else as_float(row.get("slo_tpot_ms"))}
    parts, ok = [], True
    for name, limit in limits.items():
        if limit is None:
            continue
        value = as_float(row.get(f"{name.lower()}_ms_p{SLO_PERCENTILE}"))
        within = value is not None and value <= limit
        ok &= within
        shown = "-" if value is None else f"{value:.4g}"
        parts.append(f"{name} p{SLO_PERCENTILE} {shown} {'<=' if within else '>'} {limit:g} ms")
    if not parts:
        return None, ""
    return ok, ", ".join(parts)


def _fastest(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return max(rows, key=lambda r: as_float(r.get("total_throughput_tok_s")) or 0.0)


def choose_row(rows: list[dict[str, Any]], slo_ttft_ms: float | None = None,
               slo_tpot_ms: float | None = None) -> tuple[dict[str, Any], str, str]:
    """The row of one scenario's usable rows to price, the rule that chose it and why:
    the fastest row meeting the SLOs (p90 TTFT and TPOT: the SLOs given, else each row's
    own), else the knee row of the sweep (`knee=1`), else the fastest row."""
    checked = [(r, *_slo_check(r, slo_ttft_ms, slo_tpot_ms)) for r in rows]
    meeting = [(r, text) for r, ok, text in checked if ok]
    if meeting:
        best, text = max(meeting, key=lambda m: as_float(m[0].get("total_throughput_tok_s"))
                         or 0.0)
        return best, "best meeting the SLO", (
            f"the fastest of {len(meeting)} row(s) meeting the SLO ({text})")
    missed = [(r, text) for r, ok, text in checked if ok is False]
    why = ""
    if missed:
        fastest_missed = _fastest([r for r, _ in missed])
        why = ("no row meets the SLO (fastest: "
               + next(t for r, t in missed if r is fastest_missed) + "); ")
    else:
        why = "no SLO recorded; "
    knees = [r for r in rows if (as_float(r.get("knee")) or 0.0) >= 1]
    if knees:
        return _fastest(knees), "knee", why + "the knee of the sweep (knee=1)"
    return _fastest(rows), "fastest", why + "no knee marked: the fastest usable row"


def select_measurements(frame: Any, concurrency: int | None = None,
                        slo_ttft_ms: float | None = None, slo_tpot_ms: float | None = None,
                        scenario: str | None = None) -> tuple[list[Measured], list[str]]:
    """One Measured per (machine, model, workload, scenario). Rows that cannot be priced
    as capacity are refused first (`refusal_reasons`); of the rest: the row at
    `concurrency` when given, else `choose_row` (best meeting the SLO, else the knee,
    else the fastest). SLOs given here that no row meets are an error (exit 1).
    Returns the measurements and notes about what was refused or skipped."""
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns or frame[c].isna().all()]
    if missing:
        files = sorted(set(map(str, frame.get("source_file", []))))
        raise UserError(f"{', '.join(files) or 'results'}: no values in column(s) "
                        f"{', '.join(missing)}, which break-even needs; give CSVs written by "
                        "`harness bench`")
    notes: list[str] = []
    rows = [r for r in frame.to_dict("records")
            if (as_float(r.get("total_throughput_tok_s")) or 0.0) > 0]
    if not rows:
        raise UserError("no result row has a throughput above zero; rerun `harness bench`")
    if scenario is not None:
        names = sorted({str(r.get("scenario")) for r in rows})
        rows = [r for r in rows if r.get("scenario") == scenario]
        if not rows:
            raise UserError(f"--scenario {scenario!r}: no such scenario in the results."
                            f"{did_you_mean(scenario, names)} Have: {', '.join(names)}")
    if concurrency is not None:
        have = sorted({int(c) for r in rows if (c := as_float(r.get("concurrency"))) is not None})
        rows = [r for r in rows if as_float(r.get("concurrency")) == concurrency]
        if not rows:
            raise UserError(f"--concurrency {concurrency}: no result row at that concurrency; "
                            f"have {', '.join(map(str, have)) or 'none'}")
    usable: list[dict[str, Any]] = []
    refused: list[tuple[dict[str, Any], list[str]]] = []
    caveats: dict[str, int] = {}
    for r in rows:
        reasons, row_caveats = refusal_reasons(r)
        if reasons:
            refused.append((r, reasons))
            continue
        usable.append(r)
        for c in row_caveats:
            caveats[c] = caveats.get(c, 0) + 1
    for text, n in caveats.items():
        notes.append(f"{n} row(s): {text}")
    if refused:
        shown = "; ".join(f"{_row_label(r)}: {', '.join(why)}" for r, why in refused[:6])
        more = f"; and {len(refused) - 6} more" if len(refused) > 6 else ""
        notes.append(f"{len(refused)} row(s) refused as capacity: {shown}{more}")
    if not usable:
        counts: dict[str, int] = {}
        for _, why in refused:
            for w in why:
                key = w.split(" (")[0] if not w[0].isdigit() else "failed requests"
                counts[key] = counts.get(key, 0) + 1
        what = f"at --concurrency {concurrency} " if concurrency is not None else ""
        raise UserError(f"no result row {what}can be priced as capacity ("
                        + "; ".join(f"{k}: {v}" for k, v in counts.items())
                        + "); rerun `harness bench` on a quiet machine at a load it sustains")
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for r in usable:
        groups.setdefault(tuple(str(r.get(c)) for c in _GROUP), []).append(r)
    lost = sorted({str(r.get("scenario")) for r, _ in refused}
                  - {str(r.get("scenario")) for r in usable})
    if lost:
        notes.append(f"every row of scenario(s) {', '.join(lost)} refused: left out")
    slos_given = concurrency is None and (slo_ttft_ms is not None or slo_tpot_ms is not None)
    chosen: list[tuple[Measured, list[dict[str, Any]]]] = []
    missed: list[str] = []
    for group in groups.values():
        if concurrency is not None:
            best = _fastest(group)
            rule, why = f"concurrency {concurrency}", f"the row at --concurrency {concurrency}"
        else:
            best, rule, why = choose_row(group, slo_ttft_ms, slo_tpot_ms)
        if slos_given and rule != "best meeting the SLO":
            # SLOs given on the command line are a demand, not a preference: a scenario
            # whose rows all miss them is left out, and none meeting them is exit 1.
            missed.append(f"{best.get('scenario')}: "
                          + _slo_check(_fastest(group), slo_ttft_ms, slo_tpot_ms)[1])
            continue
        runs = len({r.get("run_id") for r in group})
        if runs > 1:
            notes.append(f"scenario {best.get('scenario')!r} on {best.get('machine_id')} has "
                         f"rows from {runs} runs; choosing among all of them (give one run's "
                         "CSV to choose)")
        group_refused = [(r, w) for r, w in refused
                         if all(str(r.get(c)) == str(best.get(c)) for c in _GROUP)]
        if group_refused:
            why += "; refused: " + "; ".join(f"{_row_label(r)} ({', '.join(w)})"
                                            for r, w in group_refused)
        chosen.append((measured_from_row(best, rule, f"{_row_label(best)}: {why}"), group))
    if missed:
        limits = " and ".join(
            f"{name} p{SLO_PERCENTILE} <= {limit:g} ms"
            for name, limit in (("TTFT", slo_ttft_ms), ("TPOT", slo_tpot_ms))
            if limit is not None)
        if not chosen:
            raise CheckFailed(f"no result row meets {limits} (fastest usable row: "
                              + "; ".join(missed) + "); loosen the SLOs or measure lower "
                              "concurrency")
        notes.append(f"no row of scenario(s) meets {limits}, left out: " + "; ".join(missed))
    if concurrency is not None:  # the rows asked for, whoever served them
        return [m for m, _ in chosen], notes
    measured, preferred = prefer_capacity(chosen)
    return measured, notes + preferred


# ------------------------------------------------------------------ economics

@dataclass(frozen=True)
class Assumptions:
    """Everything besides the measurement that the prices depend on."""

    electricity_usd_per_kwh: float = 0.119
    pue: float = 1.0
    ops_usd_per_month: float = 0.0
    utilization: float = 1.0
    amortize_months: float | None = None  # None: the hardware entry's, else the default
    cached_input_share: float = 0.0
    power_w: float | None = None  # replaces the measured load power
    idle_power_w: float | None = None  # replaces the measured idle power


def economics_from_hardware(hw: HardwarePrice, a: Assumptions,
                            default_amortize_months: float = 36.0) -> Economics:
    """Economics of a catalog hardware entry under the given assumptions."""
    months = a.amortize_months or hw.amortize_months or default_amortize_months
    return Economics(
        name=hw.name, kind=hw.kind, purchase_usd=hw.purchase_usd,
        amortize_months=months if hw.kind == "owned" else None,
        rent_usd_per_hour=hw.usd_per_hour, electricity_usd_per_kwh=a.electricity_usd_per_kwh,
        pue=a.pue, ops_usd_per_month=a.ops_usd_per_month, utilization=a.utilization,
        date=hw.date, source=hw.source)


def with_power(measured: Measured, a: Assumptions, hw: HardwarePrice | None) -> Measured:
    """The measurement with flag-given power replacing measured power, or the catalog's
    power for the hardware where nothing was measured."""
    if a.power_w is not None or a.idle_power_w is not None:
        load = a.power_w if a.power_w is not None else measured.load_power_w
        idle = a.idle_power_w if a.idle_power_w is not None else measured.idle_power_w
        if load is None:
            load = idle
        return replace(measured, load_power_w=load, idle_power_w=idle, power_origin="flag",
                       above_idle_j_per_token=None)
    if measured.load_power_w is None and hw is not None and hw.power_w is not None:
        return replace(measured, load_power_w=hw.power_w, above_idle_j_per_token=None,
                       idle_power_w=hw.idle_power_w if hw.idle_power_w else hw.power_w,
                       power_origin="catalog")
    return measured


# ------------------------------------------------------------------ the analysis

def _round(x: float | None, digits: int = 6) -> float | None:
    return None if x is None else float(f"{x:.{digits}g}")


def _comparisons(local: LocalModel | None, apis: list[ApiPrice]) -> dict[str, dict[str, Any]]:
    """Per API: what it serves and how it compares with the local model (like for like)."""
    out = {}
    for api in apis:
        kind, label = "", ""
        if local is not None:
            _, kind, label = comparison(local, api)
        out[api.name] = {"kind": kind, "label": label, "api_model": api.model,
                         "api_class": api.model_class}
    return out


def analyse_option(measured: Measured, econ: Economics | None, apis: list[ApiPrice],
                   volumes_tok: list[float], cached_input_share: float = 0.0,
                   hardware_note: str = "", local: LocalModel | None = None) -> dict[str, Any]:
    """Everything about one machine option as a JSON-able dict: capacity, cost per
    million tokens, break-even against each API (with how the API's model compares with
    the `local` one), the cost table, hybrid plans and the sensitivity table. `econ`
    None: an unpriced option (capacity and API value only)."""
    prices = {api.name: blended_usd_per_mtok(api, measured.input_share, cached_input_share)
              for api in apis}
    compared = _comparisons(local, apis)
    cap_full = capacity_tok_per_month(measured.total_tok_s, 1.0)
    out: dict[str, Any] = {
        "label": measured.label, "machine_id": measured.machine_id,
        "machine": measured.machine_name, "model": measured.model,
        "weights": measured.weights, "synthetic_weights": measured.synthetic,
        "workload": measured.workload, "scenario": measured.scenario,
        "backend": measured.backend, "served_by": measured.served_by,
        "concurrency": measured.concurrency,
        "output_tok_s": _round(as_float(measured.row.get("output_throughput_tok_s"))),
        "selection": measured.selection, "selection_reason": measured.selection_reason,
        "source_file": measured.source_file,
        "total_tok_s": _round(measured.total_tok_s),
        "input_share": _round(measured.input_share, 4),
        "load_power_w": _round(measured.load_power_w),
        "idle_power_w": _round(measured.idle_power_w),
        "energy_above_idle_j_per_token": _round(measured.above_idle_j_per_token),
        "power_origin": measured.power_origin,
        "capacity_mtok_per_month_full": _round(cap_full / MTOK),
        "local_model": {"label": local.label, "name": local.name,
                        "class": local.model_class, "how": local.how} if local else None,
        "api_comparison": compared,
        "api_usd_per_mtok": {k: _round(v) for k, v in prices.items()},
        "api_value_of_full_machine_usd": {k: _round(v * cap_full / MTOK)
                                          for k, v in prices.items()},
        "hardware": None, "priced": econ is not None, "unpriced_reason": hardware_note,
    }
    if econ is None:
        return out
    model = cost_model(measured, econ)
    out["hardware"] = asdict(econ)
    out.update({
        "utilization": econ.utilization,
        "capacity_mtok_per_month": _round(model.capacity_tok / MTOK),
        "hardware_usd_per_month": _round(model.hardware_usd),
        "idle_energy_usd_per_month": _round(model.idle_energy_usd),
        "machine_fixed_usd_per_month": _round(model.machine_fixed_usd),
        "marginal_energy_usd_per_mtok": _round(model.marginal_usd_per_mtok),
        "ops_usd_per_month": econ.ops_usd_per_month,
        "one_machine_usd_per_month_at_utilization": _round(
            local_monthly_usd(model, model.capacity_tok)[1]),
        "cost_per_mtok_full": _round(cost_per_mtok(model, 1.0)),
        "cost_per_mtok_at_utilization": _round(cost_per_mtok(model)),
    })
    versus = []
    for name, p in prices.items():
        be = break_even(model, p)
        versus.append({"api": name, "api_usd_per_mtok": _round(p),
                       "comparison": compared[name]["label"],
                       "match": compared[name]["kind"],
                       "break_even_mtok_per_month": _round(be.volume_tok / MTOK)
                       if be.volume_tok is not None else None,
                       "machines": be.machines, "reason": be.reason,
                       "one_machine_break_even_mtok": _round(be.one_machine_volume_tok / MTOK)
                       if be.one_machine_volume_tok is not None else None})
    out["versus"] = versus
    table = []
    for v in volumes_tok:
        n, usd = local_monthly_usd(model, v)
        entry: dict[str, Any] = {"volume_mtok": _round(v / MTOK), "machines": n,
                                 "local_usd": _round(usd),
                                 "api_usd": {k: _round(p * v / MTOK) for k, p in prices.items()},
                                 "hybrid": {}}
        for k, p in prices.items():
            h = hybrid_plan(model, p, v)
            entry["hybrid"][k] = {"usd": _round(h.usd), "machines": h.machines,
                                  "local_mtok": _round(h.local_tok / MTOK),
                                  "api_mtok": _round(h.api_tok / MTOK)}
        table.append(entry)
    out["cost_table"] = table
    out["sensitivity"] = sensitivity(measured, econ, prices)
    return out


def _variants(measured: Measured, econ: Economics) -> list[tuple[str, str, Measured, Economics]]:
    rows: list[tuple[str, str, Measured, Economics]] = [("base", "", measured, econ)]
    owned = econ.kind == "owned"
    powered = owned and measured.load_power_w is not None
    if powered:
        for f in (0.5, 2.0):
            rows.append(("electricity", f"${econ.electricity_usd_per_kwh * f:.3g}/kWh", measured,
                         replace(econ, electricity_usd_per_kwh=econ.electricity_usd_per_kwh * f)))
        if econ.pue != 1.5:
            rows.append(("pue", "1.5", measured, replace(econ, pue=1.5)))
    for u in (0.25, 0.5, 1.0):
        if abs(u - econ.utilization) > 1e-9:
            rows.append(("utilization", f"{u:g}", measured, replace(econ, utilization=u)))
    if owned:
        for m in (24, 36, 60):
            if abs(m - (econ.amortize_months or 0)) > 1e-9:
                rows.append(("amortize months", f"{m}", measured,
                             replace(econ, amortize_months=float(m))))
        for f in (0.75, 1.25):
            price = (econ.purchase_usd or 0.0) * f
            rows.append(("hardware price", f"${price:,.0f} ({f - 1:+.0%})", measured,
                         replace(econ, purchase_usd=price)))
    else:
        for f in (0.75, 1.25):
            rate = (econ.rent_usd_per_hour or 0.0) * f
            rows.append(("rent", f"${rate:.3g}/h ({f - 1:+.0%})", measured,
                         replace(econ, rent_usd_per_hour=rate)))
    for f in (0.75, 1.25):
        rows.append(("throughput", f"{measured.total_tok_s * f:,.4g} tok/s ({f - 1:+.0%})",
                     replace(measured, total_tok_s=measured.total_tok_s * f), econ))
    if econ.ops_usd_per_month > 0:
        for f in (0.5, 2.0):
            rows.append(("ops", f"${econ.ops_usd_per_month * f:,.0f}/month", measured,
                         replace(econ, ops_usd_per_month=econ.ops_usd_per_month * f)))
    return rows


def sensitivity(measured: Measured, econ: Economics,
                api_usd_per_mtok: dict[str, float]) -> list[dict[str, Any]]:
    """Cost per million tokens and break-even volumes with one input varied at a time:
    electricity, PUE, utilization, amortization, hardware price or rent, throughput, ops."""
    out = []
    for parameter, value, m, e in _variants(measured, econ):
        model = cost_model(m, e)
        be = {name: break_even(model, p) for name, p in api_usd_per_mtok.items()}
        out.append({"parameter": parameter, "value": value,
                    "cost_per_mtok_at_utilization": _round(cost_per_mtok(model)),
                    "break_even_mtok_per_month": {
                        k: _round(v.volume_tok / MTOK) if v.volume_tok is not None else None
                        for k, v in be.items()}})
    return out


def analyse(measurements: list[Measured], catalog: Catalog, assumptions: Assumptions,
            api_names: list[str] | None = None, economics: Economics | None = None,
            hardware: HardwarePrice | None = None,
            volumes_mtok: list[float] | None = None, notes: list[str] | None = None
            ) -> dict[str, Any]:
    """The full break-even result (JSON-able). Each measurement is priced by `economics`
    (or `hardware`) when given, else by every catalog hardware entry matching its machine;
    a measurement nothing prices is kept as an unpriced option."""
    volumes = sorted({*DEFAULT_VOLUMES_MTOK, *(volumes_mtok or [])})
    volumes_tok = [v * MTOK for v in volumes]
    notes = list(notes or [])
    options = []
    used: dict[str, ApiPrice] = {}
    for m in measurements:
        pairs: list[tuple[Measured, Economics | None, str]] = []
        if economics is not None:
            pairs.append((with_power(m, assumptions, None), economics, ""))
        else:
            hws = [hardware] if hardware is not None else catalog.hardware_for(m.row)
            if hardware is not None and hardware.match and hardware not in \
                    catalog.hardware_for(m.row):
                notes.append(f"{hardware.name} prices throughput measured on "
                             f"{m.machine_name}: the speed is that machine's, not "
                             f"{hardware.name}'s")
            for hw in hws:
                pairs.append((with_power(m, assumptions, hw),
                              economics_from_hardware(hw, assumptions,
                                                      catalog.defaults.amortize_months), ""))
            if not hws:
                pairs.append((with_power(m, assumptions, None), None,
                              f"no price known for {m.machine_name}"))
        local = catalog.local_model(m.row)
        apis = like_for_like(catalog, local, list(api_names) if api_names else None)
        for api in apis:
            used.setdefault(api.name, api)
        if apis and comparison(local, apis[0])[0] >= 2:
            notes.append(f"no hosted offer of the same model or class as {local.label} "
                         f"({local.model_class or 'class unknown'}) in the price catalog: "
                         "its comparisons are across classes and labelled so; add an [[api]] "
                         "entry with model/class (--prices FILE) to compare like for like")
        for mm, econ, why in pairs:
            options.append(analyse_option(mm, econ, apis, volumes_tok,
                                          assumptions.cached_input_share, why, local))
    if any(o["synthetic_weights"] for o in options):
        notes.append("SYNTHETIC weights: throughput of a random-weight model of the same "
                     "shape; its speed is real, its answers are not")
    if any(o["priced"] and o["hardware"]["kind"] == "owned" and o["load_power_w"] is None
           for o in options):
        notes.append("energy not priced for rows without measured power; give --power-w "
                     "(and --idle-power-w)")
    if any(o["power_origin"] == "estimated" for o in options):
        notes.append("power estimated, not measured, for some rows (power_method=estimated)")
    if any(o["power_origin"] == "catalog" for o in options):
        notes.append("power from the catalog, not measured, for some rows")
    if any(m.row.get("load_mode") == "open" for m in measurements):
        notes.append("open-loop rows: their throughput is the offered arrival rate, a lower "
                     "bound on capacity; closed-loop sweeps measure capacity")
    if any(not o["priced"] for o in options):
        notes.append(PRICE_HINT)
    return {
        "assumptions": {
            "month": "30 days (2,592,000 s, 720 h)",
            "volume": "total tokens (input + output) per month, in each row's own mix",
            "utilization": assumptions.utilization,
            "electricity_usd_per_kwh": assumptions.electricity_usd_per_kwh,
            "pue": assumptions.pue, "ops_usd_per_month": assumptions.ops_usd_per_month,
            "cached_input_share": assumptions.cached_input_share,
            "catalog_files": list(catalog.files),
        },
        "apis": [asdict(a) for a in used.values()]
        or [asdict(catalog.api_named(n)) for n in (api_names or catalog.defaults.apis)],
        "volumes_mtok": volumes,
        "options": options,
        "notes": list(dict.fromkeys(notes)),
    }


def analyse_frame(frame: Any, catalog: Catalog | None = None,
                  assumptions: Assumptions | None = None, **kwargs: Any) -> dict[str, Any]:
    """`analyse` over a result DataFrame with the catalog's defaults: each scenario's
    row chosen by `select_measurements`, priced by the catalog entries matching its machine (unpriced if none).
    Keyword arguments go to `analyse` (api_names, economics, hardware, volumes_mtok)."""
    catalog = catalog or load_catalog()
    measurements, notes = select_measurements(frame)
    a = assumptions or Assumptions(
        electricity_usd_per_kwh=catalog.defaults.electricity_usd_per_kwh,
        pue=catalog.defaults.pue)
    return analyse(measurements, catalog, a, notes=notes, **kwargs)


PRICE_HINT = ("to price a machine: --hardware NAME (see the catalog), --hardware-price USD "
              "[--amortize-months N], or --rent-usd-per-hour X; or add a [[hardware]] entry "
              "with match = [\"<your GPU or CPU model>\"] to a TOML file given with --prices "
              "FILE or HARNESS_PRICES=FILE")


__all__ = [
    "Assumptions", "BreakEven", "CostModel", "Economics", "HybridPlan", "Measured",
    "analyse", "analyse_frame", "analyse_option", "as_float", "blended_usd_per_mtok", "break_even",
    "capacity_tok_per_month", "cost_model", "cost_per_mtok", "economics_from_hardware", "energy_usd_per_month", "hardware_usd_per_month", "hybrid_plan", "local_monthly_usd", "machines_needed",
    "measured_from_row", "prefer_capacity", "refusal_reasons", "choose_row",
    "select_measurements", "sensitivity", "served_by",
]
