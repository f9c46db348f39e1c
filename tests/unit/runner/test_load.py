"""Arrival schedules (mean rate, burstiness, bounds), the lag warning, and the open-loop
generator driving the real `openai` backend against the local SSE server."""

from __future__ import annotations

import asyncio
import itertools
import statistics

import pytest

from backends.base import Request
from backends.openai.backend import OpenAIBackend
from harness.metrics import RequestRecord
from harness.runner.load import (
    arrival_gaps_s,
    arrival_offsets_s,
    lag_note,
    run_open_loop,
    schedule_seed,
)
from harness.runner.runner import SweepPoint
from harness.servers.fake import FakeOpenAIServer, FakeTiming
from workloads.spec import Scenario, TokenDist


def _gaps(kind: str, rate: float, shape: float = 1.0, n: int = 40_000, seed: int = 3):
    it = arrival_gaps_s(kind, rate, shape, seed)
    return [next(it) for _ in range(n)]


@pytest.mark.parametrize("kind,shape,cv", [("poisson", 1.0, 1.0), ("gamma", 0.25, 2.0),
                                           ("gamma", 1.0, 1.0), ("gamma", 4.0, 0.5),
                                           ("constant", 1.0, 0.0)])
def test_gaps_have_the_mean_rate_and_the_burstiness_asked_for(kind, shape, cv):
    gaps = _gaps(kind, 8.0, shape)
    mean = statistics.fmean(gaps)
    assert mean == pytest.approx(1 / 8.0, rel=0.03)
    assert statistics.pstdev(gaps) / mean == pytest.approx(cv, abs=0.06)


def test_burstier_shape_means_more_short_gaps():
    # With the same mean, a gamma of shape 0.25 packs arrivals closer more often.
    bursty = _gaps("gamma", 1.0, 0.25)
    smooth = _gaps("gamma", 1.0, 4.0)
    def short(gaps: list[float]) -> float:
        return sum(1 for g in gaps if g < 0.1) / len(gaps)

    assert short(bursty) > 3 * short(smooth)


def test_schedules_are_seeded():
    a = list(arrival_offsets_s("poisson", 2.0, seed=11, count=50))
    b = list(arrival_offsets_s("poisson", 2.0, seed=11, count=50))
    c = list(arrival_offsets_s("poisson", 2.0, seed=12, count=50))
    assert a == b and a != c


def test_offsets_start_at_zero_and_respect_their_bound():
    by_count = list(arrival_offsets_s("constant", 4.0, count=5))
    assert by_count == pytest.approx([0.0, 0.25, 0.5, 0.75, 1.0])
    by_time = list(arrival_offsets_s("poisson", 50.0, seed=1, duration_s=20.0))
    assert all(t < 20.0 for t in by_time)
    assert len(by_time) == pytest.approx(50 * 20, rel=0.1)
    both = list(arrival_offsets_s("constant", 1.0, count=100, duration_s=3.0))
    assert len(both) == 3
    endless = arrival_offsets_s("constant", 10.0)
    assert [next(endless) for _ in range(1000)][-1] == pytest.approx(99.9)


@pytest.mark.parametrize("kwargs", [{"kind": "poisson", "rate_rps": 0},
                                    {"kind": "poisson", "rate_rps": -1},
                                    {"kind": "zipf", "rate_rps": 1},
                                    {"kind": "gamma", "rate_rps": 1, "burstiness": 0}])
def test_bad_schedule_arguments_are_rejected(kwargs):
    with pytest.raises(ValueError):
        next(arrival_gaps_s(**kwargs))


def _record(i: int, lag_ms: float) -> RequestRecord:
    scheduled = 1_000_000_000 * (i + 1)
    return RequestRecord(request_id=str(i), scenario="s", repetition=0,
                         send_ns=scheduled + int(lag_ms * 1e6), scheduled_ns=scheduled)


def test_lag_note_warns_only_when_the_generator_fell_behind():
    on_time = [_record(i, 0.5) for i in range(100)]
    assert lag_note(on_time, rate_rps=2.0) is None
    late = [_record(i, 0.5) for i in range(90)] + [_record(i, 400.0) for i in range(10)]
    note = lag_note(late, rate_rps=2.0, max_in_flight=4)
    assert note is not None and "10/100" in note and "cap of 4" in note
    # At 1 request/s a 60 ms lag is within 10% of the 1 s gap; at 100/s it is not.
    slow = [_record(i, 60.0) for i in range(20)]
    assert lag_note(slow, rate_rps=1.0) is None
    assert lag_note(slow, rate_rps=100.0) is not None


