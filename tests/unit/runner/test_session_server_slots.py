"""A bench run hands the managed server the most requests it will hold in flight, so a
llama-server gets one parallel slot per concurrent request: the largest --concurrency, the
workload's own levels when none is given, --concurrency auto's cap (--max-concurrency,
default 64), an open-loop scenario's max_in_flight; --parallel wins over all of them."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from harness.config import settings as S
from harness.errors import UserError
from harness.runner.session import BenchRun
from harness.servers.kinds import SERVER_KINDS
from harness.servers.llama_server import llama_server_spec

WORKLOAD = """description = "closed c=2 and an open loop capped at 6 in flight"
seed = 3
[defaults]
requests = 2
[[scenarios]]
name = "closed"
input_tokens = 16
output_tokens = 4
concurrency = [1, 2]
[[scenarios]]
name = "open"
input_tokens = 16
output_tokens = 4
rate_rps = [1.0, 2.0]
max_in_flight = 6
"""


def parse(argv: list[str]) -> S.BenchSettings:
    p = argparse.ArgumentParser()
    S.add_arguments(p)
    return S.from_args(p.parse_args([*argv, "--power", "none", "--quiet"]))


@pytest.mark.parametrize("argv,expected", [
    ([], 1),  # the default workload: c=1 in every scenario
    (["--workload", "smoke", "--concurrency", "1,4"], 4),
    (["--concurrency", "2,8,4"], 8),
    (["--concurrency", "auto"], 64),
    (["--concurrency", "auto", "--max-concurrency", "8"], 8),
])
def test_max_in_flight_of_the_run(argv: list[str], expected: int) -> None:
    assert BenchRun(parse(argv)).max_in_flight() == expected


def test_open_loop_cap_and_auto_cap_count(tmp_path: Path) -> None:
    wl = tmp_path / "mixed.toml"
    wl.write_text(WORKLOAD)
    assert BenchRun(parse(["--workload", str(wl)])).max_in_flight() == 6
    # An open loop without max_in_flight is unbounded: only the closed loop counts.
    wl.write_text(WORKLOAD.replace("max_in_flight = 6\n", ""))
    assert BenchRun(parse(["--workload", str(wl)])).max_in_flight() == 2


def test_the_session_passes_it_to_the_server_builder(tmp_path: Path) -> None:
    """The real BenchRun, up to the point where it builds the server: a builder registered
    under the name `llama-server` records what the session hands it and stops the run."""
    seen: dict[str, object] = {}

    def recording(settings, context_tokens, port, max_concurrency):  # noqa: ANN001
        seen.update(context_tokens=context_tokens, max_concurrency=max_concurrency)
        raise UserError("stop here: nothing is started")

    real = SERVER_KINDS["llama-server"]
    SERVER_KINDS["llama-server"] = recording
    try:
        for argv, expected in ((["--concurrency", "auto", "--max-concurrency", "8"], 8),
                               (["--concurrency", "1,4"], 4)):
            run = BenchRun(parse(["--server", "llama-server", "--workload", "smoke",
                                  "--output", str(tmp_path), *argv]))
            with pytest.raises(UserError, match="stop here"):
                run.run()
            assert seen["max_concurrency"] == expected
            assert isinstance(seen["context_tokens"], int) and seen["context_tokens"] > 0
    finally:
        SERVER_KINDS["llama-server"] = real


def _binary(tmp_path: Path) -> Path:
    """A runnable file standing in for a user's llama-server (only its path and --version
    are read: llama-server is not started here)."""
    path = tmp_path / "llama-server"
    path.write_text("#!/bin/sh\necho 'version: 1 (test)'\n")
    path.chmod(0o755)
    return path


def _gguf(tmp_path: Path) -> Path:
    path = tmp_path / "m.gguf"
    path.write_bytes(b"GGUF" + bytes(60))
    return path


@pytest.mark.parametrize("argv,slots,why", [
    ([], 8, "largest concurrency of the run"),
    (["--parallel", "3"], 3, "--parallel"),
])
def test_slots_and_context_on_the_command_line(tmp_path: Path, argv: list[str], slots: int,
                                               why: str) -> None:
    settings = parse(["--server", "llama-server", "--server-binary", str(_binary(tmp_path)),
                      "--model", str(_gguf(tmp_path)), *argv])
    spec = llama_server_spec(settings, 300, 1234, max_concurrency=8)
    np_at = spec.argv.index("-np")
    assert spec.argv[np_at + 1] == str(slots)
    assert spec.argv[spec.argv.index("-c") + 1] == str(300 * slots)
    assert spec.info["n_parallel"] == slots and spec.info["n_parallel_from"] == why
