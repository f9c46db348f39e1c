"""llama.cpp's own `llama-server` as a managed server (`--server llama-server`), with real
processes and real HTTP, on the default model (Gemma 3 270M Q4_K_M).

- The `openai` backend's connection pool against servers that close the connection after
  a streamed response while their headers say Keep-Alive (llama-server's cpp-httplib does):
  a small raw asyncio server here, closing at once or 50 ms late (no model needed), and
  the real llama-server. Before the fix every second request failed at c=1. A server
  that does keep the connection open still gets it reused.
- `harness bench --server llama-server` at c=1 and c=4: 4 requests in flight at c=4 (from
  the per-request JSONL, and llama-server's own busy slots per decode), the server's
  per-request timings parsed into the engine columns, usage from the stream, its
  /metrics in the server_* columns, and no server process left after the run.
- Ctrl-C mid-run: exit 130, valid files, no orphan. A model llama-server cannot load:
  exit 2, the error line names the server log, which is kept.

The binary is the one `make llama-server` builds and caches (or $LLAMA_SERVER): when it
is absent the tests FAIL and say to run `make llama-server` (`make test` builds it).
"""

from __future__ import annotations

import asyncio
import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from backends.base import Request
from backends.openai.backend import POOL_PROBE_S, OpenAIBackend
from harness.config.settings import bench_settings
from harness.models.resolve import default_model
from harness.servers.llama_server import SERVER_ENV, cached_tool, llama_server_spec
from harness.servers.managed import ManagedServer, free_port

ROOT = Path(__file__).resolve().parents[2]
HARNESS = [sys.executable, "-m", "harness"]

WORKLOAD = """description = "llama-server, tiny"
seed = 13
[defaults]
warmup_requests = 1
repetitions = 1
requests = 8
[[scenarios]]
name = "short"
input_tokens = 32
output_tokens = 16
"""

LONG_WORKLOAD = """description = "llama-server, long enough to interrupt"
seed = 14
[defaults]
warmup_requests = 0
repetitions = 1
requests = 200
concurrency = 2
[[scenarios]]
name = "long"
input_tokens = 16
output_tokens = 32
"""


def server_binary() -> Path:
    """$LLAMA_SERVER, else the cached build; a failure (not a skip) when neither exists."""
    env = os.environ.get(SERVER_ENV)
    if env:
        return Path(env)
    path = cached_tool("llama-server")
    if path is None:
        pytest.fail("llama-server is not built for this machine: run `make llama-server` "
                    "(make test does it first), or point LLAMA_SERVER at a binary")
    return path


# -- the connection pool against a server that closes after a streamed response ---------


class ClosingServer:
    """A raw HTTP/1.1 SSE server that answers `Keep-Alive` and then, like llama-server,
    closes the connection after every streamed response (`close_delay_s` later, ignoring
    what arrives in between), or keeps it open when `close_delay_s` is None. Like
    llama-server it keeps the connection open after a plain answer (GET /v1/models)."""

    def __init__(self, close_delay_s: float | None) -> None:
        self.close_delay_s = close_delay_s
        self.connections = 0
        self.requests = 0
        self.server: asyncio.AbstractServer | None = None

    async def __aenter__(self) -> ClosingServer:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    @property
    def base_url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/v1"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                if head.startswith(b"GET"):
                    data = json.dumps({"object": "list", "data": [{"id": "m"}]}).encode()
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                                 b"Content-Length: %d\r\n\r\n%s" % (len(data), data))
                    await writer.drain()
                    continue
                length = int(re.search(rb"(?i)content-length:\s*(\d+)", head).group(1))
                body = json.loads(await reader.readexactly(length))
                self.requests += 1
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                             b"Transfer-Encoding: chunked\r\nKeep-Alive: timeout=5, max=100"
                             b"\r\n\r\n")
                n = int(body.get("max_tokens", 3))
                for i in range(n):
                    last = i == n - 1
                    chunk = {"choices": [{"text": f" w{i}", "index": 0,
                                          "finish_reason": "length" if last else None}]}
                    if last:
                        chunk["usage"] = {"prompt_tokens": 3, "completion_tokens": n}
                    data = f"data: {json.dumps(chunk)}\n\n".encode()
                    writer.write(b"%x\r\n%s\r\n" % (len(data), data))
                data = b"data: [DONE]\n\n"
                writer.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(data), data))
                await writer.drain()
                if self.close_delay_s is not None:
                    await asyncio.sleep(self.close_delay_s)  # bytes sent meanwhile: ignored
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


