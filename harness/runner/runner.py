"""The runner: warmup, repetitions, closed-loop concurrency, sweeps (and the saturation
sweep of `--concurrency auto`); power meters wrap only the measured phase. Each request
is handed to the result files' writer thread as it completes (no file I/O on the event
loop) and each scenario's row is written to the CSV as it ends, after the requests it
counts are on disk, so an interrupted run keeps what it measured.
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from backends.base import Backend, BackendInfo, BatchBackend, Request, ServerMetricsBackend
from harness import __version__
from harness.errors import UserError
from harness.metrics import CAPACITY_MIN_FRACTION, RequestRecord, scenario_summary
from harness.power import PowerSession
from harness.power.columns import per_token_columns
from harness.results.files import RunFiles
from harness.results.machine import harness_commit, load_avg_1m
from harness.results.schema import empty_row
from harness.runner.load import (
    DEFAULT_MAX_IN_FLIGHT,
    OpenLoopStats,
    lag_note,
    measure_request,
    run_batch_repetition,
    run_closed_loop,
    run_open_loop,
    throttle_note,
)
from harness.runner.options import STALL_TIMEOUT_S, RunOptions, RunState, SweepPoint
from harness.runner.progress import Progress, RowCounter
from workloads.requests import PromptFactory
from workloads.spec import Scenario, Workload

# --concurrency auto stops after PLATEAU_STEPS doublings of N in a row that grew output
# throughput by less than GROWTH_MIN.
GROWTH_MIN = 0.05
PLATEAU_STEPS = 2


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def new_run_id() -> str:
    """Sortable and unique: UTC time plus a short random suffix."""
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]


def sweep_points(scenario: Scenario) -> list[SweepPoint]:
    """Closed-loop points for each concurrency, or open-loop points for each rate (at
    most `max_in_flight` in flight, default DEFAULT_MAX_IN_FLIGHT)."""
    if scenario.rate_rps:
        cap = scenario.max_in_flight or DEFAULT_MAX_IN_FLIGHT
        return [SweepPoint(concurrency=cap, rate_rps=r) for r in scenario.rate_rps]
    return [SweepPoint(concurrency=c) for c in scenario.concurrency]


def auto_levels(cap: int) -> list[int]:
    """The concurrencies --concurrency auto may visit: 1, 2, 4, ... and the cap itself."""
    levels, n = [], 1
    while n < cap:
        levels.append(n)
        n *= 2
    return levels + [cap]


def slo_breach(row: dict[str, Any], slo_ttft_ms: float | None,
               slo_tpot_ms: float | None) -> str | None:
    """Which SLO a row's p90 TTFT or TPOT breaks, in words; None when it meets them."""
    for name, limit in (("TTFT", slo_ttft_ms), ("TPOT", slo_tpot_ms)):
        p90 = row.get(f"{name.lower()}_ms_p90")
        if limit is not None and p90 is not None and p90 > limit:
            return f"{name} p90 {p90:.4g} ms > SLO {limit:g} ms"
    return None


