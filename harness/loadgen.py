"""Open-loop load: requests sent on an arrival schedule, whatever the server's pace.

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
from typing import Any

from backends.base import Request
from harness.metrics import NS_PER_S, RequestRecord, percentile

ARRIVALS = ("poisson", "gamma", "constant")
LAG_WARN_MS = 10.0  # a p99 send lag beyond this (or beyond 10% of the mean gap) is behind


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
                      duration_s: float | None = None) -> list[float]:
    """Send times relative to the start: the first request at 0, then cumulative gaps;
    `count` arrivals, or every arrival before `duration_s` (at least one bound needed)."""
    if count is None and duration_s is None:
        raise ValueError("give count or duration_s")
    offsets: list[float] = []
    t = 0.0
    gaps = arrival_gaps_s(kind, rate_rps, burstiness, seed)
    while True:
        if count is not None and len(offsets) >= count:
            break
        if duration_s is not None and t >= duration_s - 1e-9:
            break
        offsets.append(t)
        t += next(gaps)
    return offsets


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


async def run_open_loop(backend: Any, make_request: Callable[[int], Request], scenario: Any,
                        point: Any, repetition: int, timeout_s: float,
                        on_record: Callable[[RequestRecord], None]) -> list[RequestRecord]:
    """Send requests at `point.rate_rps` on the scenario's arrival schedule, at most
    `point.concurrency` in flight, until `scenario.requests` were sent or
    `scenario.duration_s` elapsed; wait for all to finish; return their records."""
    from harness.runner import measure_request  # the runner imports this module lazily

    rate = float(point.rate_rps)
    count = scenario.requests
    duration_s = scenario.duration_s
    if count is None and duration_s is None:
        count = 8
    gaps = arrival_gaps_s(scenario.arrival, rate, scenario.burstiness,
                          schedule_seed(scenario.name, rate, repetition))
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
    offset_s = 0.0
    index = 0
    try:
        while True:
            if count is not None and index >= count:
                break
            if duration_s is not None and offset_s >= duration_s - 1e-9:
                break
            request = make_request(index)  # built before its time: synthesis is not lag
            if start_ns is None:
                start_ns = time.perf_counter_ns()
            scheduled_ns = start_ns + int(offset_s * NS_PER_S)
            wait_s = (scheduled_ns - time.perf_counter_ns()) / NS_PER_S
            if wait_s > 0:
                await asyncio.sleep(wait_s)
            await cap.acquire()  # at the cap, this arrival waits: its lag records it
            tasks.append(asyncio.create_task(send(request, scheduled_ns)))
            index += 1
            offset_s += next(gaps)
        if tasks:
            await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)  # all ended before the row
        raise
    return records


__all__ = ["ARRIVALS", "arrival_gaps_s", "arrival_offsets_s", "lag_note", "run_open_loop",
           "schedule_seed"]
