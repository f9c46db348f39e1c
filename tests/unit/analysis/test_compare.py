"""harness compare: alignment, metadata checks, significance-gated regressions, exit codes."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from harness.analysis import compare as cmp
from harness.analysis.stats import t_two_sided_p, welch_t_test
from harness.cli.main import main
from tests.support.result_factory import row, run_rows, write_csv

A = "20260101T000000Z-aaaaaa"
B = "20260102T000000Z-bbbbbb"


def _sides(base_rows, other_rows, warnings=None):
    return cmp.build_sides(base_rows + other_rows, None, warnings if warnings is not None else [])


# ---------------------------------------------------------------- statistics


def test_t_distribution_matches_published_critical_values():
    # Two-sided 5% critical values of Student's t (any statistics table).
    for t, df in ((12.706, 1), (4.303, 2), (2.776, 4), (2.228, 10), (1.960, 10**6)):
        assert t_two_sided_p(t, df) == pytest.approx(0.05, abs=2e-4)
    assert t_two_sided_p(0.0, 5) == pytest.approx(1.0)
    assert t_two_sided_p(63.657, 1) == pytest.approx(0.01, abs=1e-4)


def test_welch_needs_two_samples_and_handles_zero_spread():
    assert welch_t_test(100, 1, 1, 90, 1, 3) is None
    same = welch_t_test(100, 0, 3, 100, 0, 3)
    assert same.p_value == 1.0
    apart = welch_t_test(100, 0, 3, 90, 0, 3)
    assert apart.p_value == 0.0


def test_welch_equal_n_equal_std_matches_hand_computation():
    # means 10 and 12, std 1 each, n 4: t = 2 / sqrt(0.25 + 0.25) = 2.828, df = 6
    res = welch_t_test(10, 1, 4, 12, 1, 4)
    assert res.t == pytest.approx(2.8284, abs=1e-4)
    assert res.df == pytest.approx(6.0)
    assert res.p_value == pytest.approx(0.0300, abs=5e-4)


# ---------------------------------------------------------------- alignment


def test_rows_align_by_key_regardless_of_order_and_extra_rows():
    base = run_rows("cpu", A)
    other = list(reversed(run_rows("cpu", B, scale=2.0)))
    other.append(row("cpu", B, scenario="chat", concurrency=1))  # only in B
    c = cmp.compare(_sides(base, other), ["output_throughput_tok_s"])
    assert len(c.lines) == 4  # the chat row has no baseline counterpart
    for line in c.lines:
        k = line.key_dict
        expected = next(r for r in base if r["scenario"] == k["scenario"]
                        and r["concurrency"] == k["concurrency"])
        assert line.cells[0].value == expected["output_throughput_tok_s"]
        assert line.cells[1].ratio == pytest.approx(2.0)
    assert any("no counterpart" in n and "chat" in n for n in c.notes)


def test_concurrency_and_model_are_part_of_the_key():
    base = [row("cpu", A, concurrency=1), row("cpu", A, concurrency=4, throughput=300)]
    other = [row("cpu", B, concurrency=4, throughput=300),
             row("cpu", B, concurrency=1, model="Other model")]
    c = cmp.compare(_sides(base, other), ["output_throughput_tok_s"])
    assert [line.key_dict["concurrency"] for line in c.lines] == [4]


def test_mismatched_metadata_gives_warnings_naming_the_difference():
    base = run_rows("cpu", A)
    other = run_rows("cpu", B, settings={"n_ctx": 512, "n_threads": 8})
    for r in other[:2]:
        r["output_tokens_target"] = 64
    c = cmp.compare(_sides(base, other), ["output_throughput_tok_s"])
    text = "\n".join(c.warnings)
    assert "settings_json differs in 4 aligned row(s)" in text
    assert "n_threads 2 vs 8" in text
    assert "output_tokens_target differs in 2 aligned row(s) (32 vs 64)" in text


def test_matching_metadata_gives_no_warning_and_other_hardware_a_note():
    c = cmp.compare(_sides(run_rows("cpu", A), run_rows("cpu", B)), ["ttft_ms_mean"])
    assert c.warnings == []
    c = cmp.compare(_sides(run_rows("cpu", A), run_rows("h100", B)), ["ttft_ms_mean"])
    assert any("different machine" in n and "NVIDIA H100" in n for n in c.notes)


def test_unstable_rows_are_warned_like_pyperf():
    other = run_rows("cpu", B)
    other[0]["output_throughput_tok_s_std"] = other[0]["output_throughput_tok_s"] * 0.2
    c = cmp.compare(_sides(run_rows("cpu", A), other), ["output_throughput_tok_s"])
    assert any("unstable" in w and "20% of mean" in w for w in c.warnings)


# ---------------------------------------------------------------- regressions


def _one(base_tps, base_std, other_tps, other_std, threshold, reps=3, metric=None):
    base = [row("cpu", A, throughput=base_tps, throughput_std=base_std, repetitions=reps)]
    other = [row("cpu", B, throughput=other_tps, throughput_std=other_std, repetitions=reps)]
    c = cmp.compare(_sides(base, other), [metric or "output_throughput_tok_s"], threshold)
    return c.lines[0].cells[1]


def test_twenty_percent_slowdown_with_tight_spread_is_a_regression():
    cell = _one(100.0, 1.0, 80.0, 1.0, threshold=10)
    assert cell.verdict == cmp.VERDICT_REGRESSION
    assert cell.change_pct == pytest.approx(-20.0)
    assert cell.p_value < 0.001


def test_three_percent_change_inside_the_noise_is_not_a_regression():
    # The change exceeds the 2% threshold, but std 5% over 3 repetitions hides it.
    cell = _one(100.0, 5.0, 97.0, 5.0, threshold=2)
    assert cell.verdict == cmp.VERDICT_NOISE
    assert cell.p_value > 0.05


def test_large_change_with_huge_spread_is_noise_and_small_real_change_is_within():
    assert _one(100.0, 30.0, 80.0, 30.0, threshold=10).verdict == cmp.VERDICT_NOISE
    assert _one(100.0, 0.1, 97.0, 0.1, threshold=10).verdict == cmp.VERDICT_WITHIN


def test_speedup_is_an_improvement_not_a_regression():
    assert _one(100.0, 1.0, 125.0, 1.0, threshold=10).verdict == cmp.VERDICT_IMPROVEMENT


def test_latency_increase_is_a_regression_since_lower_is_better():
    base = [row("cpu", A, ttft_ms=50.0, ttft_std=1.0, requests=12)]
    other = [row("cpu", B, ttft_ms=60.0, ttft_std=1.0, requests=12)]
    c = cmp.compare(_sides(base, other), ["ttft_ms_mean"], 10)
    assert c.lines[0].cells[1].verdict == cmp.VERDICT_REGRESSION
    assert len(c.regressions) == 1


def test_metric_without_spread_is_never_called_a_regression():
    base = [row("cpu", A, ttft_ms=50.0)]
    other = [row("cpu", B, ttft_ms=100.0)]
    c = cmp.compare(_sides(base, other), ["ttft_ms_p99"], 10)
    assert c.lines[0].cells[1].verdict == cmp.VERDICT_UNTESTED
    assert c.lines[0].cells[1].ratio == pytest.approx(2.0)
    assert any("no spread" in n for n in c.notes)


def test_single_repetition_cannot_be_tested():
    assert _one(100.0, 0.0, 50.0, 0.0, threshold=10, reps=1).verdict == cmp.VERDICT_UNTESTED


# ---------------------------------------------------------------- sides and baseline


def test_baseline_from_a_multi_machine_folder_uses_the_matching_hardware():
    baseline = run_rows("cpu", A) + run_rows("h100", "20260101T000000Z-gggggg", scale=20)
    current = run_rows("h100", B, scale=16)
    warnings: list[str] = []
    sides = cmp.build_sides(current, baseline, warnings)
    assert sides[0].machine["gpu_name"] == "NVIDIA H100 80GB HBM3"
    c = cmp.compare(sides, ["output_throughput_tok_s"], 10)
    assert all(line.cells[1].ratio == pytest.approx(0.8) for line in c.lines)


def test_baseline_without_matching_machine_is_an_error():
    baseline = run_rows("cpu", A) + run_rows("cpu", "x", machine_id="other-1", cpu_model="ARM")
    with pytest.raises(ValueError, match="no baseline results from the hardware"):
        cmp.build_sides(run_rows("h100", B), baseline, [])


def test_same_hardware_rejects_a_single_machine_baseline_of_another_kind(tmp_path, capsys):
    with pytest.raises(ValueError, match=r"NVIDIA H100 80GB HBM3 x1.*Intel Xeon 8480"):
        cmp.build_sides(run_rows("h100", B), run_rows("cpu", A), [], same_hardware=True)
    # without the flag a cross-machine comparison is allowed (that is what compare is for)
    assert len(cmp.build_sides(run_rows("h100", B), run_rows("cpu", A), [])) == 2
    a, b = _files(tmp_path, run_rows("cpu", A), run_rows("h100", B))
    assert main(["compare", b, "--baseline", a, "--same-hardware"]) == 2
    assert "no baseline results from the hardware" in _one_error_line(capsys)
    assert main(["compare", a, b, "--same-hardware"]) == 2
    assert "--same-hardware needs --baseline" in _one_error_line(capsys)


def test_same_gpu_with_another_host_cpu_is_the_same_hardware():
    other_host = run_rows("h100", B, cpu_model="Intel Xeon 8468")
    sides = cmp.build_sides(other_host, run_rows("h100", A), [], same_hardware=True)
    assert len(sides) == 2


def test_one_run_alone_cannot_be_compared():
    with pytest.raises(ValueError, match="at least two runs"):
        cmp.build_sides(run_rows("cpu", A), None, [])


def test_no_common_scenarios_is_an_error_naming_both_sides():
    sides = _sides(run_rows("cpu", A, workload="smoke"), run_rows("cpu", B, workload="chat"))
    with pytest.raises(ValueError, match="no common scenarios.*smoke/.*chat/"):
        cmp.compare(sides, ["output_throughput_tok_s"])


# ---------------------------------------------------------------- output formats


def test_synthetic_rows_are_marked_in_every_format():
    base = run_rows("cpu", A, weights="synthetic", model="synth llama-8b")
    other = run_rows("cpu", B, weights="synthetic", model="synth llama-8b")
    c = cmp.compare(_sides(base, other), ["output_throughput_tok_s"])
    assert "[synthetic]" in cmp.format_table(c)
    assert "[synthetic]" in cmp.format_md(c)
    records = list(csv.DictReader(io.StringIO(cmp.format_csv(c))))
    assert records and all(r["synthetic"] == "True" and r["weights"] == "synthetic"
                           for r in records)
    doc = json.loads(cmp.format_json(c))
    assert all(r["synthetic"] for r in doc["rows"])


def test_json_and_csv_carry_ratios_and_verdicts():
    c = cmp.compare(_sides(run_rows("cpu", A), run_rows("cpu", B, scale=0.8)),
                    ["output_throughput_tok_s"], 10)
    doc = json.loads(cmp.format_json(c))
    assert [s["label"] for s in doc["sides"]] == ["A", "B"]
    b_rows = [r for r in doc["rows"] if r["side"] == "B"]
    assert len(b_rows) == 4
    assert all(r["ratio"] == pytest.approx(0.8) and r["verdict"] == "regression" for r in b_rows)
    assert len(doc["regressions"]) == 4
    records = list(csv.DictReader(io.StringIO(cmp.format_csv(c))))
    assert {r["verdict"] for r in records} == {"baseline", "regression"}


# ---------------------------------------------------------------- command line


def _files(tmp_path: Path, base_rows, other_rows) -> tuple[str, str]:
    a = write_csv(tmp_path / "a" / "run_smoke.csv", base_rows)
    b = write_csv(tmp_path / "b" / "run_smoke.csv", other_rows)
    return str(a), str(b)


def test_cli_exit_1_on_regression_and_0_without_the_flag(tmp_path, capsys):
    a, b = _files(tmp_path, run_rows("cpu", A), run_rows("cpu", B, scale=0.8))
    assert main(["compare", a, b, "--fail-on-regression", "10"]) == 1
    err = capsys.readouterr().err
    assert "regression(s) worse than 10% and significant" in err
    assert main(["compare", a, b]) == 0
    out = capsys.readouterr().out
    assert "REGRESSION" in out and "0.80x" in out


def test_cli_exit_0_when_change_is_inside_the_noise(tmp_path, capsys):
    base = [row("cpu", A, throughput=100.0, throughput_std=5.0)]
    other = [row("cpu", B, throughput=97.0, throughput_std=5.0)]
    a, b = _files(tmp_path, base, other)
    assert main(["compare", "--baseline", a, b, "--fail-on-regression", "2"]) == 0
    captured = capsys.readouterr()
    assert "noise" in captured.out
    assert "no significant regression" in captured.err


def test_cli_baseline_given_also_as_result_is_not_compared_with_itself(tmp_path, capsys):
    a, b = _files(tmp_path, run_rows("cpu", A), run_rows("cpu", B))
    assert main(["compare", "--baseline", a, a, b, "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [s["label"] for s in doc["sides"]] == ["A", "B"]


@pytest.mark.parametrize("fmt", ["table", "md", "csv", "json"])
def test_cli_formats(tmp_path, capsys, fmt):
    a, b = _files(tmp_path, run_rows("cpu", A), run_rows("cpu", B, scale=1.1))
    assert main(["compare", a, b, "--format", fmt,
                 "--metric", "output_throughput_tok_s,ttft_ms_p50"]) == 0
    out = capsys.readouterr().out
    assert "ttft_ms_p50" in out and "output_throughput_tok_s" in out


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "Traceback" not in err[0]
    return err[0]


def test_cli_non_result_file_is_one_line_exit_2(tmp_path, capsys):
    a, _ = _files(tmp_path, run_rows("cpu", A), run_rows("cpu", B))
    other = tmp_path / "prices.csv"
    other.write_text("name,price\nx,1\n")
    assert main(["compare", a, str(other)]) == 2
    assert "not a harness result file" in _one_error_line(capsys)
    text = tmp_path / "notes.txt"
    text.write_bytes(b"\xff\xfe binary \x00")
    assert main(["compare", a, str(text)]) == 2
    assert str(text) in _one_error_line(capsys)


def test_cli_empty_folder_is_one_line_exit_2(tmp_path, capsys):
    a, _ = _files(tmp_path, run_rows("cpu", A), run_rows("cpu", B))
    (tmp_path / "empty").mkdir()
    assert main(["compare", a, str(tmp_path / "empty")]) == 2
    assert "holds no result CSV files" in _one_error_line(capsys)


def test_cli_no_common_scenarios_is_one_line_exit_2(tmp_path, capsys):
    a, b = _files(tmp_path, run_rows("cpu", A, workload="smoke"),
                  run_rows("cpu", B, workload="chat"))
    assert main(["compare", a, b]) == 2
    assert "no common scenarios" in _one_error_line(capsys)


def test_cli_single_run_and_unknown_metric_are_exit_2(tmp_path, capsys):
    a, b = _files(tmp_path, run_rows("cpu", A), run_rows("cpu", B))
    assert main(["compare", a]) == 2
    assert "at least two runs" in _one_error_line(capsys)
    assert main(["compare", a, b, "--metric", "output_throughput"]) == 2
    assert "Did you mean 'output_throughput_tok_s'" in _one_error_line(capsys)
    assert main(["compare", a, b, "--fail-on-regression", "-5"]) == 2
    _one_error_line(capsys)


def test_cli_newer_schema_is_exit_2(tmp_path, capsys):
    a, _ = _files(tmp_path, run_rows("cpu", A), run_rows("cpu", B))
    future = write_csv(tmp_path / "future.csv", run_rows("cpu", B, schema_version=99))
    assert main(["compare", a, str(future)]) == 2
    assert "newer than this harness" in _one_error_line(capsys)


def test_regression_on_a_busy_machine_says_so():
    other = run_rows("cpu", B, scale=0.8)
    other[0]["noisy"] = 1
    c = cmp.compare(_sides(run_rows("cpu", A), other), ["output_throughput_tok_s"], 10)
    assert "busy during 1 of them" in cmp.regression_summary(c)
    c = cmp.compare(_sides(run_rows("cpu", A), run_rows("cpu", B, scale=0.8)),
                    ["output_throughput_tok_s"], 10)
    assert "busy" not in cmp.regression_summary(c)
