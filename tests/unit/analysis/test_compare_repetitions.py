"""`compare` tests significance over repetitions, not pooled requests: per-repetition
values from the requests file beside each CSV, else the row's std with n = repetitions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.analysis import compare as cmp
from harness.analysis.stats import welch_t_test
from harness.cli.main import main
from harness.metrics import RequestRecord, scenario_summary
from harness.results.files import load_frame, read_request_records, rows_to_csv
from tests.support.result_factory import row

MS = 1_000_000


def records(run_id: str, rep_ttft_ms: list[float], per_rep: int = 20,
            failed_reps: tuple[int, ...] = ()) -> list[RequestRecord]:
    """Sequential requests (c=1): TTFT = the repetition's value +- 1 ms, then 31 tokens
    10 ms apart. Requests of one repetition agree closely; repetitions differ."""
    out, t = [], 0
    for rep, ttft in enumerate(rep_ttft_ms):
        for i in range(per_rep):
            r = RequestRecord(request_id=f"decode/c=1/{rep}/{i}", scenario="decode",
                              repetition=rep, send_ns=t, input_tokens=16, output_tokens=32)
            if rep in failed_reps:
                r.error = "http_500"
            else:
                first = t + int((ttft + (i % 3 - 1)) * MS)
                r.event_ns = [first + k * 10 * MS for k in range(32)]
                r.event_tokens = [1] * 32
                t = r.event_ns[-1]
            t += 1 * MS
            out.append(r)
    return out


def write_run(folder: Path, run_id: str, recs: list[RequestRecord]) -> Path:
    """A result CSV whose row is the runner's summary of `recs`, and its requests file."""
    reps = len({r.repetition for r in recs})
    summary = scenario_summary(recs)
    r = row("cpu", run_id, scenario="decode", repetitions=reps, **summary)
    folder.mkdir(parents=True, exist_ok=True)
    csv_path = folder / f"{run_id}_smoke.csv"
    csv_path.write_text(rows_to_csv([r]))
    with open(folder / f"{run_id}_smoke.requests.jsonl", "w") as f:
        for rec in recs:
            f.write(json.dumps({"run_id": run_id, "workload": "smoke", "load": "c=1",
                                **rec.to_json()}) + "\n")
    return csv_path


A, B = "20260101T000000Z-aaaaaa", "20260102T000000Z-bbbbbb"


