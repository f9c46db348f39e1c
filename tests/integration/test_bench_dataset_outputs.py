"""`harness bench` on a real HTTP server on loopback (`python -m harness.servers.fake`):
prompts from a dataset with the lengths it gives forced, labels, --format json/md, the
run summary JSON beside the CSV, p95 columns, and plain progress lines on a pipe."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


@pytest.fixture
def fake_server():
    # Answers end by themselves after 4 tokens unless the request forces its length.
    proc = subprocess.Popen([sys.executable, "-m", "harness.servers.fake", "--port", "0",
                             "--ttft-ms", "5", "--itl-ms", "1", "--stop-after", "4"],
                            cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("listening on "), line
        yield line.split()[-1]
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def bench(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness", "bench", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300, check=False,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_dataset_labels_json_summary_and_progress(tmp_path: Path, fake_server: str) -> None:
    (tmp_path / "prompts.jsonl").write_text(
        json.dumps({"prompt": "Explain the KV cache.", "output_tokens": 24}) + "\n"
        + json.dumps({"messages": [{"role": "system", "content": "Be brief."},
                                   {"role": "user", "content": "What is TTFT?"}],
                      "output_tokens": 12}) + "\n"
        + json.dumps({"prompt": "Define goodput."}) + "\n", encoding="utf-8")
    (tmp_path / "w.toml").write_text(
        'seed = 3\n[[scenarios]]\nname = "real"\ndataset = "prompts.jsonl"\n'
        'dataset_sample = "first"\noutput_tokens = 6\nrequests = 3\nrequests_per_stream = 0\n'
        'concurrency = [1, 2]\nwarmup_requests = 0\n', encoding="utf-8")
    proc = bench(tmp_path, "--backend", "openai", "--base-url", fake_server, "--model",
                 "fake-model", "--workload", "w.toml", "--output", "out", "--power", "none",
                 "--label", "team=infra", "--label", "site=lab", "--format", "json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout)  # stdout holds the summary and nothing else
    assert summary["kind"] == "harness-bench-run" and summary["status"] == "complete"
    assert summary["labels"] == {"team": "infra", "site": "lab"}
    assert summary["engine"]["backend"] == "openai"
    assert summary["settings"]["bench"]["label"] == {"team": "infra", "site": "lab"}
    assert summary["units"]["ttft_ms_p95"] == "ms"
    rows = summary["rows"]
    assert [(r["scenario"], r["concurrency"]) for r in rows] == [("real", 1), ("real", 2)]
    for r in rows:
        assert json.loads(r["labels"]) == {"site": "lab", "team": "infra"}
        assert r["dataset"].startswith(f"{tmp_path / 'prompts.jsonl'} (jsonl, 3 prompts; "
                                       "first entries")
        assert r["input_tokens_target"] is None and r["output_tokens_target"] is None
        assert r["requests"] == 3 and r["errors"] == 0
        # Forced lengths: 24 and 12 from the dataset, 6 from the scenario (the server
        # would stop each after 4 tokens otherwise).
        assert r["output_tokens"] == 24 + 12 + 6 and not r["short_outputs"]
        for name in ("ttft", "tpot", "itl", "e2e"):
            assert r[f"{name}_ms_p50"] <= r[f"{name}_ms_p95"] <= r[f"{name}_ms_p99"]
    folder = next((tmp_path / "out").iterdir())
    stem = f"{summary['run_id']}_w"
    assert json.loads((folder / f"{stem}.json").read_text()) == summary
    with open(folder / f"{stem}.csv", newline="") as f:
        csv_rows = list(csv.DictReader(f))
    assert [json.loads(r["labels"]) for r in csv_rows] == [{"site": "lab", "team": "infra"}] * 2
    assert all(r["ttft_ms_p95"] for r in csv_rows)
    per_request = [json.loads(line) for line in
                   (folder / f"{stem}.requests.jsonl").read_text().splitlines()]
    by_load = {}
    for rec in per_request:
        by_load.setdefault(rec["load"], []).append(rec)
    for recs in by_load.values():
        recs.sort(key=lambda r: int(r["request_id"].rsplit("/", 1)[1]))
        assert [r["output_tokens"] for r in recs] == [24, 12, 6]
        assert [r["target_output_tokens"] for r in recs] == [24, 12, 6]
        assert all(r["input_tokens"] > 0 for r in recs)  # the server's count of each prompt
    # Progress on a pipe: plain lines, one at the end of each load level.
    done = [ln for ln in proc.stderr.splitlines() if "(done)" in ln]
    assert [ln.split("]")[0] + "]" for ln in done] == ["[1/1 real c=1]", "[1/1 real c=2]"]
    assert all("3/3 requests" in ln for ln in done)


def test_markdown_and_table_formats(tmp_path: Path, fake_server: str) -> None:
    (tmp_path / "p.jsonl").write_text('{"prompt": "hello there", "output_tokens": 5}\n',
                                      encoding="utf-8")
    common = ["--backend", "openai", "--base-url", fake_server, "--model", "fake-model",
              "--workload", "smoke", "--dataset", "p.jsonl", "--output", "out", "--power",
              "none", "--quiet"]
    md = bench(tmp_path, *common, "--format", "md")
    assert md.returncode == 0, md.stderr[-3000:]
    lines = md.stdout.splitlines()
    assert lines[0].startswith("| scenario | load | ok/req | out tok/s |")
    assert lines[1].startswith("|---|---|")
    assert [ln.split("|")[1].strip() for ln in lines[2:4]] == ["prefill", "decode"]
    table = bench(tmp_path, *common)
    assert table.returncode == 0, table.stderr[-3000:]
    assert table.stdout.splitlines()[0].split()[:3] == ["scenario", "load", "ok/req"]
    assert "_smoke.json" in table.stdout  # the summary is among the files written
