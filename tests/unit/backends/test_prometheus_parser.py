"""The /metrics page parser: prometheus_client's where installed, the line parser where it
is absent or refuses the page; a line that cannot be read is named in the notes."""

from __future__ import annotations

import pytest

from backends import prometheus
from backends.prometheus import parse_metrics, parse_notes, vllm_details

PAGE = """\
# HELP vllm:prompt_tokens_total Number of prefill tokens processed.
# TYPE vllm:prompt_tokens_total counter
vllm:prompt_tokens_total{engine="0",model_name="tiny"} 612.0
# TYPE vllm:time_to_first_token_seconds histogram
vllm:time_to_first_token_seconds_bucket{engine="0",le="0.1",model_name="tiny"} 4.0
vllm:time_to_first_token_seconds_bucket{engine="0",le="+Inf",model_name="tiny"} 6.0
vllm:time_to_first_token_seconds_count{engine="0",model_name="tiny"} 6.0
vllm:time_to_first_token_seconds_sum{engine="0",model_name="tiny"} 0.86
vllm:kv_cache_usage_perc{engine="0",model_name="tiny"} 0.25
"""
EXPECTED = {
    "vllm:prompt_tokens_total": [({"engine": "0", "model_name": "tiny"}, 612.0)],
    "vllm:time_to_first_token_seconds_bucket": [
        ({"engine": "0", "le": "0.1", "model_name": "tiny"}, 4.0),
        ({"engine": "0", "le": "+Inf", "model_name": "tiny"}, 6.0)],
    "vllm:time_to_first_token_seconds_count": [({"engine": "0", "model_name": "tiny"}, 6.0)],
    "vllm:time_to_first_token_seconds_sum": [({"engine": "0", "model_name": "tiny"}, 0.86)],
    "vllm:kv_cache_usage_perc": [({"engine": "0", "model_name": "tiny"}, 0.25)],
}
BAD_LINES = 'vllm:broken{engine="0" 1.0\nnot a sample line\n'


@pytest.fixture
def no_client(monkeypatch):
    monkeypatch.setattr(prometheus, "text_string_to_metric_families", None)


def test_prometheus_client_reads_the_page_where_installed():
    pytest.importorskip("prometheus_client")
    assert prometheus.text_string_to_metric_families is not None
    samples = parse_metrics(PAGE)
    assert dict(samples) == EXPECTED and samples.notes == []


def test_the_line_parser_reads_the_same_samples(no_client):
    samples = parse_metrics(PAGE)
    assert dict(samples) == EXPECTED and samples.notes == []


def test_the_line_parser_names_the_lines_it_skipped(no_client):
    samples = parse_metrics(PAGE + BAD_LINES)
    assert dict(samples) == EXPECTED
    (note,) = samples.notes
    assert "skipped 2 line(s)" in note
    assert "line 10: 'vllm:broken{engine=\"0\" 1.0'" in note and "line 11" in note


def test_a_page_the_client_refuses_is_read_line_by_line_and_said():
    pytest.importorskip("prometheus_client")
    samples = parse_metrics(PAGE + BAD_LINES)
    assert dict(samples) == EXPECTED  # the good lines are kept
    assert samples.notes[0].startswith("prometheus_client could not parse the metrics page")
    assert "skipped 2 line(s)" in samples.notes[1]


def test_many_skipped_lines_are_counted_not_all_quoted(no_client):
    samples = parse_metrics("\n".join(f"bad line {i}" for i in range(12)))
    (note,) = samples.notes
    assert "skipped 12 line(s)" in note and "and 7 more" in note


def test_window_details_carry_the_notes_of_both_scrapes(no_client):
    before, after = parse_metrics(PAGE), parse_metrics(PAGE + BAD_LINES)
    details = vllm_details(before, after)
    assert details["parse_notes"] == after.notes
    assert "parse_notes" not in vllm_details(before, before)
    assert parse_notes({"a": []}, before) == []  # a plain dict has no notes
