"""How load is put on a backend: one measured request (`measure_request`), the closed
loop (N workers), the open loop (arrivals on a schedule) and offline batches.

Open-loop load: requests sent on an arrival schedule, whatever the server's pace.

Arrival schedules are pure, seeded functions (Poisson, gamma with a burstiness shape,
constant). `run_open_loop` sends each request at its scheduled time, with a cap on the
requests in flight, until the scenario's request count or duration is reached. Every
record keeps its scheduled time, so the lag between schedule and send (the load
generator's own self-check) is in the results; `lag_note` words a warning when the
generator fell behind.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from backends.base import Backend, BatchResult, Request, RequestError, Usage
from harness.errors import UserError
from harness.metrics import NS_PER_S, RequestRecord, percentile
from harness.runner.options import STALL_TIMEOUT_S, RunOptions, SweepPoint
from workloads.requests import PromptFactory
from workloads.spec import Scenario

ARRIVALS = ("poisson", "gamma", "constant")
LAG_WARN_MS = 10.0  # a p99 send lag beyond this (or beyond 10% of the mean gap) is behind
# Open loop: requests in flight when a scenario sets no max_in_flight. It bounds a run
# against a server that stopped answering, and never throttles a sane offered rate (it is
# the openai client's own connection-pool size: beyond it requests wait in the client).
DEFAULT_MAX_IN_FLIGHT = 1000


@dataclass
class OpenLoopStats:
    """What the open loop saw: arrivals sent, and how many found the in-flight cap full
    (they waited for a slot, so the offered rate was lower than configured)."""

    arrivals: int = 0
    throttled: int = 0


def arrival_gaps_s(kind: str, rate_rps: float, burstiness: float = 1.0,
                   seed: int = 0) -> Iterator[float]:
    """An endless stream of gaps between arrivals, in seconds, with mean 1 / rate_rps.

    - poisson: exponential gaps (coefficient of variation 1);
    - gamma: gamma gaps of shape `burstiness` (CV = 1/sqrt(shape): < 1 is burstier than
      Poisson, > 1 smoother, 1 is Poisson);
    - constant: every gap exactly 1 / rate_rps.
    """
    if rate_rps <= 0 or not math.isfinite(rate_rps):
        raise ValueError(f"rate_rps must be > 0, got {rate_rps}")
    if kind not in ARRIVALS:
        raise ValueError(f"arrival must be one of {', '.join(ARRIVALS)}, got {kind!r}")
    if kind == "gamma" and burstiness <= 0:
        raise ValueError(f"burstiness must be > 0, got {burstiness}")
    rng = random.Random(seed)
    mean_gap = 1.0 / rate_rps
    while True:
        if kind == "constant":
            yield mean_gap
        elif kind == "poisson":
            yield rng.expovariate(rate_rps)
        else:
            yield rng.gammavariate(burstiness, mean_gap / burstiness)


def arrival_offsets_s(kind: str, rate_rps: float, burstiness: float = 1.0, seed: int = 0,
                      count: int | None = None,
                      duration_s: float | None = None) -> Iterator[float]:
    """The open loop's send times relative to its start: the first request at 0, then
    cumulative gaps of `arrival_gaps_s`; `count` arrivals, or every arrival before
    `duration_s` (both: whichever ends first; neither: without end)."""
    gaps = arrival_gaps_s(kind, rate_rps, burstiness, seed)
    t, sent = 0.0, 0
    while (count is None or sent < count) and (duration_s is None or t < duration_s - 1e-9):
        yield t
        sent += 1
        t += next(gaps)


def schedule_seed(scenario: str, rate_rps: float, repetition: int) -> int:
    """A stable seed per scenario, rate and repetition (same schedule on every machine)."""
    text = f"{scenario}:{rate_rps:g}:{repetition}"
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


def lag_note(records: Sequence[RequestRecord], rate_rps: float,
             max_in_flight: int | None = None) -> str | None:
    """A warning when requests left later than scheduled (p99 send lag above
    LAG_WARN_MS or above 10% of the mean gap), else None."""
    lags = [r.send_lag_ms for r in records if r.send_lag_ms is not None]
    if not lags:
        return None
    p99 = percentile(lags, 99) or 0.0
    limit_ms = max(LAG_WARN_MS, 0.1 * 1000.0 / rate_rps)
    if p99 <= limit_ms:
        return None
    late = sum(1 for lag in lags if lag > limit_ms)
    why = (f"the cap of {max_in_flight} requests in flight was reached"
           if max_in_flight else "the client could not keep up")
    return (f"load generator fell behind its schedule: send lag p99 {p99:.1f} ms, "
            f"{late}/{len(lags)} requests later than {limit_ms:.1f} ms ({why}?); the "
            "offered rate was lower than configured")


def throttle_note(stats: OpenLoopStats, max_in_flight: int) -> str | None:
    """A note when arrivals found the open loop's in-flight cap full, else None."""
    if not stats.throttled:
        return None
    return (f"the cap of {max_in_flight} requests in flight (max_in_flight) held back "
            f"{stats.throttled}/{stats.arrivals} arrivals until a request ended: the offered "
            "rate was lower than configured")