def _scenario(**kw) -> Scenario:
    base = {"name": "open", "input_tokens": TokenDist("fixed", mean=4, max=4),
            "output_tokens": 4, "requests": 12, "arrival": "constant"}
    base.update(kw)
    return Scenario(**base)


async def _open_loop(timing: FakeTiming, scenario: Scenario, rate: float, cap: int):
    async with FakeOpenAIServer(timing) as server:
        backend = OpenAIBackend(model="fake-model", base_url=server.base_url)
        await backend.open()
        in_flight, peak = 0, 0
        stream = backend.stream

        async def counting(request):  # wraps the real stream to count requests in flight
            nonlocal in_flight, peak
            in_flight += 1
            peak = max(peak, in_flight)
            try:
                async for event in stream(request):
                    yield event
            finally:
                in_flight -= 1

        backend.stream = counting
        seen: list[RequestRecord] = []
        records = await run_open_loop(
            backend, lambda i: Request(f"r{i}", "hello there", 2, scenario.output_tokens),
            scenario, SweepPoint(concurrency=cap, rate_rps=rate), 0, 30.0, seen.append)
        await backend.close()
        return records, seen, peak


def test_open_loop_sends_on_schedule_when_the_server_keeps_up():
    timing = FakeTiming(ttft_ms=5, itl_ms=1)
    records, seen, _ = asyncio.run(_open_loop(timing, _scenario(), rate=40.0, cap=16))
    assert len(records) == 12 and len(seen) == 12 and all(r.ok for r in records)
    scheduled = sorted(r.scheduled_ns for r in records)
    gaps_ms = [(b - a) / 1e6 for a, b in itertools.pairwise(scheduled)]
    assert gaps_ms == pytest.approx([25.0] * 11, abs=0.01)  # constant arrivals at 40/s
    assert all(r.send_lag_ms is not None and r.send_lag_ms >= 0 for r in records)


def test_open_loop_sends_on_the_seeded_schedule_of_arrival_offsets():
    # What run_open_loop sends by is arrival_offsets_s, seeded per scenario, rate and
    # repetition: the scheduled send times are that schedule, to the nanosecond.
    scenario = _scenario(requests=10, arrival="gamma", burstiness=0.5)
    records, _, _ = asyncio.run(_open_loop(FakeTiming(ttft_ms=1, itl_ms=0), scenario,
                                           rate=200.0, cap=16))
    scheduled = sorted(r.scheduled_ns for r in records)
    got_s = [(t - scheduled[0]) / 1e9 for t in scheduled]
    want = list(arrival_offsets_s("gamma", 200.0, 0.5, schedule_seed("open", 200.0, 0),
                                  count=10))
    assert got_s == pytest.approx(want, abs=2e-9)
    assert want != list(arrival_offsets_s("gamma", 200.0, 0.5, schedule_seed("open", 200.0, 1),
                                          count=10))  # another repetition, another schedule


def test_open_loop_caps_requests_in_flight_and_records_the_lag():
    # Each request takes ~200 ms, arrivals come every 10 ms, at most 2 in flight:
    # later arrivals wait for a free slot, and their lag shows it.
    timing = FakeTiming(ttft_ms=100, itl_ms=30)
    records, _, peak = asyncio.run(_open_loop(timing, _scenario(requests=8), rate=100.0,
                                              cap=2))
    assert peak == 2
    assert len(records) == 8 and all(r.ok for r in records)
    assert max(r.send_lag_ms for r in records) > 300
    assert lag_note(records, 100.0, 2) is not None


def test_open_loop_bounded_by_duration():
    timing = FakeTiming(ttft_ms=1, itl_ms=0)
    scenario = _scenario(requests=None, duration_s=0.5)
    records, _, _ = asyncio.run(_open_loop(timing, scenario, rate=20.0, cap=8))
    assert len(records) == 10  # constant arrivals at 0, 50, ..., 450 ms
