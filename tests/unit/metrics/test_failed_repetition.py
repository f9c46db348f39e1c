"""A repetition in which every request failed made no tokens: it counts as 0 in the
throughput mean over repetitions instead of being dropped from it."""

import pytest

from harness.metrics import RequestRecord, repetition_summary, scenario_summary

MS = 1_000_000


def ok(rep: int, end_ms: float, n_out: int = 100) -> RequestRecord:
    r = RequestRecord(request_id=f"ok{rep}", scenario="s", repetition=rep, send_ns=0,
                      input_tokens=50, output_tokens=n_out)
    r.event_ns, r.event_tokens = [int(100 * MS), int(end_ms * MS)], [1, n_out - 1]
    return r


def failed(rep: int) -> RequestRecord:
    return RequestRecord(request_id=f"err{rep}", scenario="s", repetition=rep, send_ns=0,
                         error="http_500")


def test_a_repetition_of_failures_has_zero_rates() -> None:
    s = repetition_summary([failed(0), failed(0)])
    assert s["output_throughput_tok_s"] == 0.0 and s["total_throughput_tok_s"] == 0.0
    assert s["request_throughput_rps"] == 0.0 and s["goodput_rps"] == 0.0
    assert s["duration_s"] is None  # no completion: the window is undefined


def test_the_failed_repetition_counts_as_zero_in_the_mean() -> None:
    # rep 0: 100 tokens in 1 s = 100 tok/s; rep 1: 100 tokens in 0.5 s = 200 tok/s;
    # rep 2: nothing succeeded = 0 tok/s. Mean (100 + 200 + 0) / 3 = 100, not 150.
    records = [ok(0, 1000), ok(1, 500), failed(2)]
    s = scenario_summary(records)
    assert s["output_throughput_tok_s"] == pytest.approx(100.0)
    assert s["output_throughput_tok_s_std"] == pytest.approx(100.0)  # sd of 100, 200, 0
    assert s["total_throughput_tok_s"] == pytest.approx((150 + 300 + 0) / 3)
    assert s["duration_s"] == pytest.approx(0.75)  # the mean of the defined windows
    assert s["errors"] == 1


def test_no_record_at_all_is_not_a_zero() -> None:
    s = repetition_summary([])
    assert s["output_throughput_tok_s"] is None
