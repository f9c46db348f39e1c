"""Prometheus scrape parsing and the server-side window of a vLLM run, hand-computed."""

import pytest

from backends.prometheus import (
    histogram_quantile_ms,
    parse_metrics,
    vllm_details,
    vllm_summary,
    window_delta,
)

BEFORE = """\
# HELP vllm:prompt_tokens_total Number of prefill tokens processed.
# TYPE vllm:prompt_tokens_total counter
vllm:prompt_tokens_total{engine="0",model_name="tiny"} 100.0
vllm:generation_tokens_total{engine="0",model_name="tiny"} 40.0
vllm:num_preemptions_total{engine="0",model_name="tiny"} 0.0
vllm:kv_cache_usage_perc{engine="0",model_name="tiny"} 0.0
vllm:time_to_first_token_seconds_bucket{engine="0",le="0.01",model_name="tiny"} 1.0
vllm:time_to_first_token_seconds_bucket{engine="0",le="0.1",model_name="tiny"} 2.0
vllm:time_to_first_token_seconds_bucket{engine="0",le="+Inf",model_name="tiny"} 2.0
vllm:time_to_first_token_seconds_count{engine="0",model_name="tiny"} 2.0
vllm:time_to_first_token_seconds_sum{engine="0",model_name="tiny"} 0.06
vllm:inter_token_latency_seconds_count{engine="0",model_name="tiny"} 38.0
vllm:inter_token_latency_seconds_sum{engine="0",model_name="tiny"} 0.38
"""

AFTER = """\
vllm:prompt_tokens_total{engine="0",model_name="tiny"} 612.0
vllm:generation_tokens_total{engine="0",model_name="tiny"} 168.0
vllm:num_preemptions_total{engine="0",model_name="tiny"} 3.0
vllm:kv_cache_usage_perc{engine="0",model_name="tiny"} 0.25
vllm:time_to_first_token_seconds_bucket{engine="0",le="0.01",model_name="tiny"} 1.0
vllm:time_to_first_token_seconds_bucket{engine="0",le="0.1",model_name="tiny"} 4.0
vllm:time_to_first_token_seconds_bucket{engine="0",le="+Inf",model_name="tiny"} 6.0
vllm:time_to_first_token_seconds_count{engine="0",model_name="tiny"} 6.0
vllm:time_to_first_token_seconds_sum{engine="0",model_name="tiny"} 0.86
vllm:inter_token_latency_seconds_count{engine="0",model_name="tiny"} 162.0
vllm:inter_token_latency_seconds_sum{engine="0",model_name="tiny"} 2.24
"""


def test_parse_reads_labels_values_and_skips_comments():
    s = parse_metrics(BEFORE)
    assert "# HELP" not in "".join(s)
    labels, value = s["vllm:prompt_tokens_total"][0]
    assert labels == {"engine": "0", "model_name": "tiny"} and value == 100.0
    les = [lab["le"] for lab, _ in s["vllm:time_to_first_token_seconds_bucket"]]
    assert les == ["0.01", "0.1", "+Inf"]


def test_window_delta_subtracts_counters_and_keeps_buckets():
    d = window_delta(parse_metrics(BEFORE), parse_metrics(AFTER))
    assert d["vllm:prompt_tokens_total"] == 512.0
    assert d["vllm:generation_tokens_total"] == 128.0
    assert d['vllm:time_to_first_token_seconds_bucket{le="0.1"}'] == 2.0
    assert "vllm:kv_cache_usage_perc" not in d  # gauges are not differenced


def test_vllm_summary_means_over_the_window_only():
    cols = vllm_summary(parse_metrics(BEFORE), parse_metrics(AFTER),
                        {"kv_cache_usage": 0.5, "requests_running": 8})
    assert cols["server_prompt_tokens"] == 512
    assert cols["server_generation_tokens"] == 128
    assert cols["server_preemptions"] == 3
    # 4 new requests, (0.86 - 0.06) s in total → 200 ms each
    assert cols["server_ttft_ms_mean"] == pytest.approx(200.0)
    # 124 new gaps, 1.86 s → 15 ms
    assert cols["server_itl_ms_mean"] == pytest.approx(15.0)
    assert cols["server_e2e_ms_mean"] is None  # not on the page
    assert cols["server_kv_cache_usage_peak_pct"] == 50.0
    assert cols["server_requests_running_peak"] == 8


def test_histogram_quantile_interpolates_within_bucket():
    d = window_delta(parse_metrics(BEFORE), parse_metrics(AFTER))
    # window buckets: le=0.01 → 0, le=0.1 → 2, +Inf → 4 (cumulative)
    # p25: rank 1 of 4, inside (0.01, 0.1]: 0.01 + 0.09 * 1/2 = 0.055 s
    assert histogram_quantile_ms(d, "vllm:time_to_first_token_seconds", 0.25) == \
        pytest.approx(55.0)
    # p90 falls in +Inf: the highest finite bound is reported
    assert histogram_quantile_ms(d, "vllm:time_to_first_token_seconds", 0.9) == \
        pytest.approx(100.0)


def test_details_hold_histograms_counters_and_end_gauges():
    det = vllm_details(parse_metrics(BEFORE), parse_metrics(AFTER))
    assert det["counters"]["vllm:num_preemptions_total"] == 3
    assert det["histograms"]["vllm:time_to_first_token_seconds"]["count"] == 4
    assert det["gauges_end"]["vllm:kv_cache_usage_perc"] == 0.25
