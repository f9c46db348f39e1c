"""Every fault mode of the fake OpenAI server (harness/servers/fake.py), through the real
`harness bench` command line and the `openai` backend: each request ends as an error of
its class within the configured timeouts, the run finishes, the summary counts them. Then the secrets test:
a canary key must appear nowhere in what the run wrote or printed."""

from __future__ import annotations

import secrets
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from harness.servers.fake import FAULTS
from tests.support.reliability import (
    bench_argv,
    clean_env,
    csv_rows,
    fake_server,
    jsonl_records,
    run_bench,
    write_workload,
)

pytestmark = pytest.mark.slow
TIMEOUT_S, STALL_S = 5.0, 2.0  # generous: a starved CI machine must not turn healthy into stall
PER_MODE = 2


def test_every_fault_ends_as_its_error_class_and_the_run_finishes(tmp_path: Path) -> None:
    modes = list(FAULTS)
    n = PER_MODE * len(modes)
    workload = write_workload(tmp_path / "faults.toml", {
        "name": "faults", "input_tokens": 16, "output_tokens": 8, "requests": n,
        "warmup_requests": 0, "concurrency": len(modes)})
    out = tmp_path / "out"
    with fake_server() as server:
        t0 = time.monotonic()
        proc = run_bench(bench_argv(server.fault_url(*modes), workload, out, "--timeout",
                                    str(TIMEOUT_S), "--stall-timeout", str(STALL_S)))
        wall_s = time.monotonic() - t0
        assert dict(server.state.served) == {m: PER_MODE for m in modes}
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    # Two waves of requests, none lasting past --timeout: Retry-After (30 s) is not obeyed
    # and nothing hangs; generous margin for the CLI's start-up on a busy machine.
    assert wall_s < 90, wall_s

    expected = Counter({kind: PER_MODE * sum(1 for k in FAULTS.values() if k == kind)
                        for kind in set(FAULTS.values()) if kind})
    records = jsonl_records(out)
    assert len(records) == n
    assert Counter(r["error"] for r in records if r["error"]) == expected
    assert sum(1 for r in records if r["ok"]) == PER_MODE  # the healthy ones
    for r in records:
        assert r["error_message"] or r["ok"]
        if r["error"] == "stall":
            assert r["event_ns"], "a stall comes after the first token"

    (row,) = csv_rows(out)
    assert row["status"] == "complete"
    assert int(row["requests"]) == n
    assert int(row["errors"]) == n - PER_MODE
    kinds = dict(item.split("=") for item in row["error_kinds"].split(";"))
    assert {k: int(v) for k, v in kinds.items()} == dict(expected)
    assert f"{PER_MODE}/{n}" in proc.stdout  # ok/requests in the printed table


def _all_output(out: Path, proc_texts: list[str]) -> list[tuple[str, str]]:
    """(where, text) for every file under `out` (hidden ones too) and every stream."""
    found = [(str(p), p.read_bytes().decode("utf-8", "replace"))
             for p in sorted(out.rglob("*")) if p.is_file()]
    return found + [(f"stream {i}", t) for i, t in enumerate(proc_texts)]


@pytest.mark.parametrize("key_env", ["OPENAI_API_KEY", "BENCH_CREDENTIAL_FOR_TEST"])
def test_a_canary_key_leaks_nowhere(tmp_path: Path, key_env: str) -> None:
    # A key of no known shape under a variable named on the command line, or an
    # sk- key in the default variable; the server echoes it in error bodies.
    canary = secrets.token_hex(12)
    key = f"sk-canary-{canary}" if key_env == "OPENAI_API_KEY" else f"canary{canary}"
    env = clean_env(**{key_env: key}, OPENAI_LOG="debug")
    modes = ["http401", "http500", "http429_retry_after", "sse_error", "healthy", "cut",
             "reset", "invalid_json"]
    workload = write_workload(tmp_path / "w.toml", {
        "name": "s", "input_tokens": 16, "output_tokens": 4, "requests": 2 * len(modes),
        "warmup_requests": 1, "concurrency": 2})
    config = tmp_path / "bench.toml"
    config.write_text(f'api_key_env = "{key_env}"\ntimeout = 5.0\n')
    out = tmp_path / "out"
    with fake_server() as server:
        proc = run_bench(bench_argv(server.fault_url(*modes), workload, out, "--config",
                                    str(config)), env=env)
        seen = set(server.state.authorization_seen)
    assert proc.returncode == 0, proc.stderr
    assert seen == {f"Bearer {key}"}, "the run must have sent the canary key"
    records = jsonl_records(out)
    echoed = [r["error_message"] for r in records if r["error"] in ("http_401", "http_5xx")]
    assert echoed and all("Bearer ***" in m for m in echoed)
    texts = _all_output(out, [proc.stdout, proc.stderr])
    assert any(p.endswith(".csv") for p, _ in texts)
    for where, text in texts:
        assert canary not in text, f"the key leaked into {where}"


def test_the_key_leaks_from_no_managed_server_log(tmp_path: Path) -> None:
    canary = secrets.token_hex(12)
    env = clean_env(OPENAI_API_KEY=f"sk-canary-{canary}")
    workload = write_workload(tmp_path / "w.toml", {
        "name": "s", "input_tokens": 16, "output_tokens": 4, "requests": 4,
        "warmup_requests": 0})
    command = (f"{sys.executable} -m harness.servers.fake --port {{port}} --model m "
               "--ttft-ms 5 --itl-ms 2 --log-requests --mode http500+healthy")
    out = tmp_path / "out"
    proc = run_bench([sys.executable, "-m", "harness", "bench", "--server", "command",
                      "--server-command", command, "--model", "m", "--workload",
                      str(workload), "--output", str(out), "--power", "none", "--timeout",
                      "5"], env=env)
    assert proc.returncode == 0, proc.stderr
    logs = list(out.glob("*/*.server.log"))
    assert logs, "the managed server's log is kept with the results"
    log = logs[0].read_text()
    assert "authorization=Bearer ***" in log  # the server did log the header, masked
    for where, text in _all_output(out, [proc.stdout, proc.stderr]):
        assert canary not in text, f"the key leaked into {where}"


def test_a_key_in_the_config_file_is_refused_and_not_echoed(tmp_path: Path) -> None:
    canary = secrets.token_hex(12)
    config = tmp_path / "bench.toml"
    workload = write_workload(tmp_path / "w.toml", {"name": "s", "input_tokens": 8,
                                                   "output_tokens": 2})
    for text in (f'api_key = "sk-{canary}"\n', f'[engine]\napi_key = "sk-{canary}"\n'):
        config.write_text(text)
        proc = run_bench(bench_argv("http://127.0.0.1:9/v1", workload, tmp_path / "o",
                                    "--config", str(config)))
        assert proc.returncode == 2
        assert "environment" in proc.stderr and canary not in proc.stderr + proc.stdout
        assert len(proc.stderr.strip().splitlines()) == 1