def knee_step(rows: Sequence[dict[str, Any]], slo_ttft_ms: float | None,
              slo_tpot_ms: float | None, at_cap: bool) -> tuple[dict[str, Any] | None, str]:
    """Where the saturation sweep stands after its newest row (`rows[-1]`; the rows
    before it are the sweep's earlier doublings, each of which let it go on): (None, "")
    to go on, or (the knee row, why) to stop.

    The anchor is the smallest load whose throughput the later loads did not beat by
    GROWTH_MIN or more (the first row, moved up by every doubling that did). The sweep
    stops when a request failed or an SLO broke at this load (the knee is the anchor;
    this row when there is no earlier one), after PLATEAU_STEPS doublings in a row that
    grew output throughput by less than GROWTH_MIN over the anchor (the knee is the
    anchor: the larger loads bought latency, not throughput; one flat doubling is not
    enough, since batched kernels can gain nothing at 2 or 4 sequences and double at 8),
    or at the cap (the anchor, this row when it grew)."""
    row, earlier = rows[-1], list(rows[:-1])
    c = row.get("concurrency")
    anchor = _anchor(earlier)
    if row.get("errors"):
        return anchor or row, f"{row['errors']} request(s) failed at c={c}"
    broke = slo_breach(row, slo_ttft_ms, slo_tpot_ms)
    if broke:
        return anchor or row, f"{broke} at c={c}" + (
            "" if anchor is not None else ": no load level met the SLO")
    anchor = _anchor([*earlier, row])
    flat = len(rows) - 1 - next(i for i, r in enumerate(rows) if r is anchor)
    if flat >= PLATEAU_STEPS:
        before = anchor.get("output_throughput_tok_s") or 0.0
        rates = " -> ".join(f"{r.get('output_throughput_tok_s') or 0:.4g}"
                            for r in rows[-flat - 1:])
        return anchor, (f"{flat} doublings after c={anchor.get('concurrency')} grew output "
                        f"throughput by less than {GROWTH_MIN:.0%} over its {before:.4g} "
                        f"tok/s ({rates} tok/s, up to c={c})")
    if at_cap:
        if anchor is row:
            return row, f"reached --max-concurrency {c} with throughput still growing"
        return anchor, (f"reached --max-concurrency {c}; c={anchor.get('concurrency')} "
                        f"is within {GROWTH_MIN:.0%} of the larger loads' throughput")
    return None, ""


