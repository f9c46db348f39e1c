"""The runner: warmup, repetitions, closed-loop concurrency, sweeps; power meters wrap
only the measured phase. Each request is written to JSONL as it completes and each
scenario's row to the CSV as it ends, so an interrupted run keeps what it measured.
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from backends.base import Backend, BackendInfo, BatchBackend, Request, ServerMetricsBackend
from harness import __version__
from harness.metrics import RequestRecord, scenario_summary
from harness.power import PowerSession
from harness.power.columns import per_token_columns
from harness.results.files import RunFiles
from harness.results.machine import harness_commit, load_avg_1m
from harness.results.schema import empty_row
from harness.runner.load import (
    lag_note,
    measure_request,
    run_batch_repetition,
    run_closed_loop,
    run_open_loop,
)
from harness.runner.options import STALL_TIMEOUT_S, RunOptions, RunState, SweepPoint
from workloads.requests import PromptFactory
from workloads.spec import Scenario, Workload


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def new_run_id() -> str:
    """Sortable and unique: UTC time plus a short random suffix."""
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]


class Progress:
    """One status line on stderr (redrawn on a terminal, one line per step otherwise)."""

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet
        self.tty = sys.stderr.isatty()
        self.last = ""

    def update(self, text: str, final: bool = False) -> None:
        if self.quiet:
            return
        if self.tty:
            sys.stderr.write("\r\033[K" + text + ("\n" if final else ""))
            sys.stderr.flush()
        elif final or text.split("]")[0] != self.last.split("]")[0]:
            sys.stderr.write(text + "\n")
            sys.stderr.flush()
        self.last = text


def sweep_points(scenario: Scenario) -> list[SweepPoint]:
    """Closed-loop points for each concurrency, or open-loop points for each rate."""
    if scenario.rate_rps:
        cap = scenario.max_in_flight or max(scenario.concurrency)
        return [SweepPoint(concurrency=cap, rate_rps=r) for r in scenario.rate_rps]
    return [SweepPoint(concurrency=c) for c in scenario.concurrency]


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


async def run_workload(backend: Backend, info: BackendInfo, workload: Workload,
                       files: RunFiles, machine: dict[str, Any], run_id: str,
                       power: PowerSession, options: RunOptions,
                       state: RunState) -> list[dict[str, Any]]:
    """Run every scenario and sweep point of `workload`; return the rows written."""
    progress = Progress(options.quiet)
    STALL_TIMEOUT_S.set(options.stall_timeout_s)
    base = context_row(machine, info, run_id)
    cores = machine.get("cpu_threads") or 1
    limit = backend.max_concurrency
    if options.idle_power_s > 0:
        # Once, before any request of the run: after a warmup a GPU is still hot and
        # reads high for seconds. The power session keeps it for every row of the run.
        progress.update(f"measuring idle power {options.idle_power_s:g} s before any request")
        await asyncio.to_thread(power.measure_idle, options.idle_power_s)
    for s_index, scenario in enumerate(workload.scenarios):
        factory = PromptFactory(workload, scenario,
                                lambda text: backend.count_tokens(text, prompt=True) or
                                max(1, len(text) // 4))
        for point in sweep_points(scenario):
            label = (f"[{s_index + 1}/{len(workload.scenarios)} {scenario.name} "
                     f"{point.label}]")
            notes: list[str] = []
            if limit is not None and point.concurrency > limit:
                notes.append(f"backend serves {limit} request(s) at a time; "
                             f"concurrency {point.concurrency} queues in the client")
            started, load_start = utc_now(), load_avg_1m()
            interrupted = False
            try:  # Warmup: same shape, own prompts, not recorded.
                for w in range(scenario.warmup_requests):
                    progress.update(f"{label} warmup {w + 1}/{scenario.warmup_requests}")
                    await measure_request(backend, factory.make("warmup", w, point),
                                          scenario.name, -1, options.request_timeout_s)
            except (asyncio.CancelledError, KeyboardInterrupt):
                interrupted = True  # still write this scenario's row, marked partial
            records: list[RequestRecord] = []

            def on_record(record: RequestRecord) -> None:
                records.append(record)
                files.add_request({"run_id": run_id, "workload": workload.name,
                                   "load": point.label, **record.to_json()})
                total = (scenario.requests or 0) * scenario.repetitions
                done = f"{len(records)}/{total}" if total else f"{len(records)}"
                progress.update(f"{label} {done} requests")

            metrics = backend if isinstance(backend, ServerMetricsBackend) else None
            if metrics is not None:
                await metrics.server_metrics_start()
            power.start()
            try:
                for rep in range(scenario.repetitions if not interrupted else 0):
                    await run_scenario_repetition(backend, factory, scenario, point, rep,
                                                  options, on_record)
            except (asyncio.CancelledError, KeyboardInterrupt):
                interrupted = True
            try:
                power_cols, timeline = power.stop()
            except Exception as exc:  # noqa: BLE001 - a failing meter never loses the row
                power_cols, timeline = {"power_method": "unavailable", "power_source": "none",
                                        "power_note": f"power meter failed: {exc}"}, []
            for sample in timeline:
                files.add_power_sample({"run_id": run_id, "scenario": scenario.name,
                                        "load": point.label, **sample})
            server = await metrics.server_metrics_stop() if metrics is not None \
                else None
            if server:
                files.add_server_metrics({"run_id": run_id, "scenario": scenario.name,
                                          "load": point.label, **server})
            row = dict(base)
            row.update(power_cols)
            row.update(server["columns"] if server else {})
            # SLOs: the command line wins over the workload file.
            row.update(scenario_summary(records, options.slo_ttft_ms or scenario.slo_ttft_ms,
                                        options.slo_tpot_ms or scenario.slo_tpot_ms,
                                        options.price_usd_per_mtok))
            if point.rate_rps:
                lag = lag_note(records, point.rate_rps, point.concurrency)
                if lag:
                    notes.append(lag)
                    sys.stderr.write(("\r\033[K" if sys.stderr.isatty() else "")  # also --quiet
                                     + f"{label} warning: {lag}\n")
            row.update(per_token_columns(row.get("energy_j"), row.get("input_tokens"),
                                         row.get("output_tokens")))
            if isinstance(backend, BatchBackend):
                notes.append(f"offline batch: {scenario.requests} requests submitted at once "
                             "per repetition; TTFT/TPOT from engine request metrics")
            _finish_row(row, workload, scenario, point, started, load_start, cores, notes,
                        interrupted)
            if isinstance(backend, BatchBackend):
                row.update(load_mode="batch", concurrency=scenario.requests)
            files.add_row(row)
            state.rows.append(row)
            progress.update(f"{label} done: {len(records)} requests", final=True)
            if interrupted:
                state.interrupted = True
                raise KeyboardInterrupt
    return state.rows


async def run_scenario_repetition(backend: Backend, factory: PromptFactory,
                                  scenario: Scenario, point: SweepPoint, rep: int,
                                  options: RunOptions,
                                  on_record: Callable[[RequestRecord], None]) -> None:
    """One measured repetition at one load level."""
    if isinstance(backend, BatchBackend):
        await run_batch_repetition(backend, factory, scenario, point, rep, options, on_record)
        return
    # A counted repetition's prompts are made before it starts, so sizing them with the
    # tokenizer takes no client time inside the measured window (nor blocks the event
    # loop while other streams arrive); duration-bound runs make them as they go.
    made = [factory.make(rep, i, point) for i in range(scenario.requests or 0)]

    def make(i: int) -> Request:
        return made[i] if i < len(made) else factory.make(rep, i, point)

    if point.rate_rps:
        await run_open_loop(backend, make, scenario, point, rep, options.request_timeout_s,
                            on_record)
        return
    await run_closed_loop(backend, make, scenario, point, rep, options.request_timeout_s,
                          on_record, scenario.requests, scenario.duration_s)


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
        load_avg_1m=load_start, load_avg_1m_end=load_end, noisy=int(noisy),
        peak_rss_mb=row.get("peak_rss_mb") or (
            round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
            if sys.platform != "darwin" else
            round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 1)),
        notes="; ".join(notes),
    )


__all__ = ["RunOptions", "RunState", "SweepPoint", "run_workload", "measure_request",
           "new_run_id"]