async def _sequential(base_url: str, n: int, pause_after_first_s: float = 0.0,
                      check_model: bool = False) -> list[str]:
    """`n` requests one after the other through the default (aiohttp) transport; the
    errors. A pause after the first lets the pool decide whether the server keeps
    connections open (POOL_PROBE_S)."""
    backend = OpenAIBackend(model="m", base_url=base_url, check_model=check_model,
                            force_length="ignore_eos", timeout_s=30.0)
    await backend.open()
    errors = []
    try:
        for i in range(n):
            if i == 1:
                await asyncio.sleep(pause_after_first_s)
            request = Request(request_id=str(i), prompt=f"{i} hello", input_tokens=0,
                              max_output_tokens=4)
            try:
                events = [e async for e in backend.stream(request)]
                assert events[-1].usage is not None and events[-1].usage.output_tokens == 4
            except Exception as exc:  # noqa: BLE001 - collected and shown
                errors.append(f"{i}: {type(exc).__name__}: {exc}")
    finally:
        await backend.close()
    return errors


@pytest.mark.parametrize("close_delay_s", [0.0, 0.05], ids=["closes-at-once",
                                                            "closes-50ms-late"])
@pytest.mark.parametrize("pause_s", [0.0, POOL_PROBE_S + 0.3], ids=["no-pause", "pause"])
def test_connection_closed_after_a_stream_is_never_reused(close_delay_s: float,
                                                          pause_s: float) -> None:
    async def run() -> tuple[list[str], int, int]:
        async with ClosingServer(close_delay_s) as server:
            errors = await _sequential(server.base_url, 12, pause_s)
            return errors, server.requests, server.connections

    errors, requests, connections = asyncio.run(run())
    assert errors == []
    assert requests == 12  # nothing was sent twice to the server
    assert connections == 12


def test_a_plain_answer_kept_open_does_not_teach_the_pool_to_reuse_streams() -> None:
    # llama-server keeps the GET /v1/models connection open and closes streamed ones; a
    # second backend in the same task (as in a test, or a probe before the run) must not
    # learn "keeps connections open" from its model check.
    async def run() -> tuple[list[str], int, int]:
        async with ClosingServer(0.05) as server:
            errors = await _sequential(server.base_url, 3)
            errors += await _sequential(server.base_url, 8, POOL_PROBE_S + 0.3,
                                        check_model=True)
            return errors, server.requests, server.connections

    errors, requests, connections = asyncio.run(run())
    assert errors == []
    assert requests == 11
    assert connections == 3 + 1 + 8  # the model check's connection is never reused


def test_a_keep_alive_server_keeps_its_connection() -> None:
    async def run() -> tuple[list[str], int]:
        async with ClosingServer(None) as server:
            errors = await _sequential(server.base_url, 10, POOL_PROBE_S + 0.3)
            return errors, server.connections

    errors, connections = asyncio.run(run())
    assert errors == []
    assert connections == 1


