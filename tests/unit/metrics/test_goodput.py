"""SLO and goodput arithmetic on hand-built request records (times in ms)."""

from __future__ import annotations

import pytest

from harness.metrics import RequestRecord, meets_slo, repetition_summary, scenario_summary

MS = 1_000_000


def rec(i: int, send_ms: float, ttft_ms: float, tpot_ms: float, n_out: int,
        rep: int = 0, error: str | None = None) -> RequestRecord:
    """A request sent at send_ms whose first token came ttft_ms later, then one token
    every tpot_ms."""
    send = int(send_ms * MS)
    events = [send + int((ttft_ms + k * tpot_ms) * MS) for k in range(n_out)]
    return RequestRecord(request_id=str(i), scenario="s", repetition=rep, send_ns=send,
                         output_tokens=n_out, event_ns=[] if error else events,
                         event_tokens=[] if error else [1] * n_out, error=error)


def test_meets_slo_checks_every_slo_given():
    r = rec(0, 0, ttft_ms=200, tpot_ms=40, n_out=11)
    assert r.ttft_ms == pytest.approx(200) and r.tpot_ms == pytest.approx(40)
    assert meets_slo(r, None, None)
    assert meets_slo(r, 200, 40)  # limits are inclusive
    assert not meets_slo(r, 199, None)
    assert not meets_slo(r, None, 39)
    assert not meets_slo(rec(1, 0, 10, 10, 5, error="http_429"), None, None)
    # One output token has no TPOT: only the TTFT SLO applies to it.
    assert meets_slo(rec(2, 0, 100, 0, 1), 150, 1)


def test_goodput_is_good_requests_over_the_window():
    # Four requests over a 2 s window (first send at 0, last token at 2000 ms):
    #   a: TTFT 100, TPOT 20  -> good
    #   b: TTFT 600, TPOT 20  -> misses TTFT 500
    #   c: TTFT 100, TPOT 80  -> misses TPOT 50
    #   d: failed (http_5xx)  -> a miss
    records = [rec(0, 0, 100, 20, 11), rec(1, 100, 600, 20, 11), rec(2, 200, 100, 80, 11),
               rec(3, 300, 0, 0, 0, error="http_5xx"),
               rec(4, 1000, 100, 10, 91)]  # e: good; its last token at 1000+100+900 = 2000
    summary = repetition_summary(records, slo_ttft_ms=500, slo_tpot_ms=50)
    assert summary["duration_s"] == pytest.approx(2.0)
    assert summary["goodput_rps"] == pytest.approx(2 / 2.0)  # a and e
    assert summary["request_throughput_rps"] == pytest.approx(4 / 2.0)
    no_slo = repetition_summary(records)
    assert no_slo["goodput_rps"] == pytest.approx(4 / 2.0)  # every success counts


def test_scenario_goodput_is_the_mean_over_repetitions_and_records_the_slos():
    rep0 = [rec(0, 0, 100, 10, 11, rep=0), rec(1, 0, 900, 10, 11, rep=0)]  # window 1.0 s
    rep1 = [rec(2, 0, 100, 10, 11, rep=1), rec(3, 0, 100, 10, 11, rep=1)]  # window 0.2 s
    s = scenario_summary(rep0 + rep1, slo_ttft_ms=500, slo_tpot_ms=None)
    # rep0: 1 good / 1.0 s; rep1: 2 good / 0.2 s -> mean of 1 and 10.
    assert s["goodput_rps"] == pytest.approx((1 / 1.0 + 2 / 0.2) / 2)
    assert s["slo_ttft_ms"] == 500 and s["slo_tpot_ms"] is None
    assert s["errors"] == 0


def test_goodput_is_zero_when_nothing_succeeded():
    """Failed requests are misses: a repetition of failures has goodput 0, not None."""
    s = repetition_summary([rec(0, 0, 0, 0, 0, error="connection")], 100, 10)
    assert s["goodput_rps"] == 0.0