def test_run_to_run_noise_is_not_a_regression_though_pooled_requests_say_it_is(tmp_path,
                                                                                 capsys):
    # TTFT by repetition: A 100, 115, 95 ms; B 112, 128, 118 ms: B's mean is 15.5% higher,
    # but its repetitions overlap A's. Sixty requests a side, each within 1 ms of its
    # repetition, made the pooled test call it certain.
    base = write_run(tmp_path / "a", A, records(A, [100, 115, 95]))
    new = write_run(tmp_path / "b", B, records(B, [112, 128, 118]))
    rows = cmp.clean_rows(load_frame([base, new]).to_dict("records"))
    a, b = rows
    assert b["ttft_ms_mean"] / a["ttft_ms_mean"] == pytest.approx(1.155, abs=0.002)
    pooled = welch_t_test(a["ttft_ms_mean"], a["ttft_ms_std"], 60,
                          b["ttft_ms_mean"], b["ttft_ms_std"], 60)
    assert pooled is not None and pooled.p_value < 1e-6  # the old, pooled verdict

    rc = main(["compare", str(new), "--baseline", str(base), "--metric", "ttft_ms_mean",
               "--fail-on-regression", "10", "--format", "json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and out["regressions"] == []
    (cell,) = [r for r in out["rows"] if not r["is_baseline"]]
    assert cell["verdict"] == cmp.VERDICT_NOISE and cell["p_value"] > 0.05
    assert cell["n"] == 3 and cell["spread_basis"] == cmp.BASIS_REPETITIONS
    assert cell["change_pct"] == pytest.approx(15.5, abs=0.2)


def test_a_slowdown_in_every_repetition_is_a_regression(tmp_path, capsys):
    base = write_run(tmp_path / "a", A, records(A, [100, 102, 98]))
    new = write_run(tmp_path / "b", B, records(B, [130, 133, 128]))
    rc = main(["compare", str(new), "--baseline", str(base), "--metric",
               "ttft_ms_mean,ttft_ms_p99", "--fail-on-regression", "10"])
    captured = capsys.readouterr()
    assert rc == 1
    assert "ttft_ms_mean +30" in captured.err and "ttft_ms_p99" in captured.err


def test_percentiles_are_testable_from_the_requests_file_only(tmp_path):
    base = write_run(tmp_path / "a", A, records(A, [100, 102, 98]))
    (r,) = cmp.clean_rows(load_frame([base]).to_dict("records"))
    assert cmp._sample(r, "ttft_ms_p99")[2] == 0  # a row alone has no spread for it
    cmp.attach_repetitions([r], {str(base): read_request_records(base)})
    value, std, n, basis, tested = cmp._sample(r, "ttft_ms_p99")
    assert (n, basis) == (3, cmp.BASIS_REPETITIONS) and std > 0
    assert tested == pytest.approx((101 + 103 + 99) / 3, abs=0.1)  # each repetition's p99


def test_without_requests_file_the_row_std_counts_repetitions_not_requests(tmp_path):
    csv_path = write_run(tmp_path / "a", A, records(A, [100, 115, 95]))
    csv_path.with_name(f"{A}_smoke.requests.jsonl").unlink()
    assert read_request_records(csv_path) is None
    (r,) = cmp.clean_rows(load_frame([csv_path]).to_dict("records"))
    assert cmp.attach_repetitions([r], {str(csv_path): None}) == 0
    value, std, n, basis, _ = cmp._sample(r, "ttft_ms_mean")
    assert n == 3 and basis == cmp.BASIS_ROW_REQUESTS  # was n = 60 requests
    assert std == pytest.approx(r["ttft_ms_std"])
    assert cmp._sample(r, "output_throughput_tok_s")[2:4] == (3, cmp.BASIS_ROW_REPETITIONS)


def test_a_failed_repetition_is_a_zero_in_the_per_repetition_throughput():
    recs = [json.loads(json.dumps(x.to_json()))
            for x in records(A, [100, 100, 100], per_rep=2, failed_reps=(1,))]
    values = cmp.repetition_values(recs)
    assert len(values["output_throughput_tok_s"]) == 3
    assert values["output_throughput_tok_s"][1] == 0.0
    assert len(values["ttft_ms_mean"]) == 2  # no latency from a repetition of failures


def test_records_are_matched_to_their_row_by_run_scenario_and_load():
    recs = [{"run_id": A, "scenario": "decode", "load": load, "repetition": 0}
            for load in ("c=1", "c=4", "rate=2/s")]
    assert cmp.row_records({"run_id": A, "scenario": "decode", "concurrency": 4}, recs) \
        == [recs[1]]
    assert cmp.row_records({"run_id": A, "scenario": "decode", "concurrency": 4,
                            "request_rate_rps": 2.0}, recs) == [recs[2]]
    assert cmp.row_records({"run_id": B, "scenario": "decode", "concurrency": 1}, recs) == []
    # a batch row's concurrency is its request count, not the load label
    batch = [{"run_id": A, "scenario": "s", "load": "c=1", "repetition": 0}]
    assert cmp.row_records({"run_id": A, "scenario": "s", "concurrency": 64,
                            "load_mode": "batch"}, batch) == batch
    assert cmp.record_from_json({"scenario": "s"}) is None  # not a request record


def test_holm_adjusted_p_values_by_hand():
    from harness.analysis.stats import holm_adjust

    # sorted: 0.005 x 4 = 0.02, 0.01 x 3 = 0.03, 0.03 x 2 = 0.06, 0.04 x 1 = 0.04 -> 0.06
    assert holm_adjust([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm_adjust([]) == []


def test_one_run_is_one_family_of_tests():
    """A change significant on its own (p ~ 0.02) among three tests of the run is not a
    regression: the gate asks whether anything regressed, so the run's p-values are
    Holm-adjusted together."""
    base = [row("cpu", A, throughput=100.0, throughput_std=5.0, repetitions=3)]
    other = [row("cpu", B, throughput=85.0, throughput_std=5.0, repetitions=3)]
    alone = cmp.compare(cmp.build_sides(base + other, None, []),
                        ["output_throughput_tok_s"], 10).lines[0].cells[1]
    assert alone.verdict == cmp.VERDICT_REGRESSION and 0.01 < alone.p_value < 0.05
    c = cmp.compare(cmp.build_sides(base + other, None, []),
                    ["output_throughput_tok_s", "ttft_ms_mean", "tpot_ms_mean"], 10)
    cell = c.lines[0].cells[1]
    assert cell.p_value == pytest.approx(alone.p_value)
    assert cell.p_adjusted == pytest.approx(3 * alone.p_value)  # the smallest of three
    assert cell.verdict == cmp.VERDICT_NOISE and c.regressions == []
