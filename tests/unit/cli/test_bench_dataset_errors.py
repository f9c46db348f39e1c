"""`harness bench --dataset` with bad input: one line naming the file, the line and the
fix, exit code 2, before any request is sent (the endpoint here does not even exist)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.cli.main import main

ROOT = Path(__file__).resolve().parents[3]
NOWHERE = ["--backend", "openai", "--base-url", "http://127.0.0.1:9/v1", "--model", "m",
           "--power", "none", "--quiet"]


@pytest.mark.parametrize("name,text,where,words", [
    ("p.jsonl", '{"prompt": "ok"}\n{"prompt": "x",}\n', "p.jsonl:2: ", "not valid JSON"),
    ("p.jsonl", "", "p.jsonl: ", "holds no prompts"),
    ("p.jsonl", '{"question": "no prompt"}\n', "p.jsonl:1: ", "no 'prompt' or 'messages'"),
    ("s.json", '[\n {"conversations": [{"from": "human", "value": "a"}]},\n {"x": 1}\n]\n',
     "s.json:3: ", "a ShareGPT item needs 'conversations'"),
])
def test_bad_dataset_is_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture,
                                            name: str, text: str, where: str,
                                            words: str) -> None:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    rc = main(["bench", *NOWHERE, "--dataset", str(path), "--output", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    lines = [ln for ln in err if ln.startswith("harness bench: error:")]
    assert len(lines) == 1, err
    assert f"{tmp_path}/{where}" in lines[0] and words in lines[0]
    assert not (tmp_path / "out").exists()  # nothing was measured or written


def test_missing_dataset_names_the_flag(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    rc = main(["bench", *NOWHERE, "--dataset", str(tmp_path / "none.jsonl")])
    assert rc == 2
    assert "dataset not found" in capsys.readouterr().err


def test_hub_id_offline_without_cache(tmp_path: Path) -> None:
    """A hub id that is not in the cache, offline: one line saying so (a fresh process,
    as a user sets HF_HUB_OFFLINE before starting the harness)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "HF_HOME": str(tmp_path / "hf")}
    proc = subprocess.run(
        [sys.executable, "-m", "harness", "bench", *NOWHERE,
         "--dataset", "hf:nobody-here/no-such-dataset:test"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("harness bench: error:")]
    assert len(errors) == 1, proc.stderr[-2000:]
    assert "hf:nobody-here/no-such-dataset:test: cannot load as a Hugging Face dataset" \
        in errors[0] and "Hugging Face cache" in errors[0]
