"""Result CSVs in the pre-release layout (schema_version 0) load as the current schema."""

from __future__ import annotations

import csv

import pytest

from harness.cli.main import main
from harness.results.files import load_frame, read_rows
from harness.results.schema import COLUMNS, SCHEMA_VERSION, V0_RENAMES, migrate
from tests.support.result_factory import run_rows, write_csv

# A pre-release (version 0) file, as its writer laid it out: units before percentiles,
# short throughput names, a 0/1 synthetic flag, no finished_at_utc/status columns.
V0_HEADER = ["schema_version", "run_id", "started_at_utc", "machine_id", "hostname",
             "cpu_model", "cpu_cores", "gpu_name", "gpu_count", "backend", "engine_version",
             "model", "model_sha256", "quant", "synthetic", "settings_json", "workload",
             "scenario", "load_mode", "concurrency", "rate_rps", "input_tokens_target",
             "output_tokens_target", "repetitions", "warmup_requests", "requests", "errors",
             "output_tok_s", "output_tok_s_std", "total_tok_s", "ttft_mean_ms", "ttft_std_ms",
             "ttft_p50_ms", "ttft_p99_ms", "tpot_mean_ms", "tpot_std_ms", "itl_p99_ms",
             "energy_per_token_j"]


def _v0_file(path, scenario="decode", tps="96.5", synthetic="0"):
    values = ["0", "20250601T000000Z-old000", "20250601T000000Z", "cpubox-1a2b3c4d", "cpubox",
              "Intel Xeon 8480", "2", "", "0", "llamacpp", "0.3.30", "Gemma 3 270m",
              "ab" * 32, "Q4_K_M", synthetic, '{"n_ctx": 512, "n_threads": 2}', "smoke",
              scenario, "closed", "1", "", "16", "32", "3", "1", "12", "0", tps, "1.5",
              "140.0", "41.0", "2.0", "40.5", "52.0", "9.1", "0.3", "12.5", "0.25"]
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(V0_HEADER)
        w.writerow(values)
    return path


def test_v0_row_migrates_renamed_columns_with_types(tmp_path):
    rows = read_rows(_v0_file(tmp_path / "old.csv"))
    assert len(rows) == 1
    r = rows[0]
    assert r["schema_version"] == SCHEMA_VERSION
    assert r["output_throughput_tok_s"] == 96.5
    assert r["output_throughput_tok_s_std"] == 1.5
    assert r["total_throughput_tok_s"] == 140.0
    assert r["ttft_ms_mean"] == 41.0 and r["ttft_ms_p50"] == 40.5 and r["ttft_ms_p99"] == 52.0
    assert r["tpot_ms_std"] == 0.3 and r["itl_ms_p99"] == 12.5
    assert r["j_per_output_token"] == 0.25
    assert r["weights"] == "real"
    assert r["request_rate_rps"] is None
    assert not set(V0_RENAMES) & set(r) and "synthetic" not in r
    assert set(COLUMNS) <= set(r)


def test_v0_synthetic_flag_becomes_weights(tmp_path):
    r = read_rows(_v0_file(tmp_path / "old.csv", synthetic="1"))[0]
    assert r["weights"] == "synthetic"


def test_migrate_keeps_current_rows_and_rejects_future_versions():
    row = {"schema_version": SCHEMA_VERSION, "output_throughput_tok_s": 5.0}
    assert migrate(dict(row))["output_throughput_tok_s"] == 5.0
    with pytest.raises(ValueError, match="newer"):
        migrate({"schema_version": SCHEMA_VERSION + 1})


def test_load_frame_mixes_v0_and_current_files(tmp_path):
    (tmp_path / "old").mkdir()
    _v0_file(tmp_path / "old" / "a.csv")
    write_csv(tmp_path / "new" / "b.csv", run_rows("cpu", "20260102T000000Z-bbbbbb"))
    frame = load_frame([tmp_path / "old", tmp_path / "new"])
    assert set(frame["schema_version"]) == {SCHEMA_VERSION}
    old = frame[frame["run_id"] == "20250601T000000Z-old000"].iloc[0]
    assert old["output_throughput_tok_s"] == 96.5


def test_compare_old_schema_file_against_new(tmp_path, capsys):
    (tmp_path / "old").mkdir()
    old = _v0_file(tmp_path / "old" / "a.csv", tps="100.0")
    new = write_csv(tmp_path / "new" / "b.csv",
                    [r for r in run_rows("cpu", "20260102T000000Z-bbbbbb")
                     if r["scenario"] == "decode" and r["concurrency"] == 1])
    assert main(["compare", str(old), str(new), "--metric", "output_throughput_tok_s",
                 "--format", "json"]) == 0
    import json

    doc = json.loads(capsys.readouterr().out)
    base = [r for r in doc["rows"] if r["side"] == "A"]
    assert base and base[0]["value"] == 100.0
