"""The one number formatter, `harness.format.fmt`, unit by unit, on hand-picked values:
the forms the break-even text, the bench table, the energy label, the report, the charts
and `harness model` printed before they all went through it."""

from __future__ import annotations

import pytest

from harness.format import MISSING, fmt, render
from harness.power.columns import joules_label


@pytest.mark.parametrize("value", [None, "", float("nan")])
@pytest.mark.parametrize("unit", [None, "usd", "mtok", "j", "ms", "num", "params"])
def test_missing_values_are_a_dash_in_every_unit(value, unit):
    assert fmt(value, unit) == MISSING == "-"


def test_table_cells_without_a_unit():
    assert fmt(12.345) == "12.3" and fmt(12.345, digits=2) == "12.35"
    assert fmt(1234.5) == "1,234" and fmt(-2500.0) == "-2,500"
    assert fmt(7) == "7" and fmt("c=8") == "c=8"  # ints and text unchanged


@pytest.mark.parametrize("value,text", [(6000.0, "$6,000"), (196.67, "$197"),
                                        (7.0, "$7.00"), (1.5, "$1.50"),
                                        (0.15, "$0.15"), (0.012345, "$0.0123")])
def test_dollars(value, text):
    assert fmt(value, "usd") == text


@pytest.mark.parametrize("value,text", [(28.1, "28.1 M"), (7.776, "7.78 M"),
                                        (500.0, "500 M"), (12345.6, "12,346 M")])
def test_millions_of_tokens(value, text):
    assert fmt(value, "mtok") == text


@pytest.mark.parametrize("value,text", [(0.0, "0"), (0.5, "0.5"), (1.234, "1.23"),
                                        (1.5, "1.5"), (12.34, "12.3"), (99.96, "100"),
                                        (123.4, "123"), (1234.5, "1,234"),
                                        (0.012345, "0.0123"), ("45.67", "45.7")])
def test_short_form_of_other_units(value, text):
    assert fmt(value, "num") == fmt(value, "ms") == fmt(value, "tok_s") == text


def test_joules_per_token_and_parameter_counts():
    assert fmt(0.012345, "j") == "0.0123" and fmt(15.5, "j") == "15.5"
    assert joules_label({"j_per_output_token": 0.012345, "power_method": "estimated"}) == (
        "0.0123 est")
    assert joules_label({"j_per_output_token": "nan"}) == "-"
    assert fmt(98_000_000, "params") == "98.0 M" and fmt(268_098_176, "params") == "0.27 B"


def test_tables_round_their_cells_through_fmt():
    text = render(["name", "tok/s"], [["a", 1234.5], ["b", None]])
    assert text.splitlines() == ["name  tok/s", "----  -----", "a     1,234", "b         -"]
