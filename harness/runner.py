"""The runner: warmup, repetitions, closed-loop concurrency, sweeps; power meters wrap
only the measured phase. Each request is written to JSONL as it completes and each
scenario's row to the CSV as it ends, so an interrupted run keeps what it measured.
"""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import json
import random
import resource
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

from backends.base import Backend, BackendInfo, BatchResult, Request, RequestError, Usage
from harness import __version__
from harness.machine import harness_commit, load_avg_1m
from harness.metrics import RequestRecord, scenario_summary
from harness.power import PowerSession
from harness.power.columns import per_token_columns
from harness.results import RunFiles
from harness.schema import empty_row
from workloads.prompts import LONG_ANSWER_INSTRUCTION, synthesize_prompt, unique_prefix
from workloads.spec import Scenario, Workload


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def new_run_id() -> str:
    """Sortable and unique: UTC time plus a short random suffix."""
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]


# The stall timeout of the requests of this run (set by run_workload; tasks inherit it).
STALL_TIMEOUT_S: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "stall_timeout_s", default=None)


@dataclass
class RunOptions:
    """Settings of one `bench` invocation that are not part of the workload."""

    request_timeout_s: float = 600.0
    idle_power_s: float = 0.0
    slo_ttft_ms: float | None = None
    slo_tpot_ms: float | None = None
    quiet: bool = False
    stall_timeout_s: float | None = None  # longest gap between tokens after the first


@dataclass
class SweepPoint:
    """One load level of a scenario: a concurrency (closed loop) or a rate (open loop)."""

    concurrency: int
    rate_rps: float | None = None

    @property
    def label(self) -> str:
        return f"rate={self.rate_rps:g}/s" if self.rate_rps else f"c={self.concurrency}"


@dataclass
class RunState:
    """What has been measured so far; the runner marks rows partial when interrupted."""

    interrupted: bool = False
    rows: list[dict[str, Any]] = field(default_factory=list)


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


def _seed_for(*parts: Any) -> int:
    return int.from_bytes(hashlib.sha256(":".join(map(str, parts)).encode()).digest()[:8], "big")


class PromptFactory:
    """Deterministic requests for a scenario: length and text depend only on the seed,
    the workload, the scenario, the repetition (or 'warmup') and the request index."""

    def __init__(self, workload: Workload, scenario: Scenario,
                 count_prompt_tokens: Callable[[str], int]) -> None:
        self.workload, self.scenario = workload, scenario
        self.count = count_prompt_tokens

    def make(self, repetition: int | str, index: int, point: SweepPoint) -> Request:
        s = self.scenario
        rng = random.Random(_seed_for(self.workload.seed, self.workload.name, s.name,
                                      repetition, index))
        target = s.input_tokens.sample(rng, 1)[0]
        tag = f"{point.label} {repetition}"
        prefix = unique_prefix(self.workload.seed, self.workload.name, f"{s.name} {tag}",
                               0, index)
        if s.long_answer:
            prefix = LONG_ANSWER_INSTRUCTION + prefix
        prompt, actual = synthesize_prompt(self.count, target, rng, prefix)
        return Request(
            request_id=f"{s.name}/{point.label}/{repetition}/{index}",
            prompt=prompt,
            input_tokens=actual,
            max_output_tokens=s.output_tokens,
            force_output_length=not s.long_answer,
            chat=s.chat,
        )


