"""Other tools' result files (real files made by vllm bench serve, guidellm and llama-bench,
see tests/data/imports/README.md) read as harness rows, and accepted by compare, report
and breakeven."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from harness.analysis.report import report
from harness.cli.main import main
from harness.results import imports
from harness.results.files import load_frame, rows_to_csv
from harness.results.schema import COLUMNS

DATA = Path(__file__).resolve().parents[2] / "data" / "imports"
VLLM_C4 = DATA / "vllm-bench-serve-c4.json"
GUIDELLM = DATA / "guidellm.json"
LLAMA_JSON = DATA / "llama-bench.json"


def _rows(path: Path) -> list[dict]:
    rows = imports.read_foreign(path)
    assert rows is not None, path
    return rows


def test_vllm_bench_serve_maps_onto_our_columns_with_its_own_figures():
    data = json.loads(VLLM_C4.read_text())
    (row,) = _rows(VLLM_C4)
    assert set(row) <= set(COLUMNS)
    assert row["source_tool"] == "vllm-bench-serve"
    assert row["load_mode"] == "closed" and row["concurrency"] == data["max_concurrency"] == 4
    assert row["requests"] == data["completed"] + data["failed"] and row["errors"] == 0
    assert row["input_tokens"] == data["total_input_tokens"]
    assert row["output_tokens"] == data["total_output_tokens"]
    assert row["output_throughput_tok_s"] == data["output_throughput"]
    assert row["total_throughput_tok_s"] == data["total_token_throughput"]
    assert row["ttft_ms_p99"] == data["p99_ttft_ms"]
    assert row["tpot_ms_mean"] == data["mean_tpot_ms"]  # same definition as ours
    assert row["itl_ms_p50"] == data["p50_itl_ms"]
    assert row["e2e_ms_p90"] == data["p90_e2el_ms"]
    assert row["model"] == "tiny" and row["backend"] == "openai"
    assert "ITL counts the gaps between streamed chunks" in row["notes"]
    assert "machine not recorded" in row["notes"]


def test_guidellm_maps_its_inter_token_latency_to_our_tpot_and_names_the_difference():
    data = json.loads(GUIDELLM.read_text())
    rows = _rows(GUIDELLM)
    assert [r["concurrency"] for r in rows] == [1, 2, 4]
    assert {r["source_tool"] for r in rows} == {"guidellm"}
    assert len({r["run_id"] for r in rows}) == 1  # one invocation, one run
    m = data["benchmarks"][2]["metrics"]
    r = rows[2]
    assert r["tpot_ms_mean"] == m["inter_token_latency_ms"]["successful"]["mean"]
    assert r["tpot_ms_mean"] != m["time_per_output_token_ms"]["successful"]["mean"]
    assert r["ttft_ms_p90"] == m["time_to_first_token_ms"]["successful"]["percentiles"]["p90"]
    assert r["e2e_ms_mean"] == pytest.approx(m["request_latency"]["successful"]["mean"] * 1000)
    assert r["output_tokens"] == m["output_token_count"]["successful"]["total_sum"]
    assert r["output_throughput_tok_s"] == m["output_tokens_per_second"]["successful"]["mean"]
    assert r["input_tokens_target"] == 64 and r["output_tokens_target"] == 32
    assert r["itl_ms_p50"] is None  # guidellm has no token-gap distribution
    assert "time_per_output_token_ms" in r["notes"] and "not our TPOT" in r["notes"]


def test_llama_bench_json_jsonl_and_csv_give_one_row_per_test():
    records = json.loads(LLAMA_JSON.read_text())
    rows = _rows(LLAMA_JSON)
    assert [r["scenario"] for r in rows] == ["pp64", "tg32", "pp64+tg32"]
    pp, tg, pg = rows
    assert pp["prefill_tok_s"] == records[0]["avg_ts"] and pp["output_throughput_tok_s"] is None
    assert tg["output_throughput_tok_s"] == records[1]["avg_ts"]
    assert tg["output_throughput_tok_s_std"] == records[1]["stddev_ts"]
    assert tg["repetitions"] == len(records[1]["samples_ts"]) == 5
    assert tg["tpot_ms_mean"] == pytest.approx(records[1]["avg_ns"] / 1e6 / 32)
    assert pg["total_throughput_tok_s"] == records[2]["avg_ts"]
    assert pg["output_throughput_tok_s"] == pytest.approx(32 / (records[2]["avg_ns"] / 1e9))
    assert pp["quant"] == "Q4_K_M" and pp["model_params"] == records[0]["model_n_params"]
    assert pp["cpu_model"] == records[0]["cpu_info"] and pp["engine"] == "llama.cpp"
    jsonl = _rows(DATA / "llama-bench.jsonl")
    csv_rows = _rows(DATA / "llama-bench.csv")
    assert [r["scenario"] for r in jsonl] == [r["scenario"] for r in csv_rows] == ["pp64", "tg32"]
    assert csv_rows[1]["repetitions"] is None and "CSV output has no samples" in \
        csv_rows[1]["notes"]


@pytest.mark.parametrize("text", ["{}", '{"benchmarks": []}', "[1, 2]", '{"rows": [1]}'])
def test_other_json_is_not_taken_for_a_tool_file(tmp_path, text):
    path = tmp_path / "x.json"
    path.write_text(text)
    assert imports.read_foreign(path) is None


def test_a_truncated_tool_file_is_one_line_naming_it(tmp_path, capsys):
    data = json.loads(VLLM_C4.read_text())
    data["total_output_tokens"] = {"not": "a number"}
    del data["backend"], data["model_id"]
    bad = tmp_path / "bad.json"
    data["max_concurrency"] = [4]
    bad.write_text(json.dumps(data))
    (row,) = imports.read_foreign(bad)  # unreadable fields stay empty, not invented
    assert row["output_tokens"] is None and row["concurrency"] is None
    broken = json.loads(GUIDELLM.read_text())
    del broken["benchmarks"][0]["metrics"]["time_to_first_token_ms"]
    broken["benchmarks"][1]["metrics"] = None
    (tmp_path / "g.json").write_text(json.dumps(broken))
    assert main(["compare", str(tmp_path / "g.json"), str(VLLM_C4)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "g.json" in err[0]


def test_machine_json_beside_the_file_gives_the_machine(tmp_path):
    folder = tmp_path / "results" / "box-1" / "vllm"
    folder.mkdir(parents=True)
    shutil.copy(VLLM_C4, folder)
    (folder.parent / "machine.json").write_text(json.dumps(
        {"machine_id": "box-1", "hostname": "box", "cpu_model": "AMD EPYC 9654",
         "gpu_name": "NVIDIA H100 80GB HBM3", "gpu_count": 1, "cpu_cores": 96}))
    (row,) = imports.read_foreign(folder / VLLM_C4.name)
    assert row["machine_id"] == "box-1" and row["gpu_name"] == "NVIDIA H100 80GB HBM3"
    assert "machine not recorded" not in row["notes"]


def test_load_frame_reads_a_folder_of_every_kind_and_skips_our_own_json(tmp_path):
    folder = tmp_path / "mixed"
    shutil.copytree(DATA, folder)
    (folder / "README.md").unlink()
    own = load_frame([folder])  # a run summary and companions beside them are skipped
    (folder / "20260101T000000Z-aaaaaa_smoke.json").write_text('{"run_id": "x", "rows": []}')
    (folder / "x.requests.jsonl").write_text('{"build_commit": 1, "avg_ts": 1}\n')
    frame = load_frame([folder])
    assert len(frame) == len(own) == 13
    assert set(frame["source_tool"]) == {"vllm-bench-serve", "guidellm", "llama-bench"}
    # our CSV and imported rows side by side; a written CSV of imports reads back the same
    csv_path = tmp_path / "ours.csv"
    rows = frame.drop(columns=["source_file"]).to_dict("records")
    csv_path.write_text(rows_to_csv([{k: (None if v != v else v) for k, v in r.items()}
                                     for r in rows]))
    again = load_frame([csv_path])
    assert list(again["source_tool"]) == list(frame["source_tool"])


def test_a_named_file_of_no_known_format_is_an_error(tmp_path, capsys):
    other = tmp_path / "other.json"
    other.write_text('{"hello": 1}')
    assert main(["compare", str(other), str(VLLM_C4)]) == 2
    err = capsys.readouterr().err
    assert "other.json" in err and "vllm bench serve" in err


def test_compare_aligns_vllm_bench_and_guidellm_on_the_same_server(capsys):
    files = [str(DATA / f"vllm-bench-serve-c{c}.json") for c in (1, 2, 4)]
    assert main(["compare", *files, str(GUIDELLM), "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [s["source_tool"] for s in out["sides"]] == ["vllm-bench-serve", "guidellm"]
    guidellm = {r["concurrency"]: r for r in out["rows"] if r["side"] == "B"
                and r["metric"] == "output_throughput_tok_s"}
    assert sorted(guidellm) == [1, 2, 4]  # each load level aligned across the two tools
    assert all(r["ratio"] is not None for r in guidellm.values())


def test_breakeven_and_report_accept_imported_files(tmp_path, capsys):
    assert main(["breakeven", str(DATA / "llama-bench.json"), "--hardware-price", "1600",
                 "--format", "json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert {o["scenario"] for o in result["options"]} == {"pp64", "tg32", "pp64+tg32"}
    rows = load_frame([DATA]).to_dict("records")
    html = report.build_report([{k: (None if v != v else v) for k, v in r.items()}
                                for r in rows])
    assert "vllm-bench-serve" in html and "guidellm" in html and "llama-bench" in html
