"""Which result row the break-even prices: rows that cannot be capacity are refused
(errors, partial, noisy, too few in flight), then the best row meeting the SLO, else the
knee, else the fastest (SLOs judged at p90, as the saturation sweep judges its knee); the
output says which row and why. And energy per token from the
energy above idle over the tokens of the same power window."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from harness.analysis.breakeven.model import (
    Assumptions,
    Economics,
    cost_model,
    measured_from_row,
    refusal_reasons,
    select_measurements,
    with_power,
)
from harness.cli.main import main
from harness.errors import CheckFailed, UserError
from tests.support.result_factory import row, write_csv


def sweep(**per_c: dict[str, Any]) -> list[dict[str, Any]]:
    """A decode sweep at c=1, 2, 4, 8: throughput 100, 180, 300, 330 tok/s, TTFT p99
    growing with load; `per_c={"c8": {...}}` changes one row."""
    rows = []
    for c, tps, ttft in ((1, 100.0, 40.0), (2, 180.0, 60.0), (4, 300.0, 120.0),
                         (8, 330.0, 400.0)):
        rows.append(row("h100", concurrency=c, throughput=tps, ttft_ms=ttft,
                        **per_c.get(f"c{c}", {})))
    return rows


def pick(rows: list[dict[str, Any]], **kw: Any) -> tuple[Any, list[str]]:
    (m,), notes = select_measurements(pd.DataFrame(rows), **kw)
    return m, notes


@pytest.mark.parametrize("bad, reason", [
    ({"errors": 1}, "1 of 12 requests failed"),
    ({"status": "partial"}, "partial (interrupted)"),
    ({"noisy": 1, "load_avg_1m": 7.5}, "machine busy (noisy=1, load average 7.5)"),
    ({"capacity_ok": 0, "concurrency_achieved_mean": 3.1}, "capacity_ok=0 (3.1 in flight"),
    ({"concurrency_achieved_mean": 7.1}, "7.1 in flight on average for c=8 (< 90%)"),
])
def test_the_fastest_row_is_refused_when_it_cannot_be_capacity(bad, reason):
    m, notes = pick(sweep(c8=bad))
    assert m.concurrency == 4  # the next fastest usable row
    assert m.selection == "fastest"
    assert reason in m.selection_reason and "decode c=8" in m.selection_reason
    assert any("1 row(s) refused as capacity" in n and reason in n for n in notes)


def test_achieved_concurrency_at_90_percent_and_capacity_ok_are_accepted():
    m, notes = pick(sweep(c8={"concurrency_achieved_mean": 7.2}))
    assert m.concurrency == 8
    # capacity_ok, where a file has it, decides over the mean
    m, _ = pick(sweep(c8={"capacity_ok": 1, "concurrency_achieved_mean": 2.0}))
    assert m.concurrency == 8


def test_files_without_the_in_flight_columns_are_accepted_with_a_note():
    rows = sweep()
    for r in rows:
        r.pop("capacity_ok", None)
        r.pop("concurrency_achieved_mean", None)
    m, notes = pick(rows)
    assert m.concurrency == 8
    assert any("4 row(s): no achieved-concurrency columns" in n for n in notes)
    assert refusal_reasons(rows[0]) == ([], ["no achieved-concurrency columns (file older "
                                             "than them): requests in flight not checked"])


def test_best_row_meeting_the_rows_own_slo_on_p90():
    # The saturation sweep judges its knee by p90, and so does the break-even: c=4's TTFT
    # p50 is 120 ms, its p90 144 ms, so an SLO of 130 ms is missed and c=2 (p90 72 ms)
    # is priced.
    rows = sweep()
    for r in rows:
        r.update(slo_ttft_ms=130.0, slo_tpot_ms=50.0)
    m, _ = pick(rows)
    assert m.concurrency == 2 and m.selection == "best meeting the SLO"
    assert "the fastest of 2 row(s) meeting the SLO (TTFT p90 72 <= 130 ms, TPOT p90 11 <= " \
           "50 ms)" in m.selection_reason


def test_the_knee_when_no_row_meets_the_slo_else_the_fastest():
    rows = sweep(c4={"knee": 1})
    for r in rows:
        r.update(slo_ttft_ms=10.0)
    m, _ = pick(rows)
    assert m.concurrency == 4 and m.selection == "knee"
    assert "no row meets the SLO (fastest: TTFT p90 480 > 10 ms)" in m.selection_reason
    assert "the knee of the sweep (knee=1)" in m.selection_reason
    m, _ = pick(sweep())
    assert m.concurrency == 8 and m.selection == "fastest"
    assert "no SLO recorded; no knee marked: the fastest usable row" in m.selection_reason


def test_a_refused_knee_is_not_priced():
    m, _ = pick(sweep(c4={"knee": 1, "noisy": 1}))
    assert m.concurrency == 8 and m.selection == "fastest"


def test_every_row_refused_is_one_error_naming_the_reasons():
    rows = [dict(r, noisy=1) for r in sweep()]
    rows[0]["errors"] = 3
    with pytest.raises(UserError, match=r"no result row can be priced as capacity \("
                                        r"failed requests: 1; machine busy: 4\)"):
        select_measurements(pd.DataFrame(rows))


def test_slos_given_on_the_command_line_still_demand_a_row():
    with pytest.raises(CheckFailed, match="no result row meets TTFT p90 <= 5 ms"):
        select_measurements(pd.DataFrame(sweep()), slo_ttft_ms=5.0)
    m, _ = pick(sweep(), slo_ttft_ms=100.0)
    assert m.concurrency == 2  # p90 72 ms; c=4 has 144 ms


def test_command_prints_the_row_used_and_why(capsys, tmp_path: Path):
    path = write_csv(tmp_path / "m" / "run_smoke.csv", sweep(c8={"errors": 2}, c4={"knee": 1}))
    assert main(["breakeven", str(path), "--hardware-price", "30000"]) == 0
    out = capsys.readouterr().out
    assert "Rows used" in out and "knee" in out
    assert "decode c=4 (run 20260101T000000Z-aaaaaa): no SLO recorded; the knee" in out
    assert "refused: decode c=8" in out and "2 of 12 requests failed" in out
    assert main(["breakeven", str(path), "--hardware-price", "30000", "--format",
                 "json"]) == 0
    (o,) = json.loads(capsys.readouterr().out)["options"]
    assert o["selection"] == "knee" and o["concurrency"] == 4
    assert "2 of 12 requests failed" in o["selection_reason"]


# ------------------------------------------------------------------ energy per token

def test_energy_per_token_is_above_idle_energy_over_the_same_windows_tokens():
    # 100 tok/s total and 300 W load / 100 W idle would say 2 J per token; but the power
    # window (all repetitions and the gaps between them) held 1,800 J above idle for
    # the row's 1,800 tokens: 1 J per token is what the energy counter says.
    r = row("h100", throughput=200 / 3, requests=36, avg_power_w=300.0, idle_power_w=100.0,
            energy_above_idle_j=1800.0, power_method="measured")
    assert r["input_tokens"] + r["output_tokens"] == 36 * 48
    r.update(input_tokens=600, output_tokens=1200)
    m = measured_from_row(r)
    assert m.total_tok_s == pytest.approx(100.0)
    assert m.above_idle_j_per_token == pytest.approx(1.0)
    econ = Economics(name="x", kind="owned", purchase_usd=3600, amortize_months=36,
                     electricity_usd_per_kwh=0.36)
    model = cost_model(m, econ)
    assert model.marginal_usd_per_mtok == pytest.approx(1e6 / 3.6e6 * 0.36)  # $0.10/M
    # power given on the command line has no window of its own: load - idle over
    # throughput, (300 - 100) / 100 = 2 J per token
    flagged = with_power(m, Assumptions(power_w=300.0, idle_power_w=100.0), None)
    assert flagged.above_idle_j_per_token is None
    assert cost_model(flagged, econ).marginal_usd_per_mtok == pytest.approx(0.2)


def test_idle_above_load_adds_no_energy():
    r = row("h100", avg_power_w=100.0, idle_power_w=120.0, energy_above_idle_j=-50.0)
    assert measured_from_row(r).above_idle_j_per_token == 0.0