def _anchor(rows: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """The first row, moved to each later row whose output throughput beat it by
    GROWTH_MIN or more; None without rows."""
    anchor = None
    for r in rows:
        rate = r.get("output_throughput_tok_s")
        if anchor is None:
            anchor = r
            continue
        before = anchor.get("output_throughput_tok_s")
        if rate is not None and (not before or rate >= before * (1 + GROWTH_MIN)):
            anchor = r
    return anchor


def context_row(machine: dict[str, Any], info: BackendInfo, run_id: str) -> dict[str, Any]:
    """The columns every row of a run shares: machine, harness, engine, model."""
    row = empty_row()
    for key in ("machine_id", "hostname", "cpu_model", "cpu_cores", "cpu_threads", "ram_gb",
                "gpu_name", "gpu_count", "gpu_driver", "os", "python_version"):
        row[key] = machine.get(key)
    row.update(
        run_id=run_id, harness_version=__version__, harness_commit=harness_commit(),
        backend=info.backend, engine=info.engine, engine_version=info.engine_version,
        engine_build=info.engine_build, device=info.device, model=info.model,
        model_path=info.model_path, model_sha256=info.model_sha256,
        model_size_mb=info.model_size_mb, model_params=info.model_params,
        model_arch=info.model_arch, quant=info.quant, weights=info.weights,
        settings_json=json.dumps(info.settings, sort_keys=True, default=str),
    )
    return row


def _add_note(row: dict[str, Any], note: str) -> None:
    row["notes"] = "; ".join(n for n in (row.get("notes") or "", note) if n)


@dataclass
class _Run:
    """What every load level of one `run_workload` call shares."""

    backend: Backend
    info: BackendInfo
    workload: Workload
    files: RunFiles
    run_id: str
    power: PowerSession
    options: RunOptions
    state: RunState
    progress: Progress
    base: dict[str, Any]
    cores: int

    def slos(self, scenario: Scenario) -> tuple[float | None, float | None]:
        """The SLOs of a scenario: the command line wins over the workload file."""
        return (self.options.slo_ttft_ms or scenario.slo_ttft_ms,
                self.options.slo_tpot_ms or scenario.slo_tpot_ms)

    async def auto_sweep(self, scenario: Scenario, factory: PromptFactory,
                         where: str) -> None:
        """--concurrency auto: c = 1, 2, 4, ... up to the cap until `knee_step` stops
        it; the knee row gets knee=1 (the others 0) and says why in its notes."""
        slo_ttft, slo_tpot = self.slos(scenario)
        rows: list[dict[str, Any]] = []
        cap = max(1, int(self.options.max_concurrency))
        for n in auto_levels(cap):
            row = await self.point(scenario, factory, SweepPoint(concurrency=n), where,
                                   knee=0)
            rows.append(row)
            knee, why = knee_step(rows, slo_ttft, slo_tpot, at_cap=n >= cap)
            if knee is None:
                continue
            knee["knee"] = 1
            _add_note(knee, f"knee of the concurrency sweep (--concurrency auto, SLOs on "
                            f"p90): {why}")
            if knee is not row:
                _add_note(row, f"the concurrency sweep stopped here: {why}")
            self.files.flush_rows()
            self.progress.update(f"[{where}] knee: c={knee['concurrency']} ({why})",
                                 final=True)
            return

    async def point(self, scenario: Scenario, factory: PromptFactory, point: SweepPoint,
                    where: str, knee: int | None = None) -> dict[str, Any]:
        """Warm up, measure every repetition at one load level, write its row."""
        backend, files, options, workload = (self.backend, self.files, self.options,
                                             self.workload)
        label = f"[{where} {point.label}]"
        notes: list[str] = []
        batch = isinstance(backend, BatchBackend)
        limit = backend.max_concurrency
        serial = (not batch and not point.rate_rps and limit is not None
                  and point.concurrency > limit)
        if serial:
            notes.append(f"{backend.name} serves {limit} request(s) at a time in process: "
                         f"the other {point.concurrency - limit} of c={point.concurrency} "
                         "waited in the client's queue, so this is serial throughput, not "
                         "concurrency (serve the model, e.g. --server llama-server, to "
                         "measure batching)")
        elif limit is not None and point.rate_rps and point.concurrency > limit:
            notes.append(f"{backend.name} serves {limit} request(s) at a time; arrivals "
                         "beyond that queue in the client")
        started, load_start = utc_now(), load_avg_1m()
        interrupted = False
        try:  # Warmup: same shape, own prompts, not recorded.
            for w in range(scenario.warmup_requests):
                self.progress.update(f"{label} warmup {w + 1}/{scenario.warmup_requests}")
                await measure_request(backend, factory.make("warmup", w, point),
                                      scenario.name, -1, options.request_timeout_s)
        except (asyncio.CancelledError, KeyboardInterrupt):
            interrupted = True  # still write this scenario's row, marked partial
        records: list[RequestRecord] = []
        per_rep = (scenario.requests if batch or point.rate_rps
                   else scenario.requests_at(point.concurrency))
        fields = {"run_id": self.run_id, "workload": workload.name, "load": point.label}
        counter = self.progress.row(
            label, per_rep * scenario.repetitions if per_rep else None,
            scenario.duration_s * scenario.repetitions if scenario.duration_s else None)

        def on_record(record: RequestRecord) -> None:
            records.append(record)
            # The line is built and written by the files' writer thread.
            files.add_request(lambda: {**fields, **record.to_json()})
            counter.done(record.ok, record.output_tokens)  # drawn from a timer

        metrics = backend if isinstance(backend, ServerMetricsBackend) else None
        if metrics is not None:
            await metrics.server_metrics_start()
        stats = OpenLoopStats()
        self.power.start()
        try:
            for rep in range(scenario.repetitions if not interrupted else 0):
                await run_scenario_repetition(backend, factory, scenario, point, rep,
                                              options, on_record, stats, counter)
        except (asyncio.CancelledError, KeyboardInterrupt):
            interrupted = True
        try:
            power_cols, timeline = self.power.stop()
        except Exception as exc:  # noqa: BLE001 - a failing meter never loses the row
            power_cols, timeline = {"power_method": "unavailable", "power_source": "none",
                                    "power_note": f"power meter failed: {exc}"}, []
        for sample in timeline:
            files.add_power_sample({"run_id": self.run_id, "scenario": scenario.name,
                                    "load": point.label, **sample})
        server = await metrics.server_metrics_stop() if metrics is not None else None
        if server:
            files.add_server_metrics({"run_id": self.run_id, "scenario": scenario.name,
                                      "load": point.label, **server})
        row = dict(self.base)
        row.update(power_cols)
        row.update(server["columns"] if server else {})
        target = (scenario.requests if batch else None if point.rate_rps
                  else point.concurrency)
        slo_ttft, slo_tpot = self.slos(scenario)
        row.update(scenario_summary(records, slo_ttft, slo_tpot, options.price_usd_per_mtok,
                                    target_concurrency=target))
        if point.rate_rps:
            lag = lag_note(records, point.rate_rps,
                           point.concurrency if stats.throttled else None)
            for note in (throttle_note(stats, point.concurrency), lag):
                if note:
                    notes.append(note)
                    self.progress.warn(f"{label} warning: {note}")  # also --quiet
        if serial:
            row["capacity_ok"] = 0
        elif row.get("capacity_ok") == 0 and records:
            notes.append(_in_flight_note(row, target))
        short = _short_output_note(records, row, self.info)
        if short:
            notes.append(short)
        row.update(per_token_columns(row.get("energy_j"), row.get("input_tokens"),
                                     row.get("output_tokens")))
        if batch:
            notes.append(f"offline batch: {scenario.requests} requests submitted at once "
                         "per repetition; TTFT/TPOT from engine request metrics")
        reuse = factory.reuse_note(per_rep)
        if reuse:
            notes.append(reuse)
        _finish_row(row, workload, scenario, point, started, load_start, self.cores, notes,
                    interrupted)
        row.update(factory.row_columns())  # a dataset's label and targets
        row["knee"] = knee
        if batch:
            row.update(load_mode="batch", concurrency=scenario.requests,
                       requests_per_stream=None)
        elif serial:
            row["load_mode"] = "serial"
        files.add_row(row)
        self.state.rows.append(row)
        self.progress.finish(counter)
        if interrupted:
            self.state.interrupted = True
            raise KeyboardInterrupt
        return row


def _in_flight_note(row: dict[str, Any], target: int | None) -> str:
    achieved, peak = row.get("concurrency_achieved_mean"), row.get("concurrency_achieved_peak")
    shown = f"{achieved:.3g}" if achieved is not None else "unknown"
    return (f"requests in flight averaged {shown} (peak {peak}) for a target of {target}: "
            f"below {CAPACITY_MIN_FRACTION:.0%}, so this row is not a capacity measurement "
            "at that concurrency (capacity_ok=0; more requests per repetition keep all "
            "streams busy: requests_per_stream)")


def _short_output_note(records: list[RequestRecord], row: dict[str, Any],
                       info: BackendInfo) -> str | None:
    """A note when successful requests ended before their target output length."""
    short = [r for r in records if r.short_output]
    if not short:
        return None
    reasons = Counter(r.finish_reason or "unknown" for r in short)
    ok = sum(1 for r in records if r.ok)
    how = info.settings.get("force_length")
    return (f"{len(short)} of {ok} requests produced fewer output tokens than asked for "
            f"(finish_reason " + ", ".join(f"{k}={v}" for k, v in sorted(reasons.items()))
            + ")" + (f"; output length forced with: {how}" if how else "")
            + ": the token mix differs from the workload's")


async def run_workload(backend: Backend, info: BackendInfo, workload: Workload,
                       files: RunFiles, machine: dict[str, Any], run_id: str,
                       power: PowerSession, options: RunOptions,
                       state: RunState) -> list[dict[str, Any]]:
    """Run every scenario and sweep point of `workload`; return the rows written."""
    STALL_TIMEOUT_S.set(options.stall_timeout_s)
    if options.concurrency_auto and isinstance(backend, BatchBackend):
        raise UserError("--concurrency auto sweeps closed-loop concurrency; this backend runs "
                        "each repetition as one offline batch: serve the model (e.g. "
                        "--server vllm) to sweep it")
    run = _Run(backend, info, workload, files, run_id, power, options, state,
               Progress(options.quiet), context_row(machine, info, run_id),
               machine.get("cpu_threads") or 1)
    if options.labels:
        run.base["labels"] = json.dumps(options.labels, sort_keys=True)
    try:
        return await _run_scenarios(run, _prompt_counter(backend))
    finally:
        run.progress.close()


def _prompt_counter(backend: Backend) -> Callable[[str], int]:
    """Prompt tokens by the backend's tokenizer (BOS included), else about 4 bytes each."""
    return lambda text: backend.count_tokens(text, prompt=True) or max(1, len(text) // 4)


async def _run_scenarios(run: _Run, count_tokens: Callable[[str], int]
                         ) -> list[dict[str, Any]]:
    """The idle power once, then every scenario and load level of the run."""
    workload, options, power, state = run.workload, run.options, run.power, run.state
    if options.idle_power_s > 0:
        # Once, before any request of the run: after a warmup a GPU is still hot and
        # reads high for seconds. The power session keeps it for every row of the run.
        run.progress.update(f"measuring idle power {options.idle_power_s:g} s before any "
                            "request")
        await asyncio.to_thread(power.measure_idle, options.idle_power_s)
    for s_index, scenario in enumerate(workload.scenarios):
        factory = PromptFactory(workload, scenario, count_tokens, run.run_id)
        where = f"{s_index + 1}/{len(workload.scenarios)} {scenario.name}"
        if options.concurrency_auto and not scenario.rate_rps:
            await run.auto_sweep(scenario, factory, where)
            continue
        for point in sweep_points(scenario):
            await run.point(scenario, factory, point, where)
    return state.rows


async def run_scenario_repetition(backend: Backend, factory: PromptFactory,
                                  scenario: Scenario, point: SweepPoint, rep: int,
                                  options: RunOptions,
                                  on_record: Callable[[RequestRecord], None],
                                  stats: OpenLoopStats | None = None,
                                  counter: RowCounter | None = None) -> None:
    """One measured repetition at one load level; a closed loop sends
    `scenario.requests_at(concurrency)` requests (every stream kept busy); `counter`
    counts the requests handed to the load loop (progress: in flight)."""
    if isinstance(backend, BatchBackend):
        await run_batch_repetition(backend, factory, scenario, point, rep, options, on_record)
        return
    count = scenario.requests if point.rate_rps else scenario.requests_at(point.concurrency)
    # A counted repetition's prompts are made before it starts, so sizing them with the
    # tokenizer takes no client time inside the measured window (nor blocks the event
    # loop while other streams arrive); duration-bound runs make them as they go.
    made = [factory.make(rep, i, point) for i in range(count or 0)]

    def make(i: int) -> Request:
        if counter is not None:
            counter.sent()
        return made[i] if i < len(made) else factory.make(rep, i, point)

    if point.rate_rps:
        await run_open_loop(backend, make, scenario, point, rep, options.request_timeout_s,
                            on_record, stats)
        return
    await run_closed_loop(backend, make, scenario, point, rep, options.request_timeout_s,
                          on_record, count, scenario.duration_s)


def _finish_row(row: dict[str, Any], workload: Workload, scenario: Scenario,
                point: SweepPoint, started: str, load_start: float | None, cores: int,
                notes: list[str], interrupted: bool) -> None:
    load_end = load_avg_1m()
    # Busy machine: the 1-minute load average trails, so after a previous scenario it
    # includes this benchmark's own threads (up to every CPU for llama.cpp); only load
    # beyond all CPUs plus a margin says something else was running.
    noisy = load_start is not None and load_start > cores + 0.5
    if noisy:
        notes.append(f"machine busy: load average {load_start} on {cores} CPUs")
    if row.get("errors"):
        notes.append(f"{row['errors']} request(s) failed ({row['error_kinds']})")
    row.update(
        started_at_utc=started, finished_at_utc=utc_now(),
        status="partial" if interrupted else "complete",
        workload=workload.name, scenario=scenario.name,
        load_mode="open" if point.rate_rps else "closed",
        concurrency=point.concurrency, request_rate_rps=point.rate_rps,
        input_tokens_target=scenario.input_tokens.nominal,
        output_tokens_target=scenario.output_tokens,
        repetitions=scenario.repetitions, warmup_requests=scenario.warmup_requests,
        requests_per_stream=None if point.rate_rps else scenario.requests_per_stream,
        shared_prefix_tokens=scenario.shared_prefix_tokens,
        load_avg_1m=load_start, load_avg_1m_end=load_end, noisy=int(noisy),
        peak_rss_mb=row.get("peak_rss_mb") or (
            round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
            if sys.platform != "darwin" else
            round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 1)),
        notes="; ".join(notes),
    )


__all__ = ["GROWTH_MIN", "PLATEAU_STEPS", "RunOptions", "RunState", "SweepPoint", "auto_levels", "knee_step",
           "measure_request", "new_run_id", "run_workload", "slo_breach", "sweep_points"]