async def measure_request(backend: Backend, request: Request, scenario: str,
                          repetition: int, timeout_s: float,
                          scheduled_ns: int | None = None,
                          stall_timeout_s: float | None = None) -> RequestRecord:
    """Send one request, record the arrival of every event; errors become records
    (`timeout` past `timeout_s` in all, `stall` when no token came for `stall_timeout_s`
    after the first)."""
    record = RequestRecord(request_id=request.request_id, scenario=scenario,
                           repetition=repetition, send_ns=time.perf_counter_ns(),
                           input_tokens=request.input_tokens, scheduled_ns=scheduled_ns)
    usage: Usage | None = None
    texts: list[str] = []

    if stall_timeout_s is None:
        stall_timeout_s = STALL_TIMEOUT_S.get()

    async def consume() -> None:
        nonlocal usage
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(None) as idle:
                async for event in backend.stream(request):
                    if event.n_tokens > 0 or event.text:
                        record.event_ns.append(event.t_ns)
                        record.event_tokens.append(max(event.n_tokens, 1))
                        texts.append(event.text)
                        if stall_timeout_s:
                            idle.reschedule(loop.time() + stall_timeout_s)
                    if event.usage is not None:
                        usage = event.usage
        except TimeoutError:
            if idle.expired():
                raise RequestError("stall", f"no token for {stall_timeout_s:g} s after "
                                   f"{len(record.event_ns)} chunk(s)") from None
            raise

    record.send_ns = time.perf_counter_ns()
    try:
        # asyncio.timeout, not wait_for: wait_for (3.11) returns a result that was ready
        # as a cancel came, swallowing Ctrl-C; this lets the cancel through.
        async with asyncio.timeout(timeout_s):
            await consume()
    except TimeoutError:
        record.error, record.error_message = "timeout", f"no completion within {timeout_s:g} s"
    except RequestError as exc:
        record.error, record.error_message = exc.kind, str(exc)
    if record.error is None and not record.event_ns:
        record.error, record.error_message = "empty_response", "the stream held no tokens"
    _apply_usage(record, usage, "".join(texts), backend)
    return record


def _apply_usage(record: RequestRecord, usage: Usage | None, text: str,
                 backend: Backend) -> None:
    """N_out from the engine's usage, else the model's tokenizer, else event counts."""
    if usage is not None and usage.input_tokens is not None:
        record.input_tokens = usage.input_tokens
    if usage is not None and usage.output_tokens is not None:
        record.output_tokens = usage.output_tokens
        record.token_count_source = usage.source
    else:
        counted = backend.count_tokens(text) if text else None
        if counted is not None:
            record.output_tokens, record.token_count_source = counted, "tokenizer"
        else:
            record.output_tokens = sum(record.event_tokens)
            record.token_count_source = "events"
    if usage is not None:
        record.engine_prefill_ms = usage.engine_prefill_ms
        record.engine_decode_ms = usage.engine_decode_ms
        record.engine_prefill_tokens = usage.engine_prefill_tokens
        record.engine_decode_tokens = usage.engine_decode_tokens
        if "cost_usd" in usage.extra:
            record.cost_usd = usage.extra["cost_usd"]


