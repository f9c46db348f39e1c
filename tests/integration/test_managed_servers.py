"""Managed servers and the `openai` backend through `harness bench`, with real processes:
the project's SSE server (`python -m harness.servers.fake`) as the managed command, and
commands that never become healthy, exit early, or ignore SIGTERM. No model needed."""

from __future__ import annotations

import asyncio
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.config.settings import bench_settings
from harness.errors import UserError
from harness.models.resolve import default_model
from harness.servers.kinds import (
    SERVER_KINDS,
    llama_cpp_python_spec,
    register_server_kind,
)
from harness.servers.kinds import managed_server_for as _managed_server_for
from harness.servers.managed import ManagedServer, ServerSpec, _mask_secrets
from workloads.spec import context_tokens, load_workload


def managed_server_for(values: dict) -> ManagedServer:
    return _managed_server_for(bench_settings(values), 512)

ROOT = Path(__file__).resolve().parents[2]
HARNESS = [sys.executable, "-m", "harness"]
SSE = f"{sys.executable} -m harness.servers.fake --port {{port}} --ttft-ms 2 --itl-ms 1"

WORKLOAD = """description = "tiny"
seed = 1
[defaults]
warmup_requests = 0
repetitions = 1
requests = 6
[[scenarios]]
name = "tiny"
input_tokens = 8
output_tokens = 5
"""


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); read its state.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except OSError:
        return False
    return state != "Z"


