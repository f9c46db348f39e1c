"""Interrupts of `harness bench` on the `openai` backend and with a managed server:
SIGINT/SIGTERM at several points finish writing, mark the scenario partial, stop the
server (no orphan process) and exit 130/143; SIGKILL leaves every completed request
readable (JSONL lines all valid) and the CSV absent or valid."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from harness.results.files import read_rows
from tests.support.reliability import (
    ROOT,
    bench_argv,
    csv_rows,
    fake_server,
    jsonl_count,
    jsonl_records,
    run_bench,
    start_bench,
    wait_for,
    write_workload,
)

pytestmark = pytest.mark.slow
CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}
LONG = {"name": "long", "input_tokens": 16, "output_tokens": 8, "requests": 100000,
        "warmup_requests": 0, "concurrency": 2}


def _finish(proc, sig: int) -> tuple[str, str]:
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == CODES[sig], stderr
    assert "Traceback" not in stderr
    assert ("interrupted" if sig == signal.SIGINT else "terminated") in stderr
    assert "results so far" in stdout
    return stdout, stderr


def _check_partial(out: Path, statuses: list[str]) -> list[dict[str, str]]:
    records = jsonl_records(out)  # every line parses
    rows = csv_rows(out)
    assert [r["status"] for r in rows] == statuses
    # Nothing completed is lost: each row counts exactly the requests in the JSONL.
    for row in rows:
        mine = [r for r in records if r["scenario"] == row["scenario"]]
        assert int(row["requests"]) == len(mine)
    assert not [p for p in out.rglob("*.tmp") if not p.name.startswith(".")]
    return rows


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_mid_scenario(tmp_path: Path, sig: int) -> None:
    # Eight streams of instant answers: requests end as the signal comes, the race that
    # once left the row counting fewer requests than the JSONL held.
    workload = write_workload(tmp_path / "w.toml", dict(LONG, concurrency=8))
    out = tmp_path / "out"
    with fake_server(ttft_ms=0, itl_ms=0) as server:
        proc = start_bench(bench_argv(server.base_url, workload, out))
        wait_for(lambda: jsonl_count(out) >= 30, what="30 measured requests")
        _finish(proc, sig)
    (row,) = _check_partial(out, ["partial"])
    assert int(row["requests"]) >= 30 and int(row["errors"]) == 0


def test_sigint_mid_open_loop_scenario(tmp_path: Path) -> None:
    workload = write_workload(tmp_path / "w.toml", dict(LONG, rate_rps=[300.0],
                                                        max_in_flight=16))
    out = tmp_path / "out"
    with fake_server(ttft_ms=0, itl_ms=0) as server:
        proc = start_bench(bench_argv(server.base_url, workload, out))
        wait_for(lambda: jsonl_count(out) >= 30, what="30 measured requests")
        _finish(proc, signal.SIGINT)
    (row,) = _check_partial(out, ["partial"])
    assert row["load_mode"] == "open"


def test_sigint_in_the_second_scenario_keeps_the_first(tmp_path: Path) -> None:
    first = dict(LONG, name="first", requests=6)
    workload = write_workload(tmp_path / "w.toml", first, dict(LONG, name="second"))
    out = tmp_path / "out"
    with fake_server() as server:
        proc = start_bench(bench_argv(server.base_url, workload, out))
        wait_for(lambda: jsonl_count(out) >= 9, what="requests of the second scenario")
        _finish(proc, signal.SIGINT)
    rows = _check_partial(out, ["complete", "partial"])
    assert int(rows[0]["requests"]) == 6


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_during_warmup_marks_the_scenario_partial(tmp_path: Path, sig: int) -> None:
    workload = write_workload(tmp_path / "w.toml", dict(LONG, warmup_requests=100000))
    out = tmp_path / "out"
    with fake_server() as server:
        proc = start_bench(bench_argv(server.base_url, workload, out))
        wait_for(lambda: server.state.served["healthy"] >= 3, what="warmup requests")
        _finish(proc, sig)
    (row,) = _check_partial(out, ["partial"])
    assert int(row["requests"]) == 0


def test_signal_while_requests_hang(tmp_path: Path) -> None:
    # Every request in flight hangs: the signal must not wait for --timeout.
    workload = write_workload(tmp_path / "w.toml", LONG)
    out = tmp_path / "out"
    with fake_server() as server:
        proc = start_bench(bench_argv(server.fault_url("healthy", "hang"), workload, out,
                                      "--timeout", "600"))
        wait_for(lambda: server.state.served["hang"] >= 2, what="two hanging requests")
        t0 = time.monotonic()
        _finish(proc, signal.SIGTERM)
        assert time.monotonic() - t0 < 30
    _check_partial(out, ["partial"])


def _server_argv(tmp_path: Path, out: Path) -> list[str]:
    workload = write_workload(tmp_path / "w.toml", LONG)
    command = (f"{sys.executable} -m harness.servers.fake --port {{port}} --model m "
               "--ttft-ms 5 --itl-ms 5")
    return [sys.executable, "-m", "harness", "bench", "--server", "command",
            "--server-command", command, "--model", "m", "--workload", str(workload),
            "--output", str(out), "--power", "none"]


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _gone(procs: list[psutil.Process], timeout_s: float = 15) -> bool:
    _, alive = psutil.wait_procs(procs, timeout=timeout_s)
    return not [p for p in alive if p.status() != psutil.STATUS_ZOMBIE]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_with_a_managed_server_stops_it(tmp_path: Path, sig: int) -> None:
    out = tmp_path / "out"
    proc = start_bench(_server_argv(tmp_path, out))
    wait_for(lambda: jsonl_count(out) >= 5, what="5 measured requests")
    children = _descendants(proc.pid)
    assert any("harness.servers.fake" in " ".join(c.cmdline()) for c in children)
    _finish(proc, sig)
    assert _gone(children), "the managed server outlived the harness"
    _check_partial(out, ["partial"])
    assert list(out.glob("*/*.server.log"))


def test_sigkill_mid_run_leaves_every_completed_request_readable(tmp_path: Path) -> None:
    scenarios = [dict(LONG, name=f"s{i}", requests=8) for i in range(3)]
    scenarios.append(dict(LONG, name="last"))
    workload = write_workload(tmp_path / "w.toml", *scenarios)
    out = tmp_path / "out"
    with fake_server() as server:
        proc = start_bench(bench_argv(server.base_url, workload, out))
        wait_for(lambda: len(csv_rows(out)) >= 2 and jsonl_count(out) >= 20,
                 what="two scenarios written")
        proc.kill()
        proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    records = jsonl_records(out)  # every line parses: nothing half-written
    assert len(records) >= 20
    (csv_path,) = [p for p in out.glob("*/*.csv") if not p.name.startswith(".")]
    rows = read_rows(csv_path)  # the CSV is whole (renamed into place)
    assert len(rows) >= 2 and all(r["status"] == "complete" for r in rows)
    for row in rows:
        assert row["requests"] == 8 == sum(1 for r in records
                                           if r["scenario"] == row["scenario"])


def test_sigkill_at_startup_leaves_nothing_broken(tmp_path: Path) -> None:
    """SIGKILL while the first scenario runs (its requests file just opened, no row yet):
    every line written is a whole record of that scenario, no row claims the unfinished
    scenario, no temporary file is left in sight, and a new run into the same folder
    works and writes its own whole files."""
    workload = write_workload(tmp_path / "w.toml", LONG)
    out = tmp_path / "out"
    with fake_server() as server:
        proc = start_bench(bench_argv(server.base_url, workload, out))
        wait_for(lambda: jsonl_count(out) >= 1, what="the first measured request")
        proc.kill()
        proc.communicate(timeout=30)
        assert proc.returncode == -signal.SIGKILL
        (killed,) = out.glob("*/*.requests.jsonl")
        records = [json.loads(line) for line in killed.read_text().splitlines()]
        assert records and {r["scenario"] for r in records} == {"long"}
        assert csv_rows(out) == []  # the scenario never finished: no row claims it
        assert not [p for p in out.rglob("*.tmp") if not p.name.startswith(".")]
        short = write_workload(tmp_path / "short.toml", dict(LONG, name="short", requests=4))
        again = run_bench(bench_argv(server.base_url, short, out))
    assert again.returncode == 0, again.stderr
    (row,) = csv_rows(out)  # the new run's; the killed one has none
    assert (row["scenario"], row["status"], row["requests"]) == ("short", "complete", "4")
    (new,) = [p for p in out.glob("*/*.requests.jsonl") if p != killed]
    assert [json.loads(line)["scenario"] for line in new.read_text().splitlines()] == [
        "short"] * 4
    assert [json.loads(line) for line in killed.read_text().splitlines()] == records


def test_sigkill_with_a_managed_server_leaves_no_orphan(tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = start_bench(_server_argv(tmp_path, out))
    wait_for(lambda: jsonl_count(out) >= 3, what="3 measured requests")
    children = _descendants(proc.pid)
    assert children
    proc.kill()
    proc.communicate(timeout=30)
    assert _gone(children), "the managed server outlived a SIGKILLed harness"
    jsonl_records(out)


def test_short_soak_keeps_every_request_and_leaks_no_descriptor() -> None:
    # bench/soak.py --check: exit 1 when RSS or open descriptors grow past its limits
    # after the first scenario, or a request is missing from the JSONL.
    proc = subprocess.run([sys.executable, "bench/soak.py", "--seconds", "16",
                           "--scenario-seconds", "4", "--max-growth-mb", "40", "--check"],
                          check=False, cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "verdict: flat" in proc.stdout


def test_double_sigint_with_a_managed_server(tmp_path: Path) -> None:
    # An impatient second Ctrl-C: the shell still sees 130 (killed by SIGINT), the files
    # stay valid and the server is stopped.
    out = tmp_path / "out"
    proc = start_bench(_server_argv(tmp_path, out))
    wait_for(lambda: jsonl_count(out) >= 5, what="5 measured requests")
    children = _descendants(proc.pid)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=60)
    assert proc.returncode in (130, -signal.SIGINT)
    assert _gone(children), "the managed server outlived the harness"
    records = jsonl_records(out)
    for path in out.glob("*/*.csv"):
        if not path.name.startswith("."):
            for row in read_rows(path):
                assert row["requests"] <= len(records)
