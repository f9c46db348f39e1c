"""Hand-computed metric cases (definitions in README.md)."""

import pytest

from harness.metrics import RequestRecord, percentile, repetition_summary, scenario_summary, stdev

MS = 1_000_000


def rec(send_ms, events, n_out=None, rep=0, n_in=100, error=None, rid="r"):
    """events: list of (arrival_ms, tokens)."""
    r = RequestRecord(request_id=rid, scenario="s", repetition=rep, send_ns=int(send_ms * MS),
                      input_tokens=n_in)
    r.event_ns = [int(t * MS) for t, _ in events]
    r.event_tokens = [k for _, k in events]
    r.output_tokens = n_out if n_out is not None else sum(k for _, k in events)
    r.error = error
    return r


def test_ttft_e2e_tpot_single_token_events():
    r = rec(0, [(100, 1), (120, 1), (140, 1), (160, 1), (180, 1)])
    assert r.ttft_ms == pytest.approx(100)
    assert r.e2e_ms == pytest.approx(180)
    assert r.tpot_ms == pytest.approx((180 - 100) / 4)
    assert r.itl_ms == pytest.approx([20, 20, 20, 20])
    assert r.prefill_tok_s == pytest.approx(100 / 0.1)


def test_itl_spreads_multi_token_chunks_evenly():
    # first chunk holds 2 tokens; then a 3-token chunk 30 ms later; then 1 token 10 ms later
    r = rec(0, [(50, 2), (80, 3), (90, 1)])
    assert r.output_tokens == 6
    # first chunk's extra token is a zero gap; 30 ms over 3 tokens; 10 ms over 1
    assert r.itl_ms == pytest.approx([0, 10, 10, 10, 10])
    assert sum(r.itl_ms) == pytest.approx(r.e2e_ms - r.ttft_ms)
    assert r.tpot_ms == pytest.approx(40 / 5)


def test_tpot_undefined_for_one_token():
    r = rec(0, [(70, 1)])
    assert r.tpot_ms is None
    assert r.itl_ms == []


def test_failed_request_has_no_latency():
    r = rec(0, [], n_out=0, error="timeout")
    assert not r.ok
    assert r.ttft_ms is None and r.e2e_ms is None


def test_percentile_linear_interpolation():
    values = [10, 20, 30, 40]
    assert percentile(values, 50) == pytest.approx(25)
    assert percentile(values, 90) == pytest.approx(37)
    assert percentile(values, 99) == pytest.approx(39.7)
    assert percentile([5], 99) == 5
    assert percentile([], 50) is None


def test_stdev_sample():
    assert stdev([2, 4, 4, 4, 5, 5, 7, 9]) == pytest.approx(2.138089935)
    assert stdev([3]) == 0.0


def test_throughput_window_is_first_send_to_last_completion():
    # two concurrent requests: sent at 0 and 10 ms, done at 500 and 1000 ms
    a = rec(0, [(100, 1), (500, 49)], n_out=50, n_in=10)
    b = rec(10, [(200, 1), (1000, 99)], n_out=100, n_in=30)
    s = repetition_summary([a, b])
    assert s["duration_s"] == pytest.approx(1.0)
    assert s["output_throughput_tok_s"] == pytest.approx(150.0)
    assert s["total_throughput_tok_s"] == pytest.approx(190.0)
    assert s["request_throughput_rps"] == pytest.approx(2.0)


def test_goodput_counts_only_requests_meeting_every_slo():
    fast = rec(0, [(50, 1), (150, 10)], n_out=11)  # ttft 50, tpot 10
    slow_ttft = rec(0, [(300, 1), (400, 10)], n_out=11)  # ttft 300
    slow_tpot = rec(0, [(50, 1), (1050, 10)], n_out=11)  # tpot 100
    failed = rec(0, [], n_out=0, error="http_500")
    s = repetition_summary([fast, slow_ttft, slow_tpot, failed], slo_ttft_ms=100,
                           slo_tpot_ms=20)
    # window: 0 → 1050 ms; one good request
    assert s["goodput_rps"] == pytest.approx(1 / 1.05)


def test_scenario_summary_mean_and_std_over_repetitions():
    r0 = [rec(0, [(100, 1), (1000, 99)], n_out=100, rep=0)]  # 100 tok/s
    r1 = [rec(0, [(100, 1), (500, 99)], n_out=100, rep=1)]  # 200 tok/s
    err = rec(0, [], n_out=0, rep=1, error="timeout", rid="e")
    s = scenario_summary(r0 + r1 + [err])
    assert s["output_throughput_tok_s"] == pytest.approx(150)
    assert s["output_throughput_tok_s_std"] == pytest.approx(70.7106781)
    assert s["requests"] == 3 and s["errors"] == 1 and s["error_kinds"] == "timeout=1"
    assert s["ttft_ms_p50"] == pytest.approx(100)
    assert s["tpot_ms_mean"] == pytest.approx((900 / 99 + 400 / 99) / 2)
    assert s["decode_tok_s"] == pytest.approx(1000 / s["tpot_ms_mean"])
    assert s["prefill_tok_s"] == pytest.approx(200 / 0.2)


def test_engine_rates_are_token_weighted():
    a = rec(0, [(100, 1), (200, 9)], n_out=10)
    a.engine_prefill_ms, a.engine_prefill_tokens = 100.0, 100
    a.engine_decode_ms, a.engine_decode_tokens = 90.0, 9
    b = rec(0, [(100, 1), (200, 9)], n_out=10, rid="b")
    b.engine_prefill_ms, b.engine_prefill_tokens = 300.0, 100
    b.engine_decode_ms, b.engine_decode_tokens = 90.0, 9
    s = scenario_summary([a, b])
    assert s["engine_prefill_tok_s"] == pytest.approx(200 / 0.4)
    assert s["engine_decode_tok_s"] == pytest.approx(18 / 0.18)
