"""One `harness bench` run, composed: managed server → backend → power → result files →
runner. The command line builds `BenchSettings`; this module does the rest and leaves
printing to the command.

Ctrl-C and SIGTERM cancel the run; rows already measured stay in the files (the runner
writes the interrupted row as `partial`), the server is stopped, the power meters are
closed, and `BenchRun.run` re-raises `KeyboardInterrupt` (or `Terminated` for SIGTERM).
"""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from backends.base import Backend, BackendInfo, Endpoint
from backends.registry import BACKENDS, backend_config, create_backend
from harness.analysis.prices import api_price
from harness.config.settings import BenchSettings
from harness.errors import Terminated, UserError, did_you_mean
from harness.power import EngineDevices, PowerSession, open_session
from harness.results.files import RunFiles
from harness.results.machine import fingerprint
from harness.runner.options import RunOptions, RunState
from harness.runner.runner import new_run_id, run_workload
from harness.servers.kinds import check_server_settings, managed_server_for
from harness.servers.llama_server import workload_max_concurrency
from harness.servers.managed import ManagedServer
from workloads.datasets import resolve_source
from workloads.spec import Workload, context_tokens, load_workload


def choose_backend(settings: BenchSettings) -> str:
    """--backend, else vllm for --server vllm, openai for any other endpoint, else
    llamacpp (in process)."""
    name = settings.backend or (
        "vllm" if settings.server == "vllm" else
        "openai" if settings.base_url or settings.server else "llamacpp")
    if name not in BACKENDS:
        raise UserError(f"unknown backend '{name}' (--backend); known: "
                        f"{', '.join(sorted(BACKENDS))}." + did_you_mean(name, list(BACKENDS)))
    return name


def bench_workload(settings: BenchSettings) -> Workload:
    """--workload with the load flags applied over its own settings (--concurrency auto
    leaves the workload's concurrency alone: the runner sweeps it)."""
    workload = load_workload(str(settings.workload or "default"))
    auto = settings.concurrency == "auto"
    # --rate R --concurrency N: N caps the open loop's requests in flight.
    cap = (max(settings.concurrency) if settings.rate and settings.concurrency and not auto
           else None)
    workload = workload.with_overrides(
        concurrency=None if auto else settings.concurrency, rate_rps=settings.rate,
        requests=settings.requests, repetitions=settings.repetitions,
        warmup_requests=settings.warmup, requests_per_stream=settings.requests_per_stream,
        max_in_flight=cap,
        dataset=resolve_source(settings.dataset) if settings.dataset else None,
        dataset_sample=settings.dataset_sample, dataset_seed=settings.dataset_seed)
    if auto and any(s.rate_rps for s in workload.scenarios):
        raise UserError("--concurrency auto sweeps closed-loop concurrency; it cannot be "
                        "combined with --rate or a scenario's rate_rps")
    return workload


def price_for(backend_name: str, settings: BenchSettings,
              endpoint: Endpoint | None) -> tuple[float, float] | None:
    """(input, output) USD per million tokens of a hosted API measured, from the price
    catalog (`api` setting, else the model name); None for local engines and unknowns."""
    if backend_name != "openai" or endpoint is not None:
        return None
    name = settings.api or settings.model
    if not name:
        return None
    try:
        return api_price(str(name))
    except UserError:  # a broken catalog must not fail the benchmark
        return None


def engine_devices(settings: BenchSettings, backend_name: str,
                   server: ManagedServer | None) -> EngineDevices:
    """The GPUs the engine runs on, for the NVML meter: its CUDA_VISIBLE_DEVICES (a
    managed server's own environment, else this process's) and how many of them it
    uses: vLLM tensor x pipeline (x data) parallel size from the first; llama.cpp all it
    sees (it splits layers over every visible GPU), none with n_gpu_layers 0; an
    endpoint the harness did not start: unknown (all visible ones are metered)."""
    env = {**os.environ, **(server.spec.env if server is not None else {})}
    visible, order = env.get("CUDA_VISIBLE_DEVICES"), env.get("CUDA_DEVICE_ORDER")
    engine = settings.engine or {}

    def size(name: str) -> int:
        value = getattr(settings, name, None) or engine.get(name) \
            or engine.get(name.replace("_", "-"))
        return int(value) if value else 1

    if backend_name == "vllm" or settings.server == "vllm":
        sizes = {n: size(n) for n in ("tensor_parallel_size", "pipeline_parallel_size",
                                      "data_parallel_size")}
        count = sizes["tensor_parallel_size"] * sizes["pipeline_parallel_size"] \
            * sizes["data_parallel_size"]
        why = "vLLM " + " x ".join(f"{n} {v}" for n, v in sizes.items()
                                   if v > 1 or n != "data_parallel_size")
        return EngineDevices(visible, count, why, order)
    if backend_name == "llamacpp" or settings.server in ("llama-cpp-python", "llama-server"):
        if settings.n_gpu_layers == 0:
            return EngineDevices(visible, 0, "llama.cpp with n_gpu_layers 0 runs on the CPU",
                                 order)
        return EngineDevices(visible, None, "llama.cpp splits layers over every GPU it sees",
                             order)
    if server is not None:
        return EngineDevices(visible, None, f"{server.spec.kind} server: every GPU it sees",
                             order)
    return EngineDevices(visible, None, "endpoint not started by the harness: which GPUs "
                         "serve it is not known; every visible GPU metered", order)


