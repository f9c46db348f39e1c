"""The run summary JSON (`<run>_<workload>.json`): context once, every row with every
column, units read from the column names; written beside the CSV after every row."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.metrics import RequestRecord, scenario_summary
from harness.results.files import RunFiles
from harness.results.schema import COLUMNS
from harness.results.summary import SUMMARY_KIND, run_summary, unit_of, units
from tests.support.result_factory import MACHINES, row

MS = 1_000_000


@pytest.mark.parametrize("column,unit", [
    ("ttft_ms_p95", "ms"), ("itl_ms_p50", "ms"), ("e2e_ms_std", "ms"), ("duration_s", "s"),
    ("output_throughput_tok_s", "tok/s"), ("output_throughput_tok_s_std", "tok/s"),
    ("decode_tok_s", "tok/s"), ("request_rate_rps", "requests/s"), ("goodput_rps", "requests/s"),
    ("energy_j", "J"), ("avg_power_w", "W"), ("peak_rss_mb", "MB"), ("ram_gb", "GB"),
    ("api_cost_usd", "USD"), ("server_kv_cache_usage_peak_pct", "%"),
    ("input_tokens", "tokens"), ("shared_prefix_tokens", "tokens"),
    ("j_per_output_token", "J/token"), ("tokens_per_kwh", "tokens/kWh"),
    ("requests", None), ("concurrency", None), ("model", None), ("labels", None),
    ("started_at_utc", None), ("load_avg_1m", None),
])
def test_units_from_column_suffixes(column: str, unit: str | None) -> None:
    assert unit_of(column) == unit


def test_every_schema_column_with_a_unit_suffix_gets_one() -> None:
    got = units(COLUMNS)
    for c in COLUMNS:
        if c.endswith(("_ms", "_s", "_w", "_j", "_mb", "_usd")):
            assert c in got, c


def test_summary_holds_context_once_and_every_column_of_every_row() -> None:
    rows = [row(scenario="decode", labels='{"team": "infra"}'),
            row(scenario="prefill", status="partial", extra_col=1.5)]
    s = run_summary(rows, run_id="r1", workload="smoke", machine=MACHINES["cpu"],
                    engine={"backend": "llamacpp"}, settings={"bench": {"concurrency": (1, 4)}},
                    labels={"team": "infra"})
    assert s["kind"] == SUMMARY_KIND and s["run_id"] == "r1" and s["status"] == "partial"
    assert s["labels"] == {"team": "infra"} and s["machine"]["cpu_model"] == "Intel Xeon 8480"
    assert s["settings"]["bench"]["concurrency"] == [1, 4]
    assert [r["scenario"] for r in s["rows"]] == ["decode", "prefill"]
    for r in s["rows"]:
        assert list(r)[:len(COLUMNS)] == COLUMNS and "extra_col" in r
    assert s["units"]["ttft_ms_p95"] == "ms"
    json.dumps(s, allow_nan=False)  # strict JSON


def test_nan_becomes_null() -> None:
    s = run_summary([row(ttft_ms_p95=float("nan"))], run_id="r", workload="w", machine={})
    assert s["rows"][0]["ttft_ms_p95"] is None


def test_run_files_write_the_summary_beside_the_csv(tmp_path: Path) -> None:
    machine = dict(MACHINES["cpu"])
    files = RunFiles(tmp_path, machine, "20260101T000000Z-abcdef", "smoke")
    files.summary_context = {"engine": {"backend": "openai"}, "labels": {"gpu": "none"},
                             "settings": {"bench": {"dataset": "p.jsonl"}}}
    files.add_row(row(scenario="decode", labels='{"gpu": "none"}'))
    files.add_row(row(scenario="prefill", labels='{"gpu": "none"}'))
    files.close()
    path = tmp_path / machine["machine_id"] / "20260101T000000Z-abcdef_smoke.json"
    assert path == files.summary_path and path in files.written()
    data = json.loads(path.read_text())
    assert data["labels"] == {"gpu": "none"} and data["engine"] == {"backend": "openai"}
    assert [r["scenario"] for r in data["rows"]] == ["decode", "prefill"]
    assert data["rows"][0]["labels"] == '{"gpu": "none"}'
    assert data["files"]["csv"] == "20260101T000000Z-abcdef_smoke.csv"


def _record(i: int, ttft_ms: float) -> RequestRecord:
    r = RequestRecord(request_id=f"r{i}", scenario="s", repetition=0, send_ns=0,
                      input_tokens=10)
    r.event_ns = [int(ttft_ms * MS), int((ttft_ms + 10) * MS)]
    r.event_tokens = [1, 1]
    r.output_tokens = 2
    return r


def test_p95_beside_p50_p90_p99() -> None:
    # TTFT 1..100 ms: linear interpolation between ranks puts p95 at rank 94.05 → 95.05 ms.
    summary = scenario_summary([_record(i, float(i)) for i in range(1, 101)])
    assert summary["ttft_ms_p50"] == pytest.approx(50.5)
    assert summary["ttft_ms_p95"] == pytest.approx(95.05)
    assert summary["ttft_ms_p99"] == pytest.approx(99.01)
    assert summary["e2e_ms_p95"] == pytest.approx(105.05)
    assert summary["tpot_ms_p95"] == pytest.approx(10.0)
    assert summary["itl_ms_p95"] == pytest.approx(10.0)
    for name in ("ttft", "tpot", "itl", "e2e"):
        assert f"{name}_ms_p95" in COLUMNS
