"""Idle power is measured once, before any request of the run: after a warmup a GPU is
still hot and reads high. The real runner and the real `openai` backend against the
in-process fake SSE server; the GPU is the fake (no GPU here): it draws 60 W until the
server has answered a request, 300 W after."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from backends.openai.backend import OpenAIBackend
from harness.power.base import MEASURED, Meter, Reading
from harness.power.session import PowerSession
from harness.results.files import RunFiles
from harness.runner.options import RunOptions, RunState
from harness.runner.runner import new_run_id, run_workload
from harness.servers.fake import FakeOpenAIServer, FakeTiming
from workloads.spec import parse_workload

WORKLOAD = """
description = "two scenarios, each with a warmup"
seed = 2
[defaults]
repetitions = 1
warmup_requests = 1
concurrency = 1
[[scenarios]]
name = "one"
input_tokens = 8
output_tokens = 4
requests = 2
[[scenarios]]
name = "two"
input_tokens = 8
output_tokens = 4
requests = 2
"""


class WarmingGpu(Meter):
    """A GPU that is cool (60 W) until the server has seen a request, hot (300 W) after."""

    name = "nvml"
    method = MEASURED

    def __init__(self, server: FakeOpenAIServer) -> None:
        self.server = server
        self.windows: list[int] = []  # requests the server had seen when each window began

    def available(self) -> tuple[bool, str]:
        return True, "fake GPU"

    def start(self) -> None:
        self.windows.append(self.server.state.requests)

    def stop(self) -> list[Reading]:
        watts = 300.0 if self.windows[-1] else 60.0
        return [Reading(domain="gpu:0", source="nvml", method=MEASURED, energy_j=watts,
                        avg_power_w=watts, duration_s=1.0, timeline=[(0.0, watts)])]


def test_idle_is_measured_once_before_any_request(tmp_path: Path) -> None:
    workload = parse_workload(WORKLOAD, tmp_path / "w.toml", "w")

    async def run() -> tuple[list[dict], WarmingGpu, RunFiles]:
        async with FakeOpenAIServer(FakeTiming(ttft_ms=1, itl_ms=1)) as server:
            gpu = WarmingGpu(server)
            power = PowerSession([gpu], "", track_memory=False)
            backend = OpenAIBackend(model="fake-model", base_url=server.base_url)
            info = await backend.open()
            run_id = new_run_id()
            files = RunFiles(tmp_path / "out", {"machine_id": "m"}, run_id, "w")
            try:
                state = RunState()
                await run_workload(backend, info, workload, files, {"machine_id": "m"},
                                   run_id, power, RunOptions(quiet=True, idle_power_s=0.01),
                                   state)
            finally:
                await backend.close()
                files.close()
            return state.rows, gpu, files

    rows, gpu, files = asyncio.run(run())
    assert [r["scenario"] for r in rows] == ["one", "two"]
    # windows: idle (before any request), then each scenario's measured window
    assert len(gpu.windows) == 3 and gpu.windows[0] == 0 and gpu.windows[1] > 0
    assert [r["idle_power_w"] for r in rows] == [60.0, 60.0]  # cool: before the warmups
    assert [r["avg_power_w"] for r in rows] == [300.0, 300.0]
    assert [r["energy_above_idle_j"] for r in rows] == [240.0, 240.0]
    phases = [(s["scenario"], s["phase"]) for s in map(json.loads,
                                                       files.power_path.read_text().splitlines())]
    assert phases.count(("one", "idle")) == 1 and ("two", "idle") not in phases
