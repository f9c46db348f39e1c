"""The runner side of capacity: the saturation sweep (`--concurrency auto`, knee=1), the
open loop's in-flight cap (a default that does not throttle; a note when it does), the
settings that drive them. The real runner and `openai` backend against the fake SSE
server, in process."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from backends.base import Request
from backends.openai.backend import OpenAIBackend
from harness.config.settings import bench_settings, check_value
from harness.errors import UserError
from harness.power.session import PowerSession
from harness.results.files import RunFiles, read_rows
from harness.runner.load import (
    DEFAULT_MAX_IN_FLIGHT,
    OpenLoopStats,
    run_open_loop,
    throttle_note,
)
from harness.runner.options import RunOptions, RunState, SweepPoint
from harness.runner.runner import auto_levels, knee_step, new_run_id, run_workload, sweep_points
from harness.runner.session import bench_workload
from harness.servers.fake import FakeOpenAIServer, FakeTiming
from workloads.spec import Scenario, TokenDist, parse_workload


def row(c: int, tok_s: float | None, errors: int = 0, ttft_p90: float = 10.0,
        tpot_p90: float = 5.0) -> dict[str, Any]:
    return {"concurrency": c, "output_throughput_tok_s": tok_s, "errors": errors,
            "ttft_ms_p90": ttft_p90, "tpot_ms_p90": tpot_p90}


# --- the knee rule, by hand -------------------------------------------------------------

def test_auto_levels_double_up_to_the_cap():
    assert auto_levels(64) == [1, 2, 4, 8, 16, 32, 64]
    assert auto_levels(10) == [1, 2, 4, 8, 10]
    assert auto_levels(1) == [1]


def test_the_sweep_goes_on_while_throughput_grows_by_five_percent_or_more():
    assert knee_step([row(1, 100.0)], None, None, at_cap=False) == (None, "")
    assert knee_step([row(1, 100.0), row(2, 105.0)], None, None, at_cap=False) == (None, "")


def test_one_flat_doubling_does_not_stop_the_sweep():
    # A batched kernel may gain nothing at 2 or 4 sequences and double at 8 (llama.cpp on
    # this CPU): one doubling under 5% is not yet a plateau.
    assert knee_step([row(4, 300.0), row(8, 314.0)], None, None, at_cap=False) == (None, "")
    rows = [row(1, 55.0), row(2, 63.0), row(4, 64.0), row(8, 113.0)]
    assert knee_step(rows[:3], None, None, at_cap=False) == (None, "")
    knee, why = knee_step(rows, None, None, at_cap=True)
    assert knee is rows[3] and "still growing" in why


def test_two_flat_doublings_put_the_knee_at_the_anchor():
    rows = [row(2, 200.0), row(4, 300.0), row(8, 314.0), row(16, 250.0)]
    knee, why = knee_step(rows, None, None, at_cap=False)
    assert knee is rows[1]
    assert "2 doublings after c=4 grew output throughput by less than 5%" in why
    assert "300 -> 314 -> 250 tok/s, up to c=16" in why
    # Growth under 5% a step, creeping: measured against the anchor, not the last row.
    creep = [row(1, 100.0), row(2, 103.0), row(4, 104.5)]
    knee, why = knee_step(creep, None, None, at_cap=False)
    assert knee is creep[0] and "2 doublings after c=1" in why


def test_the_cap_ends_the_sweep_at_the_anchor():
    rows = [row(32, 300.0), row(64, 600.0)]
    knee, why = knee_step(rows, None, None, at_cap=True)
    assert knee is rows[1] and "--max-concurrency 64" in why
    flat = [row(16, 300.0), row(32, 600.0), row(64, 610.0)]
    knee, why = knee_step(flat, None, None, at_cap=True)
    assert knee is flat[1] and "c=32 is within 5%" in why


def test_an_slo_broken_at_p90_or_a_failed_request_stops_the_sweep():
    first = row(4, 300.0)
    knee, why = knee_step([first, row(8, 600.0, ttft_p90=812.0)], 500.0, None, False)
    assert knee is first and "TTFT p90 812 ms > SLO 500 ms at c=8" in why
    knee, why = knee_step([first, row(8, 600.0, tpot_p90=60.0)], None, 50.0, False)
    assert knee is first and "TPOT p90 60 ms > SLO 50 ms" in why
    knee, why = knee_step([row(2, 300.0), row(4, 600.0, errors=3)], None, None, False)
    assert knee["concurrency"] == 2 and "3 request(s) failed at c=4" in why
    # A flat doubling before the breach: the knee is the anchor, not the flat row.
    rows = [row(1, 100.0), row(2, 101.0), row(4, 300.0, ttft_p90=900.0)]
    knee, why = knee_step(rows, 500.0, None, False)
    assert knee is rows[0]
    # Broken at the first load: that row is the knee, and it says no load met the SLO.
    only = row(1, 50.0, ttft_p90=900.0)
    knee, why = knee_step([only], 500.0, None, False)
    assert knee is only and "no load level met the SLO" in why


# --- settings ---------------------------------------------------------------------------

def test_concurrency_takes_the_word_auto():
    assert check_value("concurrency", "auto", "--concurrency") == "auto"
    assert check_value("concurrency", "AUTO", "--concurrency") == "auto"
    with pytest.raises(UserError) as err:
        check_value("concurrency", "most", "--concurrency")
    assert "or auto" in str(err.value)
    workload = bench_workload(bench_settings({"concurrency": "auto", "workload": "smoke"}))
    assert [s.concurrency for s in workload.scenarios] == [(1,), (1,)]  # left to the sweep
    with pytest.raises(UserError) as err:
        bench_workload(bench_settings({"concurrency": "auto", "rate": (1.0,)}))
    assert "--concurrency auto" in str(err.value) and "--rate" in str(err.value)


def test_rate_with_concurrency_caps_the_open_loop():
    w = bench_workload(bench_settings({"rate": (2.0,), "concurrency": (4,),
                                       "workload": "smoke"}))
    assert {s.max_in_flight for s in w.scenarios} == {4}
    w = bench_workload(bench_settings({"rate": (2.0,), "workload": "smoke"}))
    assert {p.concurrency for s in w.scenarios for p in sweep_points(s)} == {
        DEFAULT_MAX_IN_FLIGHT}


def test_open_loop_points_do_not_cap_at_one_by_default():
    s = Scenario(name="o", input_tokens=TokenDist("fixed", 8), output_tokens=4,
                 rate_rps=(2.0, 4.0))
    assert [p.concurrency for p in sweep_points(s)] == [DEFAULT_MAX_IN_FLIGHT] * 2
    capped = Scenario(name="o", input_tokens=TokenDist("fixed", 8), output_tokens=4,
                      rate_rps=(2.0,), max_in_flight=16)
    assert [p.concurrency for p in sweep_points(capped)] == [16]


# --- the open loop's cap, against the fake server ----------------------------------------

async def _open_loop(cap: int) -> OpenLoopStats:
    scenario = Scenario(name="o", input_tokens=TokenDist("fixed", 2), output_tokens=4,
                        requests=8, rate_rps=(100.0,), arrival="constant")
    async with FakeOpenAIServer(FakeTiming(ttft_ms=600, itl_ms=30)) as server:
        backend = OpenAIBackend(model="fake-model", base_url=server.base_url)
        await backend.open()
        stats = OpenLoopStats()
        try:
            await run_open_loop(backend, lambda i: Request(f"r{i}", "hi", 1, 4), scenario,
                                SweepPoint(concurrency=cap, rate_rps=100.0), 0, 30.0,
                                lambda r: None, stats)
        finally:
            await backend.close()
        return stats


def test_a_throttling_cap_is_counted_and_worded():
    # Requests of ~700 ms arriving every 10 ms: a cap of 2 holds the other 6 back (the
    # margin is for a loaded machine whose event loop runs late).
    stats = asyncio.run(_open_loop(2))
    assert stats.arrivals == 8 and stats.throttled >= 5
    note = throttle_note(stats, 2)
    assert note is not None and "held back" in note and "/8 arrivals" in note
    assert throttle_note(asyncio.run(_open_loop(DEFAULT_MAX_IN_FLIGHT)),
                         DEFAULT_MAX_IN_FLIGHT) is None


# --- the saturation sweep, end to end in process ------------------------------------------

WORKLOAD = """
seed = 5
[[scenarios]]
name = "s"
input_tokens = 8
output_tokens = 8
requests = 2
warmup_requests = 0
"""


def _sweep(tmp_path: Path, timing: FakeTiming, options: RunOptions,
           text: str = WORKLOAD) -> list[dict[str, Any]]:
    workload = parse_workload(text, tmp_path / "w.toml", "w")

    async def go() -> list[dict[str, Any]]:
        async with FakeOpenAIServer(timing) as server:
            backend = OpenAIBackend(model="fake-model", base_url=server.base_url)
            info = await backend.open()
            run_id = new_run_id()
            files = RunFiles(tmp_path / "out", {"machine_id": "m"}, run_id, "w")
            try:
                await run_workload(backend, info, workload, files, {"machine_id": "m"},
                                   run_id, PowerSession([], "test: no meter"), options,
                                   RunState())
            finally:
                await backend.close()
                files.close()
            return read_rows(files.csv_path)  # what the CSV holds, knee included

    return asyncio.run(go())


def test_an_slo_broken_by_queueing_puts_the_knee_before_it(tmp_path: Path):
    # One slot: at c=2 the second request waits a whole answer (8 x 40 ms) for its first
    # token, so TTFT p90 breaks 200 ms; at c=1 it is the server's 5 ms.
    rows = _sweep(tmp_path, FakeTiming(ttft_ms=5, itl_ms=40, max_streams=1),
                  RunOptions(quiet=True, concurrency_auto=True, max_concurrency=64,
                             slo_ttft_ms=200.0))
    assert [r["concurrency"] for r in rows] == [1, 2]
    assert [r["knee"] for r in rows] == [1, 0]
    assert "knee of the concurrency sweep" in rows[0]["notes"]
    assert "TTFT p90" in rows[0]["notes"] and "at c=2" in rows[0]["notes"]
    assert "the concurrency sweep stopped here" in rows[1]["notes"]


def test_a_sweep_that_keeps_growing_stops_at_the_cap(tmp_path: Path):
    rows = _sweep(tmp_path, FakeTiming(ttft_ms=5, itl_ms=20),
                  RunOptions(quiet=True, concurrency_auto=True, max_concurrency=4))
    assert [r["concurrency"] for r in rows] == [1, 2, 4]
    assert [r["knee"] for r in rows] == [0, 0, 1]
    assert "--max-concurrency 4" in rows[2]["notes"]
    # Each closed-loop row sent two requests per stream and held them all in flight.
    assert [r["requests"] for r in rows] == [2, 4, 8]
    assert all(r["capacity_ok"] == 1 and r["concurrency_achieved_peak"] == r["concurrency"]
               for r in rows)


def test_two_flat_doublings_end_the_sweep_with_the_knee_where_growth_stopped(tmp_path: Path):
    # Two slots: c=2 doubles c=1's throughput; c=4 and c=8 only queue in the server.
    rows = _sweep(tmp_path, FakeTiming(ttft_ms=5, itl_ms=20, max_streams=2),
                  RunOptions(quiet=True, concurrency_auto=True, max_concurrency=64))
    assert [r["concurrency"] for r in rows] == [1, 2, 4, 8]
    assert [r["knee"] for r in rows] == [0, 1, 0, 0]
    assert "2 doublings after c=2" in rows[1]["notes"]
    assert "the concurrency sweep stopped here" in rows[3]["notes"]


def test_too_few_requests_for_the_streams_is_not_a_capacity(tmp_path: Path):
    text = WORKLOAD + "concurrency = 8\nrequests_per_stream = 0\n"
    (r,) = _sweep(tmp_path, FakeTiming(ttft_ms=5, itl_ms=5), RunOptions(quiet=True), text)
    assert r["requests"] == 2 and r["concurrency_achieved_peak"] == 2
    assert r["concurrency_achieved_mean"] <= 2.0 and r["capacity_ok"] == 0
    assert r["output_throughput_steady_tok_s"] is None  # never 8 busy at once
    assert "not a capacity measurement" in r["notes"] and r["knee"] is None