async def run_open_loop(backend: Any, make_request: Callable[[int], Request], scenario: Any,
                        point: Any, repetition: int, timeout_s: float,
                        on_record: Callable[[RequestRecord], None],
                        stats: OpenLoopStats | None = None) -> list[RequestRecord]:
    """Send requests at `point.rate_rps` on the scenario's arrival schedule, at most
    `point.concurrency` in flight, until `scenario.requests` were sent or
    `scenario.duration_s` elapsed; wait for all to finish; return their records.
    `stats` counts the arrivals and those that found the cap full."""
    stats = stats if stats is not None else OpenLoopStats()
    rate = float(point.rate_rps)
    count = scenario.requests
    duration_s = scenario.duration_s
    if count is None and duration_s is None:
        count = 8
    offsets = arrival_offsets_s(scenario.arrival, rate, scenario.burstiness,
                                schedule_seed(scenario.name, rate, repetition), count=count,
                                duration_s=duration_s)
    cap = asyncio.Semaphore(max(1, int(point.concurrency)))
    records: list[RequestRecord] = []
    tasks: list[asyncio.Task[None]] = []

    async def send(request: Request, scheduled_ns: int) -> None:
        try:
            record = await measure_request(backend, request, scenario.name, repetition,
                                           timeout_s, scheduled_ns=scheduled_ns)
            records.append(record)
            on_record(record)
        finally:
            cap.release()

    start_ns: int | None = None
    try:
        for index, offset_s in enumerate(offsets):
            request = make_request(index)  # built before its time: synthesis is not lag
            if start_ns is None:
                start_ns = time.perf_counter_ns()
            scheduled_ns = start_ns + int(offset_s * NS_PER_S)
            wait_s = (scheduled_ns - time.perf_counter_ns()) / NS_PER_S
            if wait_s > 0:
                await asyncio.sleep(wait_s)
            stats.arrivals += 1
            if cap.locked():
                stats.throttled += 1
            await cap.acquire()  # at the cap, this arrival waits: its lag records it
            tasks.append(asyncio.create_task(send(request, scheduled_ns)))
        if tasks:
            await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)  # all ended before the row
        raise
    return records


async def measure_request(backend: Backend, request: Request, scenario: str,
                          repetition: int, timeout_s: float,
                          scheduled_ns: int | None = None,
                          stall_timeout_s: float | None = None) -> RequestRecord:
    """Send one request, record the arrival of every event; errors become records
    (`timeout` past `timeout_s` in all, `stall` when no token came for `stall_timeout_s`
    after the first)."""
    record = RequestRecord(request_id=request.request_id, scenario=scenario,
                           repetition=repetition, send_ns=time.perf_counter_ns(),
                           input_tokens=request.input_tokens, scheduled_ns=scheduled_ns,
                           target_output_tokens=request.max_output_tokens)
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
    record.end_ns = time.perf_counter_ns()
    if record.error is None and not record.event_ns:
        record.error, record.error_message = "empty_response", "the stream held no tokens"
    counted = None
    if (usage is None or usage.output_tokens is None) and texts:
        # No usage from the server: the model's tokenizer counts, after the request
        # ended and in a worker thread, never on the event loop other streams run on.
        counted = await asyncio.to_thread(_tokenize_events, backend, texts,
                                          list(record.event_tokens))
    _apply_usage(record, usage, counted)
    return record


