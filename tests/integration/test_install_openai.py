"""Install for what you use: a fresh venv with `pip install -e '.[openai]'` (no compiler,
no llama.cpp) runs `harness bench --backend openai ... --dataset prompts.jsonl --format
json` against a loopback server, and `env`, `compare`, `breakeven`, `report`.

The venv is made here with this machine's pip configuration (its index, or PyPI), as a
new user would; it takes a minute or two.
"""

from __future__ import annotations

import json
import os
import subprocess
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = sorted((ROOT / "results" / "reference").rglob("*_smoke.csv"))
pytestmark = pytest.mark.slow


def run(cmd: list[str], cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)


@pytest.fixture(scope="module")
def fresh_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    where = tmp_path_factory.mktemp("venv") / "v"
    venv.EnvBuilder(with_pip=True).create(where)
    py = where / "bin" / "python"
    proc = run([str(py), "-m", "pip", "install", "--quiet", "-e", f"{ROOT}[openai]"],
               where.parent, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return where


def test_openai_install_has_no_llama_cpp_and_benches_a_dataset(fresh_venv: Path,
                                                                tmp_path: Path) -> None:
    py, harness = fresh_venv / "bin" / "python", str(fresh_venv / "bin" / "harness")
    absent = run([str(py), "-c", "import llama_cpp"], tmp_path)
    assert absent.returncode != 0 and "No module named 'llama_cpp'" in absent.stderr
    # Importing every command loads no engine (llama_cpp, vllm, torch) nor gguf.
    probe = run([str(py), "-c",
                 "import sys, importlib; importlib.import_module('harness.cli.main')"
                 ".build_parser(); print(sorted({m.split('.')[0] for m in sys.modules} & "
                 "{'llama_cpp', 'vllm', 'torch', 'gguf', 'matplotlib'}))"], tmp_path)
    assert probe.returncode == 0 and probe.stdout.strip() == "[]", probe.stderr[-2000:]

    env_out = run([harness, "env"], tmp_path)
    assert env_out.returncode == 0, env_out.stderr[-2000:]
    assert "openai     installed" in env_out.stdout
    assert "llamacpp   'llama_cpp' not installed" in env_out.stdout
    assert "to add llamacpp: pip install -e '.[llamacpp]'" in env_out.stdout

    server = subprocess.Popen([str(py), "-m", "harness.servers.fake", "--port", "0",
                               "--ttft-ms", "5", "--itl-ms", "1"], cwd=tmp_path,
                              stdout=subprocess.PIPE, text=True)
    try:
        line = server.stdout.readline()
        assert line.startswith("listening on "), line
        base_url = line.split()[-1]
        (tmp_path / "prompts.jsonl").write_text(
            '{"prompt": "What limits decode speed on a CPU?", "output_tokens": 16}\n'
            '{"messages": [{"role": "user", "content": "Define TTFT."}], '
            '"output_tokens": 8}\n', encoding="utf-8")
        proc = run([harness, "bench", "--backend", "openai", "--base-url", base_url,
                    "--model", "fake-model", "--dataset", "prompts.jsonl", "--format", "json"],
                   tmp_path)
        again = run([harness, "bench", "--backend", "openai", "--base-url", base_url,
                     "--model", "fake-model", "--dataset", "prompts.jsonl", "--format", "md"],
                    tmp_path)
    finally:
        server.terminate()
        server.wait(timeout=10)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout)
    assert summary["engine"]["backend"] == "openai"
    assert [r["scenario"] for r in summary["rows"]] == ["pp512", "tg128", "chat-short"]
    for row in summary["rows"]:
        assert row["errors"] == 0 and row["requests"] > 0
        assert row["dataset"].startswith(str(tmp_path / "prompts.jsonl"))
        assert row["output_tokens"] % 8 == 0  # every request a forced 16 or 8 tokens
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.startswith("| scenario | load |")
    first, second = sorted((tmp_path / "results").rglob("*_default.csv"))

    report = run([harness, "report", str(tmp_path / "results"), "-o",
                  str(tmp_path / "r.html")], tmp_path)
    assert report.returncode == 0, report.stderr[-2000:]
    assert "pp512" in (tmp_path / "r.html").read_text()
    compare = run([harness, "compare", "--baseline", str(first), str(second)], tmp_path)
    assert compare.returncode == 0, compare.stderr[-2000:]
    assert "pp512" in compare.stdout
    breakeven = run([harness, "breakeven", str(REFERENCE[0]), "--format", "json"], tmp_path)
    assert breakeven.returncode == 0, breakeven.stderr[-2000:]
    assert json.loads(breakeven.stdout)