def summary_context(settings: BenchSettings, info: BackendInfo) -> dict[str, Any]:
    """The engine, settings and labels of the run summary (`<run>_<workload>.json`)."""
    engine = {k: v for k, v in asdict(info).items() if k != "settings"}
    return {"engine": engine, "labels": dict(settings.label or {}),
            "settings": {"bench": settings.given(), "engine": info.settings}}


class BenchRun:
    """One bench run; `run()` measures, `state.rows` and `files` hold what it made."""

    def __init__(self, settings: BenchSettings) -> None:
        self.settings = settings
        check_server_settings(settings)
        self.backend_name = choose_backend(settings)
        self.workload = bench_workload(settings)
        self.power: PowerSession = open_session(settings.power or "auto",
                                                tdp_w=settings.tdp_w)
        idle_s = settings.idle_power_s
        if idle_s is None:
            idle_s = 3.0 if self.power.has_meter else 0.0
        self.options = RunOptions(
            request_timeout_s=float(settings.timeout or 600.0), idle_power_s=float(idle_s),
            slo_ttft_ms=settings.slo_ttft_ms, slo_tpot_ms=settings.slo_tpot_ms,
            quiet=bool(settings.quiet), stall_timeout_s=settings.stall_timeout,
            concurrency_auto=settings.concurrency == "auto",
            max_concurrency=int(settings.max_concurrency or 64),
            labels=dict(settings.label or {}))
        self.machine = fingerprint()
        self.run_id = new_run_id()
        self.output = Path(settings.output or "results")
        self.state = RunState()
        self.files: RunFiles | None = None
        self.server: ManagedServer | None = None
        self.server_died = False
        self.terminated = False

    def max_in_flight(self) -> int | None:
        """The most requests this run holds in flight (a managed llama-server gets as many
        parallel slots): the largest closed-loop concurrency of the workload with the load
        flags applied, --concurrency auto's cap (--max-concurrency, default 64) for the
        scenarios it sweeps, open-loop scenarios' max_in_flight; None when unbounded."""
        cap = self.options.max_concurrency if self.options.concurrency_auto else None
        return workload_max_concurrency(self.workload, cap)

    def run(self) -> None:
        """Measure every scenario; KeyboardInterrupt/Terminated when interrupted."""
        try:
            asyncio.run(self._main())
        except (KeyboardInterrupt, asyncio.CancelledError):
            if self.terminated:
                raise Terminated() from None
            raise KeyboardInterrupt from None
        finally:
            if self.files is not None:
                self.files.close()
            self.power.close()

    async def _main(self) -> None:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()

        def on_term() -> None:
            self.terminated = True
            if task is not None:
                task.cancel()

        try:
            loop.add_signal_handler(signal.SIGTERM, on_term)
        except (NotImplementedError, RuntimeError):
            pass
        need_ctx = context_tokens(self.workload)
        server = (managed_server_for(self.settings, need_ctx, self.max_in_flight())
                  if self.settings.server else None)
        server_up = False
        try:
            endpoint = None
            if server is not None:
                await server.__aenter__()
                self.server, server_up = server, True
                endpoint = server.endpoint()
            self.options.price_usd_per_mtok = price_for(self.backend_name, self.settings,
                                                        endpoint)
            config = backend_config(self.backend_name, self.settings, endpoint, need_ctx)
            backend = create_backend(self.backend_name, **config)
            await self._measure(backend, server)
        finally:
            if server_up and server is not None and server.proc is not None \
                    and server.proc.poll() is not None:
                self.server_died = True
            if server is not None:
                await server.__aexit__(None, None, None)
            try:
                loop.remove_signal_handler(signal.SIGTERM)
            except (NotImplementedError, RuntimeError):
                pass

    async def _measure(self, backend: Backend, server: ManagedServer | None) -> None:
        info = await backend.open()
        try:
            self.files = RunFiles(self.output, self.machine, self.run_id, self.workload.name)
            self.files.summary_context = summary_context(self.settings, info)
            if server is not None:
                server.attach_log(self.files.server_log_path)
            self.power.attach(backend=backend, info=info, server=server,
                              devices=engine_devices(self.settings, self.backend_name, server))
            print(f"harness bench: {info.backend} ({info.engine} {info.engine_version}, "
                  f"{info.device}) · model {info.model} [{info.quant or '?'}, "
                  f"{info.weights}] · workload {self.workload.name} · power: "
                  f"{self.power.describe()}", file=sys.stderr)
            # Everything built so far (the engine's and the client's modules, settings)
            # lives to the end: out of the collector's sight, a full collection no longer
            # walks it mid-window (about a tenth of the client's CPU per streamed token at
            # 64 streams, and pauses that delay token timestamps; bench/client_overhead.py).
            gc.collect()
            gc.freeze()
            await run_workload(backend, info, self.workload, self.files, self.machine,
                               self.run_id, self.power, self.options, self.state)
        finally:
            await backend.close()

    def dead_server_report(self) -> str:
        """One paragraph when the managed server exited during the run, else ''."""
        server = self.server
        if not self.server_died or server is None or server.proc is None:
            return ""
        tail = "\n".join("  | " + line for line in server.log_tail().splitlines())
        kept = (f"; completed requests are kept in {self.files.requests_path}"
                if self.files else "")
        return (f"harness bench: the {server.spec.kind} server exited with code "
                f"{server.proc.returncode} during the run; later requests failed and are "
                f"recorded as errors{kept}. Server log, last lines:\n{tail}")


__all__ = ["BenchRun", "bench_workload", "choose_backend", "engine_devices", "price_for"]
