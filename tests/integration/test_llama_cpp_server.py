"""`harness bench --server llama-cpp-python`: the managed-server code starts
`llama_cpp.server` on loopback with the default model (Gemma 3 270M), the `openai`
backend streams from it at concurrency 1 and 4, and the result files are checked.
llama_cpp.server sends no usage in streams, so N_out comes from the GGUF's tokenizer."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

WORKLOAD = """description = "managed llama_cpp.server, tiny"
seed = 5
[defaults]
warmup_requests = 1
repetitions = 1
requests = 4
[[scenarios]]
name = "short"
input_tokens = 24
output_tokens = 8
"""


@pytest.mark.slow
def test_bench_through_a_managed_llama_cpp_server(tmp_path):
    pytest.importorskip("llama_cpp.server")
    wl = tmp_path / "short.toml"
    wl.write_text(WORKLOAD)
    out_dir = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-m", "harness", "bench", "--server", "llama-cpp-python",
         "--workload", str(wl), "--concurrency", "1,4", "--n-threads", "1",
         "--output", str(out_dir), "--power", "none", "--quiet"],
        cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stderr[-3000:]

    (csv_path,) = list(out_dir.glob("*/*.csv"))
    rows = list(csv.DictReader(csv_path.open()))
    assert [r["concurrency"] for r in rows] == ["1", "4"]
    for row in rows:
        # c=4 sends 2 requests per stream (requests_per_stream), so all 4 stay busy.
        n = 4 if row["concurrency"] == "1" else 8
        assert row["backend"] == "openai"
        assert row["engine"] == "llama.cpp (llama_cpp.server)"
        assert row["model"] == "gemma-3-270m-Q4_K_M" and row["quant"] == "Q4_K_M"
        assert len(row["model_sha256"]) == 64
        assert row["requests"] == str(n) and row["errors"] == "0", row["error_kinds"]
        # include_usage was asked for; llama_cpp.server sent none: the tokenizer counted.
        assert row["token_count_source"] == "tokenizer"
        # min_tokens forces the length; re-tokenizing the text gives the same count.
        assert row["output_tokens"] == str(n * 8)
        settings = json.loads(row["settings_json"])
        argv = settings["server"]["argv"]
        assert "--logits_all False" in argv and "--interrupt_requests False" in argv
        assert "--chat_format gemma" in argv
        assert float(row["ttft_ms_p50"]) > 0 and float(row["tpot_ms_p50"]) > 0

    (jsonl,) = list(out_dir.glob("*/*.requests.jsonl"))
    records = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert len(records) == 4 + 8 and all(r["ok"] for r in records)
    for r in records:
        assert r["token_count_source"] == "tokenizer" and r["output_tokens"] == 8
        assert sum(r["event_tokens"]) == 8  # one token per chunk from this server
    # At concurrency 4 the client had requests in flight together (the server queues
    # them: --interrupt_requests False means none was cut short).
    c4 = sorted((r["send_ns"], r["event_ns"][-1]) for r in records if r["load"] == "c=4")
    assert any(c4[i + 1][0] < c4[i][1] for i in range(len(c4) - 1))

    (log,) = list(out_dir.glob("*/*.server.log"))
    text = log.read_text()
    assert "llama_cpp.server" in text and "Uvicorn running" in text
