"""Achieved concurrency, steady-state throughput, capacity_ok and short outputs: pure
functions of request records, checked against numbers worked out by hand."""

from __future__ import annotations

import pytest

from harness.metrics import (
    NS_PER_S,
    RequestRecord,
    achieved_concurrency,
    capacity_ok,
    concurrency_summary,
    full_load_segments,
    scenario_summary,
    steady_state,
)


def s(x: float) -> int:
    """Seconds → nanoseconds (the records' clock)."""
    return int(round(x * NS_PER_S))


def rec(rid: str, send: float, end: float, events: list[float], tokens: list[int] | None = None,
        n_out: int | None = None, rep: int = 0, error: str | None = None,
        target: int | None = None) -> RequestRecord:
    tokens = tokens or [1] * len(events)
    return RequestRecord(request_id=rid, scenario="x", repetition=rep, send_ns=s(send),
                         end_ns=s(end), event_ns=[s(t) for t in events], event_tokens=tokens,
                         output_tokens=sum(tokens) if n_out is None else n_out, error=error,
                         target_output_tokens=target)


# Two streams, closed loop: A runs 0-10 s; B 1-6 s; C is sent at 6.5 s when B's stream
# sends its next request, and runs to 12 s.
A = rec("a", 0, 10, [2, 4, 6, 8, 10])
B = rec("b", 1, 6, [3, 6])
C = rec("c", 6.5, 12, [7, 9, 11, 12])


def test_achieved_concurrency_is_the_time_weighted_mean_and_the_peak():
    assert achieved_concurrency([(0, 10), (5, 10)]) == (1.5, 2)
    # Window 0-12 s; busy 10 + 5 + 5.5 = 20.5 request-seconds: 20.5 / 12 in flight.
    mean, peak = achieved_concurrency([r.in_flight_ns for r in (A, B, C)])
    assert mean == pytest.approx(20.5 / 12)
    assert peak == 2
    assert achieved_concurrency([]) == (None, None)
    assert achieved_concurrency([(5, 5)]) == (None, None)  # no window


def test_a_request_ending_as_another_starts_does_not_count_twice():
    # Ends are taken before starts at the same instant: peak 1, not 2.
    assert achieved_concurrency([(0, 5), (5, 10)]) == (1.0, 1)


def test_full_load_spans_leave_out_ramp_up_drain_and_hand_overs():
    spans = full_load_segments([r.in_flight_ns for r in (A, B, C)], 2)
    # Both busy from B's send (1 s) to B's end (6 s), and from C's send (6.5 s) to A's
    # end (10 s); 6-6.5 s is the hand-over gap, 0-1 s the ramp-up, 10-12 s the drain.
    assert spans == [(s(1), s(6)), (s(6.5), s(10))]
    assert full_load_segments([r.in_flight_ns for r in (A, B, C)], 3) == []


def test_steady_state_counts_the_tokens_that_arrived_while_all_streams_were_busy():
    tokens, seconds = steady_state([A, B, C], 2)
    # In (1, 6]: A at 2, 4, 6 and B at 3, 6 = 5 tokens; in (6.5, 10]: A at 8, 10 and C at
    # 7, 9 = 4 tokens. 9 tokens over 5 + 3.5 = 8.5 s.
    assert tokens == pytest.approx(9)
    assert seconds == pytest.approx(8.5)
    assert steady_state([A, B, C], 3) is None  # never three in flight


def test_steady_state_scales_events_to_the_usage_count_and_skips_failed_requests():
    # B's two chunks held 2 tokens each by the server's usage (4), though the stream
    # listed one each; a failed request D occupies a stream but adds no token.
    b4 = rec("b", 1, 6, [3, 6], n_out=4)
    d = rec("d", 0.5, 5, [2.5], error="stream_cut")
    tokens, seconds = steady_state([A, b4, d], 2)
    # Two or more in flight from 0.5 s (A and D) to 6 s (B ends; A alone after).
    # A: 2, 4, 6 = 3 tokens; B: 3, 6 at 2 tokens each = 4; D: none.
    assert seconds == pytest.approx(5.5)
    assert tokens == pytest.approx(7)


def test_no_token_in_the_full_span_means_no_steady_state():
    x = rec("x", 0, 4, [3.5])
    y = rec("y", 1, 2, [])  # failed with no token: both busy only 1-2 s, no token then
    y.error = "timeout"
    assert steady_state([x, y], 2) is None


def test_capacity_ok_at_ninety_percent_of_the_target():
    assert capacity_ok(3.6, 4) == 1
    assert capacity_ok(3.59, 4) == 0
    assert capacity_ok(None, 4) == 0
    assert capacity_ok(2.0, None) is None  # open loop: no target


def test_concurrency_summary_means_over_repetitions_and_peaks_over_all():
    rep1 = [rec("a1", 0, 4, [1, 2, 3, 4], rep=1), rec("b1", 0, 4, [1, 2, 3, 4], rep=1)]
    summary = concurrency_summary([A, B, C, *rep1], target=2)
    # Repetition 0: 20.5 / 12; repetition 1: 2.0 (both busy all along).
    assert summary["concurrency_achieved_mean"] == pytest.approx((20.5 / 12 + 2.0) / 2)
    assert summary["concurrency_achieved_peak"] == 2
    # Steady: rep 0 9 / 8.5 tok/s; rep 1: tokens in (0, 4]: 8 over 4 s = 2 tok/s.
    assert summary["output_throughput_steady_tok_s"] == pytest.approx((9 / 8.5 + 2.0) / 2)
    assert summary["steady_duration_s"] == pytest.approx((8.5 + 4.0) / 2)
    assert summary["capacity_ok"] == 1  # 1.854 >= 0.9 x 2
    assert concurrency_summary([A, B, C], target=2)["capacity_ok"] == 0  # 1.708 < 1.8
    assert concurrency_summary([], target=2)["concurrency_achieved_mean"] is None
    open_loop = concurrency_summary([A, B, C])
    assert open_loop["output_throughput_steady_tok_s"] is None
    assert open_loop["capacity_ok"] is None


def test_a_request_shorter_than_asked_is_flagged_and_counted():
    short = rec("s", 0, 1, [0.5, 1.0], target=8)  # 2 of 8 tokens
    full = rec("f", 0, 1, [0.5, 1.0], target=2)
    failed = rec("x", 0, 1, [0.5], target=8, error="stream_cut")
    assert short.short_output is True and full.short_output is False
    assert failed.short_output is None
    assert rec("u", 0, 1, [0.5]).short_output is None  # target unknown
    assert short.to_json()["short_output"] is True
    summary = scenario_summary([short, full, failed], target_concurrency=3)
    assert summary["short_outputs"] == 1


def test_records_without_an_end_time_end_at_their_last_token():
    old = RequestRecord("o", "x", 0, send_ns=s(1), event_ns=[s(2), s(3)], event_tokens=[1, 1])
    assert old.in_flight_ns == (s(1), s(3))
    failed = RequestRecord("f", "x", 0, send_ns=s(1), error="timeout")
    assert failed.in_flight_ns == (s(1), s(1))
