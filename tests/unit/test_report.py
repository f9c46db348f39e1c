"""harness report: a self-contained page with every section; synthetic rows marked."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest

from harness.analysis.report import report
from harness.analysis.report.charts import (
    BarGroup,
    Series,
    hbar_chart,
    line_chart,
    log_ticks,
    nice_ticks,
)
from harness.cli.main import main
from tests.result_factory import run_rows, write_csv

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


def test_nice_and_log_ticks():
    assert nice_ticks(9.3) == [0, 2, 4, 6, 8, 10]
    assert nice_ticks(1234)[-1] >= 1234
    assert log_ticks(30, 4000) == [20, 50, 100, 200, 500, 1000, 2000, 5000]
    assert log_ticks(0.5, 2e5) == [0.1, 1, 10, 100, 1000, 10000, 1e5, 1e6]


def test_charts_are_well_formed_svg_with_one_mark_per_value():
    svg = line_chart("t", [Series("a", [(1, 10, 1), (4, 30, None)]),
                           Series("b", [(1, 12, None)])], "x", "y")
    root = ET.fromstring(svg)
    marks = [e for e in root.iter() if e.get("class") == "mark"]
    assert len(marks) == 3
    svg = hbar_chart("t", ["A c=1", "B c=1"], [BarGroup("p50", [1.0, 2.0]),
                                               BarGroup("p99", [3.0, None])], "ms")
    root = ET.fromstring(svg)
    assert len([e for e in root.iter() if e.get("class") == "mark"]) == 3
    assert "n/a" in svg


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
    # 2 scenarios: 2 throughput charts + 2x2 latency charts + 1 energy chart
    kinds = re.findall(r'<figure class="chart[^"]*" data-kind="([^"]+)"', html)
    assert kinds.count("throughput-closed") == 2
    assert kinds.count("latency-ttft_ms") == 2 and kinds.count("latency-tpot_ms") == 2
    assert kinds.count("energy") == 1
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
    assert "[synthetic]" in thr and 'stroke-dasharray="6 4"' in thr
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