async def run_closed_loop(backend: Backend, make_request: Callable[[int], Request],
                          scenario: Scenario, point: SweepPoint, repetition: int,
                          timeout_s: float, on_record: Callable[[RequestRecord], None],
                          count: int | None, duration_s: float | None) -> list[RequestRecord]:
    """`point.concurrency` workers, each sending its next request when the last ends,
    until `count` requests were sent or `duration_s` elapsed."""
    records: list[RequestRecord] = []
    next_index = 0
    deadline = time.perf_counter() + duration_s if duration_s else None

    def take() -> int | None:
        nonlocal next_index
        if count is not None and next_index >= count:
            return None
        if deadline is not None and time.perf_counter() >= deadline:
            return None
        next_index += 1
        return next_index - 1

    async def worker() -> None:
        task = asyncio.current_task()
        while (index := take()) is not None:
            request = make_request(index)
            record = await measure_request(backend, request, scenario.name, repetition,
                                           timeout_s)
            records.append(record)
            on_record(record)
            if task is not None and task.cancelling():
                # A cancel that came as the request ended (asyncio.wait_for returns the
                # result then): keep the record, then stop like the other workers.
                raise asyncio.CancelledError

    workers = [asyncio.ensure_future(worker()) for _ in range(point.concurrency)]
    try:
        await asyncio.gather(*workers)
    except BaseException:
        for w in workers:  # interrupted: every worker ends before the row is written,
            w.cancel()     # so the row counts exactly the requests in the JSONL
        await asyncio.gather(*workers, return_exceptions=True)
        raise
    return records


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
    limit = getattr(backend, "max_concurrency", None)
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
                if options.idle_power_s > 0:
                    progress.update(f"{label} measuring idle power "
                                    f"{options.idle_power_s:g} s")
                    await asyncio.to_thread(power.measure_idle, options.idle_power_s)
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

            metrics_start = getattr(backend, "server_metrics_start", None)
            if metrics_start is not None:
                await metrics_start()
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
            server = await backend.server_metrics_stop() if metrics_start is not None \
                else None
            if server:
                files.add_server_metrics({"run_id": run_id, "scenario": scenario.name,
                                          "load": point.label, **server})
            row = dict(base)
            row.update(power_cols)
            row.update(server["columns"] if server else {})
            # SLOs: the command line wins over the workload file.
            row.update(scenario_summary(records, options.slo_ttft_ms or scenario.slo_ttft_ms,
                                        options.slo_tpot_ms or scenario.slo_tpot_ms))
            if point.rate_rps:
                from harness.loadgen import lag_note

                lag = lag_note(records, point.rate_rps, point.concurrency)
                if lag:
                    notes.append(lag)
                    sys.stderr.write(("\r\033[K" if sys.stderr.isatty() else "")  # also --quiet
                                     + f"{label} warning: {lag}\n")
            row.update(per_token_columns(row.get("energy_j"), row.get("input_tokens"),
                                         row.get("output_tokens")))
            if getattr(backend, "run_batch", None) is not None:
                notes.append(f"offline batch: {scenario.requests} requests submitted at once "
                             "per repetition; TTFT/TPOT from engine request metrics")
            _finish_row(row, workload, scenario, point, started, load_start, cores, notes,
                        interrupted)
            if getattr(backend, "run_batch", None) is not None:
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
    if getattr(backend, "run_batch", None) is not None:
        await run_batch_repetition(backend, factory, scenario, point, rep, options, on_record)
        return
    # A counted repetition's prompts are made before it starts, so sizing them with the
    # tokenizer takes no client time inside the measured window (nor blocks the event
    # loop while other streams arrive); duration-bound runs make them as they go.
    made = [factory.make(rep, i, point) for i in range(scenario.requests or 0)]

    def make(i: int) -> Request:
        return made[i] if i < len(made) else factory.make(rep, i, point)

    if point.rate_rps:
        from harness.loadgen import run_open_loop  # open-loop arrivals

        await run_open_loop(backend, make, scenario, point, rep, options.request_timeout_s,
                            on_record)
        return
    await run_closed_loop(backend, make, scenario, point, rep, options.request_timeout_s,
                          on_record, scenario.requests, scenario.duration_s)


async def run_batch_repetition(backend: Backend, factory: PromptFactory,
                               scenario: Scenario, point: SweepPoint, rep: int,
                               options: RunOptions,
                               on_record: Callable[[RequestRecord], None]) -> None:
    """Offline batch engines: the repetition's requests are handed over at once; each
    result's events become a record exactly as streamed events would."""
    from harness.errors import UserError

    if point.rate_rps or not scenario.requests:
        raise UserError(f"scenario '{scenario.name}': this backend runs each repetition as "
                        "one offline batch, which needs `requests` per repetition and no "
                        "arrival rate; serve the model (e.g. --server vllm) for rates or "
                        "durations")
    requests = [factory.make(rep, i, point) for i in range(scenario.requests)]
    try:
        results = await asyncio.wait_for(backend.run_batch(requests),
                                         timeout=options.request_timeout_s)
    except asyncio.TimeoutError:
        now = time.perf_counter_ns()
        results = [BatchResult(r, now, [], RequestError(
            "timeout", f"the batch did not complete within {options.request_timeout_s:g} s"))
            for r in requests]
    for result in results:
        request = result.request
        record = RequestRecord(request_id=request.request_id, scenario=scenario.name,
                               repetition=rep, send_ns=result.send_ns,
                               input_tokens=request.input_tokens)
        usage, texts = None, []
        for event in result.events:
            if event.n_tokens > 0 or event.text:
                record.event_ns.append(event.t_ns)
                record.event_tokens.append(max(event.n_tokens, 1))
                texts.append(event.text)
            if event.usage is not None:
                usage = event.usage
        if result.error is not None:
            record.error, record.error_message = result.error.kind, str(result.error)
        elif not record.event_ns:
            record.error, record.error_message = "empty_response", "the batch held no tokens"
        _apply_usage(record, usage, "".join(texts), backend)
        on_record(record)


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


__all__ = ["RunOptions", "RunState", "run_workload", "measure_request", "new_run_id",
           "asdict"]