@pytest.mark.slow
def test_sequential_and_concurrent_streams_from_a_real_llama_server(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The reported bug: every second request through a pooled connection failed."""
    binary = server_binary()
    monkeypatch.setenv(SERVER_ENV, str(binary))
    spec = llama_server_spec(bench_settings({}), 256, free_port(), max_concurrency=4)
    assert spec.argv[0] == str(binary) and "-np" in spec.argv and "--metrics" in spec.argv

    async def run() -> tuple[list[str], list[str]]:
        async with ManagedServer(spec) as server:
            sequential = await _sequential(server.base_url, 12)
            backend = OpenAIBackend(model=server.model, base_url=server.base_url,
                                    force_length="ignore_eos", timeout_s=120.0)
            await backend.open()
            errors: list[str] = []

            async def one(i: int) -> None:
                request = Request(request_id=str(i), prompt=f"{i} tell me", input_tokens=0,
                                  max_output_tokens=6)
                try:
                    events = [e async for e in backend.stream(request)]
                    usage = events[-1].usage
                    assert usage is not None and usage.output_tokens == 6
                    assert usage.engine_decode_tokens == 5 and usage.engine_decode_ms > 0
                except Exception as exc:  # noqa: BLE001
                    errors.append(f"{i}: {type(exc).__name__}: {exc}")

            try:
                for wave in range(3):
                    await asyncio.gather(*(one(wave * 4 + k) for k in range(4)))
            finally:
                await backend.close()
            return sequential, errors

    sequential, concurrent = asyncio.run(run())
    assert sequential == []
    assert concurrent == []


# -- harness bench --server llama-server -------------------------------------------------


def _server_port(log: Path) -> int:
    first = log.read_text(errors="replace").splitlines()[0]
    return int(re.search(r"--port (\d+)", first).group(1))


def _server_processes(port: int) -> list[int]:
    """Live llama-server processes listening on `port` (by command line)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            state = (proc / "stat").read_text().split()[2]
        except OSError:
            continue
        if state != "Z" and argv and argv[0].endswith(b"llama-server") and \
                b"--port" in argv and argv[argv.index(b"--port") + 1] == str(port).encode():
            pids.append(int(proc.name))
    return pids


def _max_in_flight(records: list[dict]) -> int:
    """Most requests between send and last token at one time."""
    edges = []
    for r in records:
        edges.append((r["send_ns"], 1))
        edges.append((r["event_ns"][-1], -1))
    in_flight = peak = 0
    for _, step in sorted(edges, key=lambda e: (e[0], e[1])):
        in_flight += step
        peak = max(peak, in_flight)
    return peak


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    binary = server_binary()
    tmp = tmp_path_factory.mktemp("llama_server")
    wl = tmp / "short.toml"
    wl.write_text(WORKLOAD)
    out = tmp / "out"
    env = {**os.environ, SERVER_ENV: str(binary)}
    result = subprocess.run(
        [*HARNESS, "bench", "--server", "llama-server", "--workload", str(wl),
         "--concurrency", "1,4", "--output", str(out), "--power", "none", "--quiet"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    (csv_path,) = out.glob("*/*.csv")
    (jsonl,) = out.glob("*/*.requests.jsonl")
    (metrics,) = out.glob("*/*.server_metrics.json")
    (log,) = out.glob("*/*.server.log")
    return {"rows": list(csv.DictReader(csv_path.open())),
            "records": [json.loads(line) for line in jsonl.open()],
            "server_metrics": json.loads(metrics.read_text()), "log": log,
            "binary": binary}


@pytest.mark.slow
def test_bench_rows_at_c1_and_c4(bench_run: dict) -> None:
    rows = bench_run["rows"]
    assert [r["concurrency"] for r in rows] == ["1", "4"]
    for row in rows:
        assert row["errors"] == "0" and row["requests"] == "8", row.get("error_kinds")
        assert row["engine"] == "llama.cpp (llama-server)"
        assert row["model"] == "gemma-3-270m-Q4_K_M" and row["quant"] == "Q4_K_M"
        assert row["token_count_source"] == "engine"
        assert row["output_tokens"] == str(8 * 16)
        assert float(row["engine_prefill_tok_s"]) > 0
        assert float(row["engine_decode_tok_s"]) > 0
        assert row["server_prompt_tokens"] and float(row["server_prompt_tokens"]) >= \
            float(row["input_tokens"]) - 8  # cached prompt tokens are not counted there
        assert float(row["server_generation_tokens"]) == float(row["output_tokens"])
        server = json.loads(row["settings_json"])["server"]
        assert server["kind"] == "llama-server" and server["n_parallel"] == 4
        assert server["n_ctx"] == 4 * server["n_ctx_per_slot"]
        assert server["binary"] == str(bench_run["binary"])
        assert " -np 4 " in server["argv"] and "--metrics" in server["argv"]


@pytest.mark.slow
def test_four_requests_in_flight_at_c4_one_at_c1(bench_run: dict) -> None:
    by_load: dict[str, list[dict]] = {}
    for r in bench_run["records"]:
        assert r["ok"], r["error_message"]
        by_load.setdefault(r["load"], []).append(r)
    assert _max_in_flight(by_load["c=1"]) == 1
    assert _max_in_flight(by_load["c=4"]) == 4
    rows = {r["concurrency"]: r for r in bench_run["rows"]}
    assert float(rows["4"]["concurrency_achieved_mean"]) >= 3.6  # 90%: capacity_ok
    assert rows["4"]["capacity_ok"] == "1" and rows["4"]["load_mode"] == "closed"
    assert float(rows["1"]["concurrency_achieved_mean"]) == pytest.approx(1.0, abs=0.01)
    # The server batched them: mean busy slots per llama_decode() call, from /metrics.
    busy = {m["load"]: m["details"]["busy_slots_per_decode_mean"]
            for m in bench_run["server_metrics"]}
    assert busy["c=1"] == pytest.approx(1.0, abs=0.05)
    assert busy["c=4"] > 2.0


@pytest.mark.slow
def test_server_timings_reach_every_request(bench_run: dict) -> None:
    for r in bench_run["records"]:
        assert r["engine_prefill_tokens"] > 0 and r["engine_prefill_ms"] > 0
        # predicted_ms runs from the first token to the last: N_out - 1 decode steps
        assert r["engine_decode_tokens"] == r["output_tokens"] - 1 == 15
        assert r["engine_decode_ms"] > 0


@pytest.mark.slow
def test_no_server_left_after_the_run(bench_run: dict) -> None:
    port = _server_port(bench_run["log"])
    assert _server_processes(port) == []
    assert "exiting" in bench_run["log"].read_text(errors="replace") or \
        "cleaning up" in bench_run["log"].read_text(errors="replace")


@pytest.mark.slow
def test_ctrl_c_mid_run_leaves_valid_files_and_no_server(tmp_path: Path) -> None:
    binary = server_binary()
    wl = tmp_path / "long.toml"
    wl.write_text(LONG_WORKLOAD)
    out = tmp_path / "out"
    env = {**os.environ, SERVER_ENV: str(binary)}
    proc = subprocess.Popen(
        [*HARNESS, "bench", "--server", "llama-server", "--workload", str(wl),
         "--output", str(out), "--power", "none", "--quiet"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and proc.poll() is None:
            done = list(out.glob("*/*.requests.jsonl"))
            if done and len(done[0].read_text().splitlines()) >= 3:
                break
            time.sleep(0.2)
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        (log,) = out.glob("*/*.server.log")
        port = _server_port(log)
        assert _server_processes(port), "the server should be running mid-run"
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, stderr[-2000:]
    assert "interrupted" in stderr
    assert _server_processes(port) == []
    (csv_path,) = out.glob("*/*.csv")
    (row,) = list(csv.DictReader(csv_path.open()))
    assert row["status"] == "partial" and row["scenario"] == "long"
    lines = list(out.glob("*/*.requests.jsonl"))[0].read_text().splitlines()
    assert len(lines) >= 3
    for line in lines:
        json.loads(line)


@pytest.mark.slow
def test_a_model_llama_server_cannot_load(tmp_path: Path) -> None:
    binary = server_binary()
    env = {**os.environ, SERVER_ENV: str(binary)}
    wl = tmp_path / "short.toml"
    wl.write_text(WORKLOAD)
    # No such file: one line, before any server starts.
    missing = subprocess.run(
        [*HARNESS, "bench", "--server", "llama-server", "--model", str(tmp_path / "no.gguf"),
         "--workload", str(wl), "--output", str(tmp_path / "out"), "--power", "none"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert missing.returncode == 2
    assert missing.stderr.strip().count("\n") == 0, missing.stderr
    assert "model file not found" in missing.stderr
    # A GGUF cut short: the server starts, fails to load it and exits; the harness says
    # so in its error line, names the server log, and keeps it.
    broken = tmp_path / "broken.gguf"
    with open(default_model(), "rb") as src:
        broken.write_bytes(src.read(2_000_000))
    result = subprocess.run(
        [*HARNESS, "bench", "--server", "llama-server", "--model", str(broken),
         "--workload", str(wl), "--output", str(tmp_path / "out"), "--power", "none"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 2, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if "error:" in line
              and line.startswith("harness")]
    assert len(errors) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert "--server llama-server exited" in errors[0]
    log = Path(re.search(r"log (\S+?),", errors[0]).group(1))
    assert log.is_file()
    text = log.read_text(errors="replace")
    assert "failed to load model" in text
    assert _server_processes(_server_port(log)) == []
