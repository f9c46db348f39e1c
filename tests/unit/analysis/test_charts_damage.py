"""A damaged result value (1e300 tok/s, a huge error bar) is left out of a chart instead
of overflowing matplotlib's axis arithmetic: the chart is still drawn."""

from __future__ import annotations

import pytest

from harness.analysis.report.charts import BarGroup, Series, hbar_chart, line_chart

pytest.importorskip("matplotlib")


def test_huge_values_are_not_plotted_and_the_chart_is_drawn():
    svg = line_chart("t", [Series("s", [(1, 1e300, None), (2, 3.0, 1e300), (4, 5.0, 0.5)])],
                     "concurrency", "tok/s")
    assert svg.count('class="mark"') == 2  # the 1e300 point is left out, the rest drawn
    svg = hbar_chart("t", ["p50", "p99"], [BarGroup("g", [1e300, 5.0])], "ms")
    assert svg.count('class="mark"') == 1