def bench(tmp_path: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    wl = tmp_path / "tiny.toml"
    wl.write_text(WORKLOAD)
    return subprocess.run([*HARNESS, "bench", "--workload", str(wl), "--output",
                           str(tmp_path / "out"), "--power", "none", "--quiet", *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
                          env={**os.environ, **(env or {})})


def rows(tmp_path: Path) -> list[dict]:
    files = list((tmp_path / "out").glob("*/*.csv"))
    assert len(files) == 1, files
    return list(csv.DictReader(files[0].open()))


def records(tmp_path: Path) -> list[dict]:
    (path,) = list((tmp_path / "out").glob("*/*.requests.jsonl"))
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_command_server_is_started_benchmarked_and_stopped(tmp_path):
    result = bench(tmp_path, "--server", "command", "--server-command", SSE,
                   "--concurrency", "1,3")
    assert result.returncode == 0, result.stderr
    out = rows(tmp_path)
    assert [r["concurrency"] for r in out] == ["1", "3"]
    for r in out:
        assert r["backend"] == "openai" and r["model"] == "fake-model"
        assert r["requests"] == "6" and r["errors"] == "0"
        assert r["token_count_source"] == "engine" and r["output_tokens"] == "30"
    (log,) = list((tmp_path / "out").glob("*/*.server.log"))
    assert "harness.servers.fake" in log.read_text()


def test_rate_sweep_runs_open_loop_and_records_send_lag(tmp_path):
    result = bench(tmp_path, "--server", "command", "--server-command", SSE,
                   "--rate", "20,40")
    assert result.returncode == 0, result.stderr
    out = rows(tmp_path)
    assert [(r["load_mode"], r["request_rate_rps"]) for r in out] == [("open", "20"),
                                                                       ("open", "40")]
    assert all(r["send_lag_ms_p99"] not in ("", None) for r in out)
    lags = [rec["send_lag_ms"] for rec in records(tmp_path)]
    assert len(lags) == 12 and all(lag is not None and lag >= 0 for lag in lags)


def test_slo_flags_give_goodput(tmp_path):
    result = bench(tmp_path, "--server", "command", "--server-command", SSE,
                   "--slo-ttft-ms", "0.001")
    assert result.returncode == 0, result.stderr
    (row,) = rows(tmp_path)
    assert row["slo_ttft_ms"] == "0.001" and float(row["goodput_rps"]) == 0.0
    assert float(row["request_throughput_rps"]) > 0


def test_a_server_that_dies_mid_run_gives_error_records_and_the_run_goes_on(tmp_path):
    cmd = SSE + " --exit-after 3"  # three streams answered, then the process is gone
    result = bench(tmp_path, "--server", "command", "--server-command", cmd,
                   "--force-length", "none")  # no length probe: it would be a stream too
    assert result.returncode == 0, result.stderr
    (row,) = rows(tmp_path)
    assert row["requests"] == "6" and row["errors"] == "3", (row["error_kinds"], row["notes"])
    assert "connection=3" in row["error_kinds"] or "stream_cut" in row["error_kinds"]
    kept = [r for r in records(tmp_path) if r["ok"]]
    assert len(kept) == 3 and all(r["output_tokens"] == 5 for r in kept)


def _one_line_exit_2(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    return result.stderr


def test_bad_input_wrong_base_url(tmp_path):
    err = _one_line_exit_2(bench(tmp_path, "--backend", "openai", "--base-url",
                                 "http://127.0.0.1:9/v1", "--model", "m"))
    assert "cannot connect" in err and err.count("\n") == 1


def test_bad_input_missing_key_variable(tmp_path):
    env = {"HARNESS_NO_SUCH_KEY": ""}
    err = _one_line_exit_2(bench(tmp_path, "--backend", "openai", "--base-url",
                                 "https://api.example.invalid/v1", "--model", "m",
                                 "--api-key-env", "HARNESS_NO_SUCH_KEY", env=env))
    assert "HARNESS_NO_SUCH_KEY" in err and err.count("\n") == 1


def test_bad_input_model_not_served(tmp_path):
    err = _one_line_exit_2(bench(tmp_path, "--server", "command", "--server-command", SSE,
                                 "--model", "other-model"))
    assert "'other-model' is not served" in err and "fake-model" in err


def test_bad_input_server_never_healthy_shows_its_log_tail(tmp_path):
    cmd = "sh -c 'echo loading weights on port {port}; sleep 30'"
    err = _one_line_exit_2(bench(tmp_path, "--server", "command", "--server-command", cmd,
                                 "--server-timeout", "1.5"))
    first = err.splitlines()[0]
    assert "not healthy after 1.5 s" in first
    assert "loading weights on port" in err


def test_server_that_exits_early_is_reported_with_its_code():
    server = managed_server_for({"server": "command",
                                 "server_command": "sh -c 'echo bad flag {port}; exit 3'"})
    with pytest.raises(UserError) as err:
        asyncio.run(server.__aenter__())
    assert "exited with code 3" in str(err.value) and "bad flag" in str(err.value)


def test_stop_sends_sigterm_then_sigkill():
    ignores_term = ("sh -c 'trap \"\" TERM; exec " + sys.executable +
                    " -m harness.servers.fake --port {port}'")
    server = managed_server_for({"server": "command", "server_command": ignores_term})

    async def go() -> ManagedServer:
        await server.__aenter__()
        return server
    asyncio.run(go())
    assert server.model == "fake-model" and server.pid and alive(server.pid)
    code = server.stop(grace_s=0.5)
    assert code == -9 and not alive(server.pid)
    polite = managed_server_for({"server": "command", "server_command": SSE})
    asyncio.run(polite.__aenter__())
    assert polite.stop() == -15 and not alive(polite.pid)  # SIGTERM was enough


def test_unknown_server_kind_and_missing_command():
    with pytest.raises(UserError, match="Did you mean 'vllm'"):
        managed_server_for({"server": "vlm"})
    with pytest.raises(UserError, match="--server-command"):
        managed_server_for({"server": "command"})
    with pytest.raises(UserError, match=r"\{port\}"):
        managed_server_for({"server": "command", "server_command": "my-server"})


def test_secrets_in_server_command_lines_are_masked():
    argv = ["srv", "--api-key", "sk-1234567890", "--api_token=abc123456", "--port", "80"]
    assert _mask_secrets(argv) == ["srv", "--api-key", "***", "--api_token=***", "--port",
                                   "80"]


def test_llama_cpp_python_command_line_has_the_honest_flags():
    pytest.importorskip("llama_cpp.server")
    path = default_model()
    spec = llama_cpp_python_spec(
        bench_settings({"n_threads": 3, "engine": {"server_args": ["--verbose", "False"]}}),
        context_tokens(load_workload("smoke")), 12345)
    argv = " ".join(spec.argv)
    assert spec.base_url == "http://127.0.0.1:12345/v1" and spec.model == path.stem
    for flag in ("-m llama_cpp.server", f"--model {path}", "--logits_all False",
                 "--interrupt_requests False", "--chat_format gemma", "--port 12345",
                 "--host 127.0.0.1", "--n_threads 3", "--n_threads_batch 3"):
        assert flag in argv, flag
    assert argv.endswith("--verbose False") and spec.tokenizer == str(path)
    assert spec.info["engine_version"] and spec.info["model_path"] == str(path)
    # [engine] chat_format wins over the choice made from the GGUF's metadata.
    spec = llama_cpp_python_spec(bench_settings({"engine": {"chat_format": "chatml"}}), 512, 1)
    assert "--chat_format chatml" in " ".join(spec.argv)


def test_server_kinds_are_pluggable():
    def mine(settings, context_tokens, port, max_concurrency):
        return ServerSpec(kind="mine", argv=["true"], base_url=f"http://127.0.0.1:{port}/v1",
                          model="m")
    register_server_kind("mine", mine)
    try:
        server = managed_server_for({"server": "mine"})
        assert server.spec.kind == "mine" and server.model == "m"
    finally:
        SERVER_KINDS.pop("mine")
    with pytest.raises(UserError, match="--backend openai"):
        managed_server_for({"server": "command", "backend": "llamacpp"})


def test_a_generator_that_falls_behind_says_so_in_the_row(tmp_path):
    wl = tmp_path / "capped.toml"
    wl.write_text(WORKLOAD.replace("output_tokens = 5", "output_tokens = 5\n"
                                   "max_in_flight = 1\narrival = \"constant\""))
    slow = SSE.replace("--ttft-ms 2", "--ttft-ms 60")
    result = subprocess.run(
        [*HARNESS, "bench", "--workload", str(wl), "--rate", "100", "--output",
         str(tmp_path / "out"), "--power", "none", "--quiet", "--server", "command",
         "--server-command", slow], cwd=ROOT, capture_output=True, text=True, timeout=120,
        check=False)
    assert result.returncode == 0, result.stderr
    (row,) = rows(tmp_path)
    assert row["concurrency"] == "1" and float(row["send_lag_ms_p99"]) > 200
    assert "fell behind its schedule" in row["notes"]
    assert "fell behind" in result.stderr
