"""Capacity rows through the real command line: `harness bench --server command` starts
the project's fake OpenAI server (known timing) and the rows must tell the truth about
requests in flight, short outputs and the knee of `--concurrency auto`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from harness.results.files import read_rows

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def bench(tmp_path: Path, workload: str, server_args: str, *args: str) -> list[dict[str, Any]]:
    path = tmp_path / "w.toml"
    path.write_text(workload)
    out = tmp_path / "out"
    command = f"{sys.executable} -m harness.servers.fake --port {{port}} {server_args}"
    proc = subprocess.run([sys.executable, "-m", "harness", "bench", "--server", "command",
                           "--server-command", command, "--model", "fake-model",
                           "--workload", str(path), "--output", str(out), "--power", "none",
                           "--quiet", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    (csv_path,) = [p for p in out.glob("*/*.csv") if not p.name.startswith(".")]
    return read_rows(csv_path)


WORKLOAD = """
seed = 9
[[scenarios]]
name = "s"
input_tokens = 16
output_tokens = 16
requests = 4
warmup_requests = 1
"""


def test_c4_rows_hold_four_requests_in_flight(tmp_path: Path) -> None:
    rows = bench(tmp_path, WORKLOAD, "--ttft-ms 20 --itl-ms 10", "--concurrency", "1,4")
    by_c = {r["concurrency"]: r for r in rows}
    c1, c4 = by_c[1], by_c[4]
    assert c4["requests"] == 8  # max(4, 4 streams x 2 requests per stream)
    assert c4["concurrency_achieved_peak"] == 4
    assert 3.6 <= c4["concurrency_achieved_mean"] <= 4.0
    assert c4["capacity_ok"] == 1 and c1["capacity_ok"] == 1
    assert c1["concurrency_achieved_peak"] == 1
    assert c4["output_throughput_steady_tok_s"] is not None
    assert c4["steady_duration_s"] > 0 and c4["requests_per_stream"] == 2
    settings = json.loads(c4["settings_json"])
    assert settings["force_length"] == "both"  # the fake honours both fields
    assert "honoured" in settings["force_length_probe"]
    assert c4["short_outputs"] == 0


def test_too_few_requests_for_the_concurrency_is_refused_as_capacity(tmp_path: Path) -> None:
    text = WORKLOAD.replace("requests = 4", "requests = 2\nrequests_per_stream = 0")
    (row,) = bench(tmp_path, text, "--ttft-ms 20 --itl-ms 10", "--concurrency", "8")
    assert row["requests"] == 2 and row["concurrency_achieved_peak"] == 2
    assert row["capacity_ok"] == 0
    assert "requests in flight averaged" in row["notes"]
    assert "not a capacity measurement" in row["notes"]


def test_a_server_that_stops_early_is_flagged(tmp_path: Path) -> None:
    rows = bench(tmp_path, WORKLOAD, "--ttft-ms 5 --itl-ms 2 --stop-after 5 --honour none",
                 "--concurrency", "2")
    (row,) = rows
    settings = json.loads(row["settings_json"])
    assert settings["force_length"] == "none"
    assert "not honoured" in settings["force_length_probe"]
    assert row["short_outputs"] == row["requests"] == 4
    assert row["output_tokens"] == 4 * 5
    assert "4 of 4 requests produced fewer output tokens than asked for" in row["notes"]
    assert "finish_reason stop=4" in row["notes"]
    jsonl = next((tmp_path / "out").glob("*/*.requests.jsonl"))
    lines = [json.loads(t) for t in jsonl.read_text().splitlines()]
    assert {(x["finish_reason"], x["short_output"]) for x in lines} == {("stop", True)}


def test_concurrency_auto_marks_the_knee(tmp_path: Path) -> None:
    # A server with one slot: at c=2 a request waits a whole answer (16 x 30 ms) for its
    # first token, which breaks a 250 ms TTFT SLO; c=1 is the knee.
    rows = bench(tmp_path, WORKLOAD, "--ttft-ms 5 --itl-ms 30 --max-streams 1",
                 "--concurrency", "auto", "--slo-ttft-ms", "250")
    assert [r["concurrency"] for r in rows] == [1, 2]
    assert [r["knee"] for r in rows] == [1, 0]
    assert "knee of the concurrency sweep" in rows[0]["notes"]


def test_llama_cpp_in_process_says_it_serializes(tmp_path: Path) -> None:
    # The real llama.cpp engine on the default model: c=2 is served one at a time.
    path = tmp_path / "w.toml"
    path.write_text(WORKLOAD.replace("output_tokens = 16", "output_tokens = 4")
                    .replace("input_tokens = 16", "input_tokens = 8"))
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "harness", "bench", "--workload", str(path),
                           "--concurrency", "1,2", "--output", str(out), "--power", "none",
                           "--quiet"], cwd=ROOT, capture_output=True, text=True,
                          timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr
    (csv_path,) = [p for p in out.glob("*/*.csv") if not p.name.startswith(".")]
    c1, c2 = read_rows(csv_path)
    assert (c1["load_mode"], c1["capacity_ok"]) == ("closed", 1)
    assert (c2["load_mode"], c2["capacity_ok"]) == ("serial", 0)
    assert "serves 1 request(s) at a time in process" in c2["notes"]
    assert "not concurrency" in c2["notes"]
