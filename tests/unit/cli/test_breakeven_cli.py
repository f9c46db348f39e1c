"""`harness breakeven` on real result CSV files: outputs, row choice, exit codes; and the
summary `harness bench` prints."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from harness.analysis.breakeven.text import bench_summary_text as bench_summary
from harness.analysis.prices import load_catalog
from harness.cli.main import main
from harness.results.files import rows_to_csv
from harness.results.schema import empty_row

MONTH_S = 2_592_000


def result_row(**values: Any) -> dict[str, Any]:
    row = empty_row()
    row.update(machine_id="m1", hostname="box", cpu_model="Intel Xeon Test", gpu_name="",
               gpu_count=0, backend="llamacpp", engine="llama.cpp", model="tiny-model",
               quant="Q4_K_M", weights="real", workload="default", scenario="chat",
               load_mode="closed", concurrency=1, status="complete", requests=8, errors=0,
               input_tokens=2000, output_tokens=1000, duration_s=10.0,
               output_throughput_tok_s=100.0 / 3, total_throughput_tok_s=100.0,
               avg_power_w=300.0, idle_power_w=100.0, power_method="measured",
               ttft_ms_p90=100.0, tpot_ms_p90=20.0)
    row.update(values)
    return row


def write_csv(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text(rows_to_csv(rows), encoding="utf-8")
    return path


@pytest.fixture
def sweep(tmp_path) -> Path:
    """A concurrency sweep: faster at higher load, slower per request."""
    return write_csv(tmp_path / "run_default.csv", [
        result_row(concurrency=1, total_throughput_tok_s=100.0, ttft_ms_p90=100.0,
                   tpot_ms_p90=20.0),
        result_row(concurrency=4, total_throughput_tok_s=250.0, ttft_ms_p90=300.0,
                   tpot_ms_p90=45.0),
        result_row(concurrency=8, total_throughput_tok_s=300.0, ttft_ms_p90=900.0,
                   tpot_ms_p90=80.0),
    ])


def run_json(capsys, *argv: str) -> dict[str, Any]:
    rc = main(["breakeven", *argv, "--format", "json"])
    out = capsys.readouterr().out
    assert rc == 0
    return json.loads(out)


def test_json_by_hand(capsys, sweep):
    # $2,160 over 36 months = $60; 300 W at full load, 100 W idle; $0.25/kWh.
    data = run_json(capsys, str(sweep), "--hardware-price", "2160", "--amortize-months", "36",
                    "--electricity-usd-per-kwh", "0.25", "--concurrency", "1",
                    "--api", "claude-sonnet-4.6")
    (o,) = data["options"]
    assert o["concurrency"] == 1 and o["selection"] == "concurrency 1"
    assert o["input_share"] == pytest.approx(2 / 3, abs=1e-4)
    assert o["capacity_mtok_per_month_full"] == pytest.approx(100 * MONTH_S / 1e6)
    assert o["hardware_usd_per_month"] == pytest.approx(60.0)
    assert o["idle_energy_usd_per_month"] == pytest.approx(0.1 * 720 * 0.25)
    full_month_usd = 60.0 + 0.3 * 720 * 0.25
    assert o["cost_per_mtok_full"] == pytest.approx(full_month_usd / 259.2, rel=1e-5)
    (v,) = o["versus"]
    assert v["api_usd_per_mtok"] == pytest.approx(7.0)
    marginal = 200 / 100 * 1e6 / 3.6e6 * 0.25
    assert v["break_even_mtok_per_month"] == pytest.approx(
        (60.0 + 18.0) / (7.0 - marginal), rel=1e-5)
    assert v["machines"] == 1
    assert [r["volume_mtok"] for r in o["cost_table"]] == [5, 20, 50, 200, 500]
    assert o["cost_table"][-1]["machines"] == 2  # 500 M > 259.2 M per machine
    assert o["cost_table"][0]["api_usd"]["claude-sonnet-4.6"] == pytest.approx(35.0)
    assert {s["parameter"] for s in o["sensitivity"]} >= {"electricity", "utilization",
                                                          "amortize months", "hardware price"}
    assert data["assumptions"]["electricity_usd_per_kwh"] == 0.25


def test_default_row_is_the_fastest_and_slos_pick_the_fastest_within_them(capsys, sweep):
    fastest = run_json(capsys, str(sweep), "--hardware-price", "2000")
    assert fastest["options"][0]["concurrency"] == 8
    within = run_json(capsys, str(sweep), "--hardware-price", "2000", "--slo-ttft-ms", "500",
                      "--slo-tpot-ms", "50")
    assert within["options"][0]["concurrency"] == 4
    assert "best meeting" in within["options"][0]["selection"]


def test_no_row_meeting_the_slos_exits_1(capsys, sweep):
    rc = main(["breakeven", str(sweep), "--hardware-price", "2000", "--slo-ttft-ms", "10"])
    assert rc == 1
    assert "no result row meets TTFT p90 <= 10 ms" in capsys.readouterr().err


def test_rented_volumes_and_table_output(capsys, sweep):
    rc = main(["breakeven", str(sweep), "--rent-usd-per-hour", "1.5", "--utilization", "0.5",
               "--volumes", "75M", "2B", "--api", "gpt-4o-mini", "claude-sonnet-4.6"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "rented $1.5/h x 720 h" in out
    assert "75 M" in out and "2,000 M" in out
    assert "hybrid (+gpt-4o-mini)" in out
    assert "sensitivity" in out and "rent" in out


def test_several_machines_priced_by_the_catalog(capsys, tmp_path):
    # Two machines' results in one folder; an H100 row is priced both as bought and as
    # rented (two catalog entries match it); the CPU box by a user price file.
    write_csv(tmp_path / "a.csv", [result_row()])
    write_csv(tmp_path / "b.csv", [result_row(machine_id="m2", gpu_name="NVIDIA H100 80GB HBM3",
                                              gpu_count=1, total_throughput_tok_s=5000.0)])
    prices = tmp_path / "p.toml"
    prices.write_text('[[hardware]]\nname = "office-box"\npurchase_usd = 1000\n'
                      'match = ["Xeon Test"]\ndate = "2026-11"\nsource = "invoice"\n')
    data = run_json(capsys, str(tmp_path), "--prices", str(prices))
    names = sorted(o["hardware"]["name"] for o in data["options"])
    assert names == ["h100-sxm", "office-box", "runpod-h100-sxm"]


def test_unpriced_machine_says_how_to_give_a_price(capsys, sweep):
    data = run_json(capsys, str(sweep))
    (o,) = data["options"]
    assert o["priced"] is False and "no price known for Intel Xeon Test" in o["unpriced_reason"]
    assert o["api_value_of_full_machine_usd"]["claude-sonnet-4.6"] == pytest.approx(
        7.0 * 300 * MONTH_S / 1e6, rel=1e-5)
    assert any("--hardware-price" in n for n in data["notes"])


def test_synthetic_weights_are_labelled(capsys, tmp_path):
    path = write_csv(tmp_path / "s.csv", [result_row(weights="synthetic")])
    rc = main(["breakeven", str(path), "--hardware-price", "1000"])
    out = capsys.readouterr().out
    assert rc == 0 and "SYNTHETIC weights" in out
    data = run_json(capsys, str(path), "--hardware-price", "1000")
    assert data["options"][0]["synthetic_weights"] is True
    assert any("SYNTHETIC" in n for n in data["notes"])


def test_markdown_and_plot(capsys, sweep, tmp_path):
    svg = tmp_path / "cost.svg"
    rc = main(["breakeven", str(sweep), "--hardware", "mac-studio-m4-ultra", "--format", "md",
               "--plot", str(svg)])
    out = capsys.readouterr().out
    assert rc == 0
    assert out.startswith("## Break-even") and "| volume/month |" in out
    text = svg.read_text()
    assert "<svg" in text and "claude-sonnet-4.6" in text


def test_article_inputs_through_the_command(capsys, tmp_path):
    # A row measured at the article's 3 tokens/s with 2:1 input:output and 350 W.
    path = write_csv(tmp_path / "article.csv", [result_row(
        total_throughput_tok_s=3.0, output_throughput_tok_s=1.0, avg_power_w=350.0,
        idle_power_w=350.0)])
    data = run_json(capsys, str(path), "--hardware", "mac-studio-m4-ultra-192gb",
                    "--electricity-usd-per-kwh", str(30 / 252), "--api", "claude-sonnet-4.6")
    (o,) = data["options"]
    assert round(o["machine_fixed_usd_per_month"]) == 197
    (v,) = o["versus"]
    assert v["break_even_mtok_per_month"] is None
    assert round(v["one_machine_break_even_mtok"], 1) == 28.1
    assert v["reason"].startswith("capacity below break-even")
    assert o["capacity_mtok_per_month_full"] == pytest.approx(7.776)


@pytest.mark.parametrize("flags, message", [
    (["--hardware-price", "0"], "--hardware-price '0': must be a number > 0"),
    (["--hardware-price", "-5"], "must be a number > 0"),
    (["--rent-usd-per-hour", "abc"], "--rent-usd-per-hour 'abc'"),
    (["--hardware-price", "100", "--electricity-usd-per-kwh", "0"], "--electricity-usd-per-kwh"),
    (["--utilization", "1.5"], "--utilization '1.5': must be a number in (0, 1]"),
    (["--utilization", "0"], "--utilization '0'"),
    (["--pue", "0.8"], "--pue '0.8': must be a number >= 1"),
    (["--hardware", "mac-studio-m4-ultar"], "Did you mean 'mac-studio-m4-ultra'"),
    (["--api", "claude-sonet-4.6"], "Did you mean 'claude-sonnet-4.6'"),
    (["--hardware", "rtx-4090", "--hardware-price", "100"], "give only one way"),
    (["--rent-usd-per-hour", "2", "--amortize-months", "12"], "--amortize-months applies"),
    (["--volumes", "lots"], "--volumes 'lots'"),
    (["--concurrency", "2"], "--concurrency 2: no result row at that concurrency; have 1, 4, 8"),
    (["--concurrency", "x"], "--concurrency 'x'"),
    (["--scenario", "chta"], "Did you mean 'chat'"),
    (["--format", "xml"], "--format 'xml'"),
    (["--plot", "cost.txt"], "--plot cost.txt"),
    (["--prices", "/nonexistent/p.toml"], "no such file"),
])
def test_bad_flags_exit_2_with_one_line(capsys, sweep, flags, message):
    rc = main(["breakeven", str(sweep), *flags])
    err = capsys.readouterr().err
    assert rc == 2
    assert message in err
    assert err.count("\n") == 1


def test_bad_files_exit_2_with_one_line(capsys, tmp_path):
    no_throughput = write_csv(tmp_path / "empty.csv", [result_row(
        total_throughput_tok_s=None, output_throughput_tok_s=None)])
    not_results = tmp_path / "other.csv"
    not_results.write_text("a,b\n1,2\n")
    for argv, message in (
        ([str(no_throughput)], "total_throughput_tok_s"),
        ([str(not_results)], "not a harness result file"),
        ([str(tmp_path / "missing.csv")], "no such file or folder"),
    ):
        rc = main(["breakeven", *argv, "--hardware-price", "100"])
        err = capsys.readouterr().err
        assert rc == 2, argv
        assert message in err and err.count("\n") == 1


def test_bench_summary_without_a_price_says_how_to_give_one():
    text = bench_summary([result_row(concurrency=1), result_row(concurrency=4,
                                                                total_throughput_tok_s=150.0)])
    assert "chat c=4" in text and "c=1" not in text  # the fastest load level
    assert "no price known for this machine (Intel Xeon Test)" in text
    assert "--hardware-price USD" in text and "--prices FILE" in text
    assert "389 M tokens/month" in text  # 150 tok/s x 2,592,000 s


def test_bench_summary_with_a_catalog_price(tmp_path):
    prices = tmp_path / "p.toml"
    prices.write_text('[[hardware]]\nname = "office-box"\npurchase_usd = 1000\n'
                      'match = ["Xeon Test"]\ndate = "2026-11"\nsource = "invoice"\n')
    text = bench_summary([result_row(weights="synthetic")], load_catalog([prices]))
    assert "office-box" in text and "break-even" in text and "no price known" not in text
    assert "SYNTHETIC" in text


def test_bench_summary_of_nothing_usable_is_empty():
    assert bench_summary([]) == ""
    assert bench_summary([result_row(total_throughput_tok_s=None,
                                     output_throughput_tok_s=None)]) == ""


def test_report_entry_points_give_an_svg(tmp_path):
    # What the HTML report calls: a frame in, a result and an inline SVG out.
    from harness.analysis.breakeven.model import analyse_frame
    from harness.analysis.breakeven.plot import cost_plot_svg
    from harness.results.files import load_frame

    path = write_csv(tmp_path / "g.csv", [result_row(gpu_name="NVIDIA H100 80GB HBM3",
                                                     gpu_count=1, total_throughput_tok_s=4000.0)])
    result = analyse_frame(load_frame([path]))
    assert [o["hardware"]["name"] for o in result["options"]] == ["h100-sxm", "runpod-h100-sxm"]
    svg = cost_plot_svg(result)
    assert svg.lstrip().startswith("<?xml") and "</svg>" in svg
    assert "h100-sxm" in svg


def test_rows_from_several_runs_are_noted(capsys, tmp_path):
    write_csv(tmp_path / "r1.csv", [result_row(run_id="r1", total_throughput_tok_s=90.0)])
    write_csv(tmp_path / "r2.csv", [result_row(run_id="r2", total_throughput_tok_s=110.0)])
    data = run_json(capsys, str(tmp_path), "--hardware-price", "1000")
    assert data["options"][0]["total_tok_s"] == 110.0
    assert any("rows from 2 runs" in n for n in data["notes"])


def test_bench_summary_skips_priced_hosted_api_runs():
    assert bench_summary([result_row(backend="openai", api_cost_usd=0.12)]) == ""


def test_pricing_one_machine_with_another_machines_entry_is_noted(capsys, sweep):
    data = run_json(capsys, str(sweep), "--hardware", "h100-sxm")
    assert any("h100-sxm prices throughput measured on Intel Xeon Test" in n
               for n in data["notes"])
