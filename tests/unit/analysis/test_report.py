"""harness report: a self-contained page with every section; synthetic rows marked; the
charts drawn by matplotlib and inlined as SVG (one mark with a tooltip per value)."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from harness.analysis.report import report
from harness.analysis.report.charts import (
    BarGroup,
    Panel,
    Series,
    hbar_chart,
    line_chart,
    xy_chart,
)
from harness.cli.main import main
from harness.format import fmt
from tests.support.result_factory import run_rows, write_csv

A = "20260101T000000Z-aaaaaa"
G = "20260102T000000Z-gggggg"


def _rows():
    return (run_rows("cpu", A)
            + run_rows("h100", G, scale=20, weights="synthetic", energy=0.05))


def _stub_plot(result) -> str:
    """A stand-in for the matplotlib plot (drawing it takes seconds)."""
    return '<svg xmlns="http://www.w3.org/2000/svg"><rect width="1" height="1"/></svg>'


@pytest.fixture(autouse=True)
def _fast_without_breakeven_plot(request, monkeypatch):
    """Drawing the break-even plot (matplotlib) takes seconds; only its own test draws it."""
    if "breakeven_plot_is_inlined" not in request.node.name:
        monkeypatch.setattr(report, "cost_plot_svg", _stub_plot)


def _svgs(html: str) -> list[str]:
    return re.findall(r"<svg\b.*?</svg>", html, flags=re.DOTALL)


SVG = "{http://www.w3.org/2000/svg}"


def _marks(svg: str) -> list[ET.Element]:
    return [e for e in ET.fromstring(svg).iter() if e.get("class") == "mark"]


def test_charts_are_well_formed_svg_with_one_mark_and_tooltip_per_value():
    svg = line_chart("t", [Series("a", [(1, 10, 1), (4, 30, None)]),
                           Series("b", [(1, 12, None), (2, float("nan"), None)])], "x", "y")
    marks = _marks(svg)
    assert len(marks) == 3  # the NaN point is not drawn
    tips = sorted(m.find(f"{SVG}title").text for m in marks)
    assert tips == ["a: x 1 → 10 ±1", "a: x 4 → 30", "b: x 1 → 12"]
    svg = hbar_chart("t", ["A c=1", "B c=1"], [BarGroup("p50", [1.0, 2.0]),
                                               BarGroup("p99", [3.0, None])], "ms")
    assert len(_marks(svg)) == 3
    assert "n/a" in svg
    assert "<script" not in svg and "<?xml" not in svg and "<!DOCTYPE" not in svg


def test_xy_chart_draws_both_panels_with_labelled_points():
    series = [Series("A", [(100, 50, None), (180, 90, None)], labels=["c=1", "c=4"])]
    svg = xy_chart("lat", [Panel("TTFT p99 (ms)", series), Panel("TPOT p99 (ms)", series)],
                   "output tokens/s")
    tips = [m.find(f"{SVG}title").text for m in _marks(svg)]
    assert len(tips) == 4
    assert "A c=4: output tokens/s 180, TTFT p99 (ms) 90" in tips
    assert svg.count(">c=4<") == 2  # the label beside each panel's point


def test_chart_ids_are_unique_within_a_page_and_references_stay_internal():
    html = report.build_report(_rows())
    ids = re.findall(r'\bid="([^"]+)"', html)
    assert ids and len(ids) == len(set(ids))
    refs = re.findall(r'url\(#([^)]+)\)', html) + re.findall(r'href="#([^"]+)"', html)
    assert refs and set(refs) <= set(ids)


def test_log_scale_chosen_when_values_span_more_than_30x():
    flat = line_chart("t", [Series("a", [(1, 10, None)]), Series("b", [(1, 50, None)])], "x", "y")
    wide = line_chart("t", [Series("a", [(1, 10, None)]), Series("b", [(1, 900, None)])], "x",
                      "y")
    assert "log scale" not in flat and "log scale" in wide


def test_report_has_every_section_and_no_external_resources():
    html = report.build_report(_rows(), generated_utc="2026-01-01 00:00 UTC")
    for heading in ("Machines", "Throughput against concurrency", "Latency percentiles",
                    "Energy per token", "Break-even against API prices", "Comparison",
                    "All rows"):
        assert f"<h2>{heading}</h2>" in html
    assert "<script" not in html.lower()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    assert "@import" not in html and not re.search(r"url\((?!#)", html)  # only #ids
    # 2 scenarios: 2 throughput, 2 latency-vs-throughput, 2x2 percentile charts, and
    # J per output token against concurrency for both scenarios of the run with energy
    kinds = re.findall(r'<figure class="chart[^"]*" data-kind="([^"]+)"', html)
    assert kinds.count("throughput-closed") == 2
    assert kinds.count("latency-throughput") == 2
    assert kinds.count("latency-ttft_ms") == 2 and kinds.count("latency-tpot_ms") == 2
    assert kinds.count("energy") == 2
    for svg in _svgs(html):
        ET.fromstring(svg)  # each chart is well-formed XML


def test_report_machines_table_lists_both_machines():
    html = report.build_report(_rows())
    table = html.split("<h2>Machines</h2>", 1)[1].split("<h2>", 1)[0]
    assert "cpubox" in table and "gpubox" in table
    assert "NVIDIA H100 80GB HBM3" in table and "Intel Xeon 8480" in table
    assert "driver 550.54" in table


def test_synthetic_rows_are_marked_in_tables_and_charts():
    html = report.build_report(_rows())
    assert "synthetic (random-weight) models" in html  # banner
    machines = html.split("<h2>Machines</h2>", 1)[1].split("<h2>", 1)[0]
    assert machines.count('class="badge syn"') == 1  # only the H100 run
    rows = html.split("<h2>All rows</h2>", 1)[1]
    assert rows.count('class="badge syn"') == 4  # its four rows
    thr = html.split("<h2>Throughput against concurrency</h2>", 1)[1].split("<h2>", 1)[0]
    assert "[synthetic]" in thr and "stroke-dasharray" in thr  # dashed line
    energy = html.split("<h2>Energy per token</h2>", 1)[1].split("<h2>", 1)[0]
    assert "[synthetic]" in energy


def test_real_only_report_has_no_synthetic_marks():
    html = report.build_report(run_rows("cpu", A) + run_rows("cpu", G, scale=0.9))
    assert "synthetic" not in html.lower().replace("synthetic (random-weight)", "")


def test_no_energy_rows_explain_why():
    html = report.build_report(run_rows("cpu", A))
    assert "No energy figures" in html and "unavailable" in html
    assert 'data-kind="energy"' not in html
    assert "One run only" in html


def test_a_plot_that_cannot_be_drawn_is_said(monkeypatch):
    def no_matplotlib(result):
        raise ImportError("No module named 'matplotlib'")

    monkeypatch.setattr(report, "cost_plot_svg", no_matplotlib)
    svg, text, note = report.breakeven_section(run_rows("cpu", A))
    assert svg is None and text  # the table is still there
    assert note == "break-even plot not drawn: No module named 'matplotlib'"


def test_breakeven_plot_is_inlined_when_available(monkeypatch):
    html = report.build_report(_rows())
    assert 'data-kind="breakeven"' in html
    section = html.split("<h2>Break-even against API prices</h2>", 1)[1].split("<h2>", 1)[0]
    assert "<?xml" not in section and "<!DOCTYPE" not in section
    assert len(_svgs(section)) == 1


def test_comparison_section_marks_regressions():
    html = report.build_report(run_rows("cpu", A) + run_rows("cpu", G, scale=0.8))
    section = html.split("<h2>Comparison</h2>", 1)[1].split("<h2>", 1)[0]
    assert section.count('class="bad">REGRESSION') == 12  # 4 rows x 3 metrics


def test_cli_writes_report_and_rejects_bad_input(tmp_path, capsys):
    write_csv(tmp_path / "res" / "a.csv", run_rows("cpu", A))
    out = tmp_path / "out" / "r.html"
    assert main(["report", str(tmp_path / "res"), "-o", str(out)]) == 0
    assert out.read_text().startswith("<!DOCTYPE html>")
    assert "wrote" in capsys.readouterr().out
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty"), "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "holds no result CSV" in err[0]
    assert main(["report", str(tmp_path / "res"), "-o", str(tmp_path)]) == 2
    assert "is a folder" in capsys.readouterr().err


def _section(html: str, heading: str) -> str:
    return html.split(f"<h2>{heading}</h2>", 1)[1].split("<h2>", 1)[0]


def test_latency_against_throughput_has_one_line_per_run_across_the_sweep():
    rows = run_rows("cpu", A) + run_rows("cpu", G, scale=0.8)
    html = report.build_report(rows)
    section = _section(html, "Latency against throughput")
    decode = [f for f in section.split("<figure")[1:] if "decode: p99 latency" in f]
    assert len(decode) == 1
    tips = re.findall(r"<title>([^<]+)</title>", decode[0])
    by_run = {r["concurrency"]: r for r in rows if r["scenario"] == "decode"
              and r["run_id"] == A}
    for conc, r in by_run.items():  # each level of run A: its throughput and both p99s
        tps = fmt(r["output_throughput_tok_s"], "num")
        assert any(t.startswith("A · cpubox") and f"c={conc}:" in t and "output tokens/s" in t
                   and tps in t and fmt(r["ttft_ms_p99"], "num") in t
                   for t in tips), (conc, tips)
        assert any(f"c={conc}:" in t and fmt(r["tpot_ms_p99"], "num") in t
                   for t in tips)
    assert len(tips) == 2 * 2 * 2  # 2 runs x 2 levels x (TTFT, TPOT)


def test_energy_per_output_token_against_concurrency_where_measured():
    html = report.build_report(_rows())
    section = _section(html, "Energy per token")
    tips = re.findall(r"<title>([^<]+)</title>", section)
    gpu = [r for r in _rows() if r.get("j_per_output_token") is not None]
    assert len(tips) == len(gpu) == 4  # the CPU run has no energy figure: no line
    assert all("concurrency" in t and "measured via nvml" in t and "0.05" in t for t in tips)


def test_without_matplotlib_the_report_says_so_and_keeps_its_tables(monkeypatch):
    monkeypatch.setattr(report, "missing", lambda: "matplotlib is not installed (pip ...)")
    html = report.build_report(_rows())
    assert "Charts not drawn: matplotlib is not installed" in html
    assert 'data-kind="throughput-closed"' not in html
    assert "<h2>All rows</h2>" in html and html.count("<tr>") > 8


def test_imported_rows_are_named_with_their_tool_and_notes():
    from harness.results.files import load_frame

    frame = load_frame([Path(__file__).resolve().parents[2] / "data" / "imports"
                        / name for name in ("vllm-bench-serve-c1.json",
                                            "vllm-bench-serve-c4.json", "guidellm.json")])
    rows = [{k: (None if v != v else v) for k, v in r.items()}
            for r in frame.drop(columns=["source_file"]).to_dict("records")]
    html = report.build_report(rows)
    assert "measured by vllm-bench-serve" in _section(html, "Machines")
    assert "via guidellm" in _section(html, "Latency against throughput")
    notes = html.split("notes of imported rows", 1)[1]
    assert "ITL counts the gaps between streamed chunks" in notes
    assert "not our TPOT" in notes
