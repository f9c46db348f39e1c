"""`harness breakeven` on what `make bench` writes on llama.cpp: two CSVs in one folder, the
in-process single-stream rows and a llama-server concurrency sweep of the same model
file. The capacity row (the sweep's) is priced by default and the output names it: file,
how it was served, concurrency, throughput; the single-stream row is not priced, and
says so. `--concurrency 1` prices the c=1 rows of both.

The CSVs are FIXTURES: rows made by tests/support/result_factory (the schema's columns,
written by the real CSV writer) with made-up figures, not measurements."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from harness.analysis.breakeven.model import select_measurements, served_by
from harness.cli.main import main
from harness.results.files import load_frame
from tests.support.result_factory import row, write_csv

SHA = "cd" * 32
SERVER_SETTINGS = {"server": {"kind": "llama-server", "n_parallel": 8, "argv": "llama-server"}}


def in_process_rows(run_id: str = "20260101T000000Z-inproc", sha: str = SHA
                    ) -> list[dict[str, Any]]:
    """FIXTURE: the in-process llamacpp run of `make bench`: c=1 per scenario; a c=4 row
    that queued (load_mode=serial, capacity_ok=0), as the runner writes it."""
    rows = []
    for scenario, tps in (("tg128", 60.0), ("pp512", 2.0)):
        rows.append(row("cpu", run_id, scenario=scenario, concurrency=1, throughput=tps,
                        workload="default", model="Gemma 3 270m", model_sha256=sha,
                        capacity_ok=1, concurrency_achieved_mean=1.0))
    rows.append(row("cpu", run_id, scenario="tg128", concurrency=4, throughput=61.0,
                    workload="default", model="Gemma 3 270m", model_sha256=sha,
                    load_mode="serial", capacity_ok=0, concurrency_achieved_mean=1.0))
    return rows


def server_rows(run_id: str = "20260101T000500Z-server", sha: str = SHA
                ) -> list[dict[str, Any]]:
    """FIXTURE: the llama-server sweep of `make bench` (--concurrency auto): openai backend,
    the managed server's kind in settings_json, the knee marked at c=4."""
    rows = []
    for scenario, per_c in (("tg128", ((1, 55.0, 0), (2, 63.0, 0), (4, 110.0, 1),
                                       (8, 112.0, 0))),
                            ("pp512", ((1, 1.9, 0), (2, 2.1, 1), (4, 2.1, 0)))):
        for c, tps, knee in per_c:
            rows.append(row("cpu", run_id, scenario=scenario, concurrency=c, throughput=tps,
                            workload="default", backend="openai",
                            engine="llama.cpp (llama-server)", model="gemma-3-270m-q4_k_m",
                            model_sha256=sha, settings=SERVER_SETTINGS, knee=knee,
                            capacity_ok=1, concurrency_achieved_mean=float(c)))
    return rows


def make_bench_folder(tmp_path: Path, sha_server: str = SHA) -> tuple[Path, Path, Path]:
    folder = tmp_path / "results" / "cpubox-1a2b3c4d"
    one = write_csv(folder / "20260101T000000Z-inproc_default.csv", in_process_rows())
    many = write_csv(folder / "20260101T000500Z-server_default.csv",
                     server_rows(sha=sha_server))
    return tmp_path / "results", one, many


def test_the_capacity_row_wins_over_the_single_stream_row(tmp_path: Path) -> None:
    folder, one, many = make_bench_folder(tmp_path)
    measured, notes = select_measurements(load_frame([folder]))
    by_scenario = {m.scenario: m for m in measured}
    assert sorted(by_scenario) == ["pp512", "tg128"]  # one priced row per scenario
    tg = by_scenario["tg128"]
    assert (tg.concurrency, tg.selection, tg.source_file) == (4, "knee", str(many))
    assert tg.served_by == "--server llama-server (openai backend)"
    assert "priced instead of the single-stream row(s) of the same model on this machine " \
           f"(tg128 c=1, llama.cpp in process, 60 out tok/s, {one})" in tg.selection_reason
    pp = by_scenario["pp512"]
    assert (pp.concurrency, pp.source_file) == (2, str(many))
    assert any(n.startswith("scenario 'tg128': the capacity row (tg128 c=4, --server "
                            "llama-server (openai backend), 110 out tok/s") for n in notes)


def test_the_command_prints_the_row_used(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    folder, one, many = make_bench_folder(tmp_path)
    assert main(["breakeven", str(folder), "--hardware-price", "2000"]) == 0
    out = capsys.readouterr().out
    table = out[out.index("Rows used"):out.index("Break-even volume")]
    lines = [ln for ln in table.splitlines() if "llama-server" in ln and "knee" in ln]
    assert len(lines) == 2, table  # tg128 at c=4 and pp512 at c=2, both from the sweep
    tg = next(ln for ln in lines if "tg128 c=4" in ln)
    for cell in ("--server llama-server (openai backend)", " 4 ", "110", str(many)):
        assert cell in tg, (cell, tg)
    assert f"instead of the single-stream row(s) of the same model on this machine (tg128 " \
           f"c=1, llama.cpp in process, 60 out tok/s, {one})" in " ".join(tg.split())
    assert main(["breakeven", str(folder), "--hardware-price", "2000", "--format",
                 "json"]) == 0
    options = json.loads(capsys.readouterr().out)["options"]
    assert {(o["scenario"], o["served_by"], o["concurrency"], o["output_tok_s"],
             o["source_file"]) for o in options} == {
        ("tg128", "--server llama-server (openai backend)", 4, 110.0, str(many)),
        ("pp512", "--server llama-server (openai backend)", 2, 2.1, str(many))}


def test_concurrency_1_prices_both_c1_rows(tmp_path: Path) -> None:
    folder, one, many = make_bench_folder(tmp_path)
    measured, _ = select_measurements(load_frame([folder]), concurrency=1)
    tg = sorted((m.served_by, m.source_file) for m in measured if m.scenario == "tg128")
    assert tg == [("--server llama-server (openai backend)", str(many)),
                  ("llama.cpp in process", str(one))]


def test_single_stream_rows_alone_are_still_priced() -> None:
    (m, _), notes = select_measurements(pd.DataFrame(in_process_rows()))
    assert {m.scenario, _.scenario} == {"tg128", "pp512"}
    assert m.served_by == "llama.cpp in process" and m.concurrency == 1
    assert not any("capacity row" in n for n in notes)


def test_a_different_model_file_is_not_replaced(tmp_path: Path) -> None:
    folder, one, many = make_bench_folder(tmp_path, sha_server="ef" * 32)
    measured, notes = select_measurements(load_frame([folder]))
    assert sorted((m.scenario, m.served_by) for m in measured) == [
        ("pp512", "--server llama-server (openai backend)"), ("pp512", "llama.cpp in process"),
        ("tg128", "--server llama-server (openai backend)"), ("tg128", "llama.cpp in process")]
    assert not any("capacity row" in n for n in notes)


@pytest.mark.parametrize("fields,expected", [
    ({"backend": "llamacpp"}, "llama.cpp in process"),
    ({"backend": "vllm"}, "vLLM in process"),
    ({"backend": "openai", "engine": "openai-compatible"}, "openai backend (openai-compatible)"),
    ({"backend": "openai", "settings_json": json.dumps({"server": {"kind": "vllm"}})},
     "--server vllm (openai backend)"),
    ({"backend": "openai", "settings_json": "not json"}, "openai backend"),
])
def test_served_by(fields: dict[str, Any], expected: str) -> None:
    assert served_by(fields) == expected