def _tokenize_events(backend: Backend, texts: list[str],
                     listed: list[int]) -> tuple[int, list[int]] | None:
    """(tokens of the whole text, tokens of each event) by the backend's tokenizer, or
    None without one. An event that listed several tokens (its logprobs) keeps its count;
    the others, counted as one token each while streaming, are counted by the tokenizer."""
    total = backend.count_tokens("".join(texts))
    if total is None:
        return None
    per_event = [k if k > 1 else max(1, backend.count_tokens(text) or 0) if text else k
                 for text, k in zip(texts, listed)]
    return total, per_event


def _apply_usage(record: RequestRecord, usage: Usage | None,
                 counted: tuple[int, list[int]] | None = None) -> None:
    """N_out from the engine's usage, else the model's tokenizer (`counted`: the whole
    text's count and each event's), else event counts; the finish reason from usage."""
    if usage is not None and usage.input_tokens is not None:
        record.input_tokens = usage.input_tokens
    if usage is not None and usage.output_tokens is not None:
        record.output_tokens = usage.output_tokens
        record.token_count_source = usage.source
    elif counted is not None:
        record.output_tokens, record.token_count_source = counted[0], "tokenizer"
        record.event_tokens = counted[1]
    else:
        record.output_tokens = sum(record.event_tokens)
        record.token_count_source = "events"
    if usage is not None:
        record.finish_reason = usage.finish_reason
        record.engine_prefill_ms = usage.engine_prefill_ms
        record.engine_decode_ms = usage.engine_decode_ms
        record.engine_prefill_tokens = usage.engine_prefill_tokens
        record.engine_decode_tokens = usage.engine_decode_tokens


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


async def run_batch_repetition(backend: Backend, factory: PromptFactory,
                               scenario: Scenario, point: SweepPoint, rep: int,
                               options: RunOptions,
                               on_record: Callable[[RequestRecord], None]) -> None:
    """Offline batch engines: the repetition's requests are handed over at once; each
    result's events become a record exactly as streamed events would."""
    if point.rate_rps or not scenario.requests:
        raise UserError(f"scenario '{scenario.name}': this backend runs each repetition as "
                        "one offline batch, which needs `requests` per repetition and no "
                        "arrival rate; serve the model (e.g. --server vllm) for rates or "
                        "durations")
    requests = [factory.make(rep, i, point) for i in range(scenario.requests)]
    try:
        results = await asyncio.wait_for(backend.run_batch(requests),
                                         timeout=options.request_timeout_s)
    except TimeoutError:
        now = time.perf_counter_ns()
        results = [BatchResult(r, now, [], RequestError(
            "timeout", f"the batch did not complete within {options.request_timeout_s:g} s"))
            for r in requests]
    for result in results:
        request = result.request
        record = RequestRecord(request_id=request.request_id, scenario=scenario.name,
                               repetition=rep, send_ns=result.send_ns,
                               input_tokens=request.input_tokens,
                               target_output_tokens=request.max_output_tokens)
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
        record.end_ns = record.completed_ns or result.send_ns
        counted = None
        if (usage is None or usage.output_tokens is None) and texts:
            counted = _tokenize_events(backend, texts, list(record.event_tokens))
        _apply_usage(record, usage, counted)
        on_record(record)



__all__ = ["ARRIVALS", "DEFAULT_MAX_IN_FLIGHT", "OpenLoopStats", "throttle_note",
           "measure_request", "run_closed_loop", "run_batch_repetition",
           "arrival_gaps_s", "arrival_offsets_s", "lag_note", "run_open_loop",
           "schedule_seed"]
