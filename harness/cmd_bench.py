"""`harness bench`: run a workload on a backend and write result files."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import tomllib
from pathlib import Path
from typing import Any

from harness.config_check import check_value, credential_key_error
from harness.errors import UserError, did_you_mean, one_line
from harness.secrets import is_secret_name, register_env
from harness.table import fmt, render

HELP = "measure a model on a backend with a workload; write CSV/JSONL results"
DESCRIPTION = """\
Run a workload (warmup, repetitions, concurrency or arrival-rate sweeps) on one backend
and write, under OUTPUT/<machine-id>/:
  <run>_<workload>.csv             one row per scenario and load level (all context)
  <run>_<workload>.requests.jsonl  every measured request, as it completes
  <run>_<workload>.power.jsonl     the power timeline (when a meter is available)
  machine.json                     this machine's fingerprint

examples:
  harness bench                                    # default model, default workload
  harness bench --model my.gguf --workload chat
  harness bench --workload smoke --concurrency 1,4
  harness bench --backend openai --base-url http://127.0.0.1:8000/v1 --model NAME
"""

# Flags a --config TOML may set (same names, dashes or underscores).
CONFIG_KEYS = {"backend", "model", "workload", "concurrency", "rate", "requests",
               "repetitions", "warmup", "server", "server_command", "base_url",
               "api_key_env", "power", "output", "n_ctx", "n_threads", "n_gpu_layers",
               "flash_attn", "timeout", "slo_ttft_ms", "slo_tpot_ms", "idle_power_s", "tdp_w",
               "api", "endpoint", "engine", "server_timeout", "tokenizer", "stall_timeout",
               # vLLM engine settings (EngineArgs names)
               "dtype", "max_model_len", "max_num_seqs", "gpu_memory_utilization",
               "quantization", "tensor_parallel_size", "pipeline_parallel_size",
               "distributed_executor_backend", "enforce_eager"}


def _int_list(flag: str):
    def parse(text: str) -> tuple[int, ...]:
        try:
            values = tuple(int(v) for v in text.split(",") if v.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag} takes integers like 1,4,8") from None
        if not values or any(v < 1 for v in values):
            raise argparse.ArgumentTypeError(f"{flag} takes integers >= 1 like 1,4,8")
        return values
    return parse


def _float_list(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError("--rate takes numbers like 0.5,1,2") from None
    if not values or any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError("--rate takes numbers > 0 like 0.5,1,2")
    return values


def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("what to run")
    g.add_argument("--backend", default=None, help="llamacpp (default), openai or vllm")
    g.add_argument("--model", default=None,
                   help="GGUF path, hf:owner/repo/file.gguf, synth:SHAPE, an HF id/dir "
                        "(vllm) or the served model name (openai); default: Gemma 3 270M "
                        "Q4_K_M from PyPI")
    g.add_argument("--workload", default=None,
                   help="built-in name (smoke, default, chat, rag, long-context) or a "
                        ".toml file (default: default)")
    g.add_argument("--config", type=Path, default=None,
                   help="TOML file whose keys are these flags' names; flags win over it")
    g = p.add_argument_group("load (override the workload)")
    g.add_argument("--concurrency", type=_int_list("--concurrency"), default=None,
                   help="closed-loop requests in flight; a list sweeps: 1,4,8")
    g.add_argument("--rate", type=_float_list, default=None,
                   help="open-loop arrivals per second; a list sweeps: 0.5,1,2")
    g.add_argument("--requests", type=int, default=None, help="requests per repetition")
    g.add_argument("--repetitions", type=int, default=None, help="measured repetitions")
    g.add_argument("--warmup", type=int, default=None, help="warmup requests per load level")
    g.add_argument("--slo-ttft-ms", type=float, default=None, help="TTFT SLO for goodput")
    g.add_argument("--slo-tpot-ms", type=float, default=None, help="TPOT SLO for goodput")
    g.add_argument("--timeout", type=float, default=None,
                   help="per-request timeout in seconds (default 600)")
    g.add_argument("--stall-timeout", type=float, default=None,
                   help="end a request as 'stall' when no token arrives for this many "
                        "seconds after its first one (default: only --timeout applies)")
    g = p.add_argument_group("llama.cpp engine")
    g.add_argument("--n-ctx", type=int, default=None,
                   help="context size (default: fits the workload's longest request)")
    g.add_argument("--n-threads", type=int, default=None, help="CPU threads (default: all)")
    g.add_argument("--n-gpu-layers", type=int, default=None,
                   help="layers on the GPU (default: all where a GPU backend exists)")
    g.add_argument("--flash-attn", action="store_true", default=None, help="flash attention")
    g = p.add_argument_group("vLLM engine (offline and --server vllm; any other EngineArgs "
                             "field: [engine] table of --config)")
    g.add_argument("--dtype", default=None, help="auto, bfloat16, float16, float32")
    g.add_argument("--max-model-len", type=int, default=None, help="context length")
    g.add_argument("--max-num-seqs", type=int, default=None,
                   help="most sequences the engine batches at once")
    g.add_argument("--gpu-memory-utilization", type=float, default=None,
                   help="fraction of GPU memory vLLM may take (0-1)")
    g.add_argument("--quantization", default=None, help="e.g. awq, gptq, fp8")
    g.add_argument("--tensor-parallel-size", type=int, default=None, help="GPUs per layer")
    g.add_argument("--pipeline-parallel-size", type=int, default=None, help="pipeline stages")
    g.add_argument("--distributed-executor-backend", default=None,
                   help="mp (one node) or ray (several nodes)")
    g.add_argument("--enforce-eager", action="store_true", default=None,
                   help="no CUDA graphs / torch.compile: fast start, slower steps")
    g = p.add_argument_group("servers and APIs")
    g.add_argument("--server", default=None,
                   help="start a managed server: llama-cpp-python, vllm or command")
    g.add_argument("--server-command", default=None,
                   help="with --server command: the command line that starts it")
    g.add_argument("--base-url", default=None, help="OpenAI-compatible endpoint URL")
    g.add_argument("--api-key-env", default=None,
                   help="environment variable holding the API key (default OPENAI_API_KEY)")
    g.add_argument("--endpoint", choices=["completions", "chat"], default=None,
                   help="openai backend: /v1/completions or /v1/chat/completions")
    g.add_argument("--server-timeout", type=float, default=None,
                   help="seconds a managed server may take to become healthy (default 120 "
                        "for llama-cpp-python, 900 for vllm, 300 for a command)")
    g.add_argument("--tokenizer", default=None,
                   help="openai backend: count tokens with this GGUF or Hugging Face "
                        "tokenizer when the server sends no usage")
    g = p.add_argument_group("measurement and output")
    g.add_argument("--power", default=None,
                   choices=["auto", "none", "nvml", "rapl", "apple", "estimate"],
                   help="power meter (default auto: the best available, else none)")
    g.add_argument("--tdp-w", type=float, default=None,
                   help="CPU TDP in watts for --power estimate (default: a table of known "
                        "CPUs)")
    g.add_argument("--idle-power-s", type=float, default=None,
                   help="seconds of idle power measured before each load level (default 0 "
                        "when no meter, 3 otherwise)")
    g.add_argument("--output", type=Path, default=None, help="results folder (default results/)")
    g.add_argument("--quiet", action="store_true", help="no progress line")


def _merge_config(args: argparse.Namespace) -> dict[str, Any]:
    """Flags over --config file values; the file validated key by key."""
    values: dict[str, Any] = {}
    if args.config is not None:
        try:
            data = tomllib.loads(args.config.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise UserError(f"config file not found: {args.config} (--config)") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise UserError(f"cannot read config file {args.config}: {exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise UserError(one_line(f"{args.config}: not valid TOML: {exc}")) from None
        for key, value in data.items():
            norm = key.replace("-", "_")
            if norm not in CONFIG_KEYS:
                if is_secret_name(norm):
                    raise credential_key_error(args.config, key)
                raise UserError(one_line(f"{args.config}: unknown key '{key}'.")
                                + did_you_mean(norm, sorted(CONFIG_KEYS))
                                + f" Known: {', '.join(sorted(CONFIG_KEYS))}")
            values[norm] = check_value(norm, value, one_line(f"{args.config}: '{key}'"))
    for key, value in vars(args).items():
        if value is not None and key != "config":
            values[key] = check_value(key, value, "--" + key.replace("_", "-"))
    return values


def _n_ctx_for(workload: Any) -> int:
    """A context that fits the workload's longest prompt plus its output (and a margin)."""
    longest = max(s.input_tokens.max if s.input_tokens.kind != "fixed" else
                  int(s.input_tokens.mean) for s in workload.scenarios)
    out = max(s.output_tokens for s in workload.scenarios)
    need = longest + out + 64
    return max(512, -(-need // 256) * 256)


def backend_config(name: str, values: dict[str, Any], workload: Any) -> dict[str, Any]:
    """The typed config of backend `name` from flags and config file."""
    engine = dict(values.get("engine", {}))
    if name == "llamacpp":
        cfg = {"model": values.get("model"), "n_ctx": values.get("n_ctx") or _n_ctx_for(workload)}
        for key in ("n_threads", "n_gpu_layers", "flash_attn"):
            if values.get(key) is not None:
                cfg[key] = values[key]
        return {**cfg, **engine}
    if name == "openai":
        from backends.openai_api import config_from_values

        return config_from_values(values, engine)
    if name == "vllm":
        from backends.vllm_engine import config_from_values

        return config_from_values(values, engine)
    return engine


def summary_table(rows: list[dict[str, Any]]) -> str:
    """The table `bench` prints: one line per scenario and load level."""
    from harness.power.columns import joules_label

    headers = ["scenario", "load", "ok/req", "out tok/s", "±std", "prefill tok/s",
               "decode tok/s", "eng prefill", "eng decode", "TTFT p50 ms", "TPOT p50 ms",
               "E2E p50 ms", "J/out tok"]
    body = []
    for r in rows:
        load = (f"{r['request_rate_rps']:g}/s" if r.get("request_rate_rps")
                else f"c={r.get('concurrency')}")
        body.append([
            r["scenario"] + ("*" if r.get("status") == "partial" else ""), load,
            f"{(r.get('requests') or 0) - (r.get('errors') or 0)}/{r.get('requests') or 0}",
            r.get("output_throughput_tok_s"), r.get("output_throughput_tok_s_std"),
            r.get("prefill_tok_s"), r.get("decode_tok_s"), r.get("engine_prefill_tok_s"),
            r.get("engine_decode_tok_s"), r.get("ttft_ms_p50"), r.get("tpot_ms_p50"),
            r.get("e2e_ms_p50"), joules_label(r),
        ])
    return render(headers, body)


def run(args: argparse.Namespace) -> int:
    from backends.registry import BACKENDS, create_backend
    from harness.machine import fingerprint
    from harness.power import open_session
    from harness.results import RunFiles
    from harness.runner import RunOptions, RunState, new_run_id, run_workload
    from workloads.spec import load_workload

    values = _merge_config(args)
    register_env(str(values.get("api_key_env") or "OPENAI_API_KEY"))  # masked in all output
    backend_name = values.get("backend") or (
        "vllm" if values.get("server") == "vllm" else
        "openai" if values.get("base_url") or values.get("server") else "llamacpp")
    if backend_name not in BACKENDS:
        raise UserError(f"unknown backend '{backend_name}' (--backend); known: "
                        f"{', '.join(sorted(BACKENDS))}." + did_you_mean(backend_name,
                                                                         list(BACKENDS)))
    workload = load_workload(str(values.get("workload") or "default"))
    workload = workload.with_overrides(
        concurrency=values.get("concurrency"), rate_rps=values.get("rate"),
        requests=values.get("requests"), repetitions=values.get("repetitions"),
        warmup_requests=values.get("warmup"))
    power = open_session(values.get("power") or "auto", tdp_w=values.get("tdp_w"))
    idle_s = values.get("idle_power_s")
    if idle_s is None:
        idle_s = 3.0 if getattr(power, "has_meter", False) else 0.0
    options = RunOptions(request_timeout_s=float(values.get("timeout") or 600.0),
                         idle_power_s=float(idle_s),
                         slo_ttft_ms=values.get("slo_ttft_ms"),
                         slo_tpot_ms=values.get("slo_tpot_ms"), quiet=bool(values.get("quiet")),
                         stall_timeout_s=values.get("stall_timeout"))
    machine = fingerprint()
    run_id = new_run_id()
    output = Path(values.get("output") or "results")
    state = RunState()
    files: RunFiles | None = None
    terminated = False

    async def main() -> None:
        nonlocal files, terminated
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()

        def on_term() -> None:
            nonlocal terminated
            terminated = True
            if task is not None:
                task.cancel()

        try:
            loop.add_signal_handler(signal.SIGTERM, on_term)
        except (NotImplementedError, RuntimeError):
            pass
        server_cm = None
        server_up = False
        if values.get("server"):
            from harness.servers import managed_server_for

            server_cm = managed_server_for(values, workload)
        try:
            if server_cm is not None:
                server = await server_cm.__aenter__()
                server_up = True
                values["base_url"] = server.base_url
                values.setdefault("model", server.model)
                for key, value in server.backend_values().items():
                    values.setdefault(key, value)  # tokenizer, server_info
            backend = create_backend(backend_name, **backend_config(backend_name, values,
                                                                   workload))
            info = await backend.open()
            try:
                files = RunFiles(output, machine, run_id, workload.name)
                if server_cm is not None:
                    server.attach_log(files.server_log_path)
                power_ctx = getattr(power, "attach", None)
                if power_ctx is not None:
                    power_ctx(backend=backend, info=info, server=server_cm and server)
                print(f"harness bench: {info.backend} ({info.engine} {info.engine_version}, "
                      f"{info.device}) · model {info.model} [{info.quant or '?'}, "
                      f"{info.weights}] · workload {workload.name} · power: "
                      f"{power.describe()}", file=sys.stderr)
                await run_workload(backend, info, workload, files, machine, run_id, power,
                                   options, state)
            finally:
                await backend.close()
        finally:
            if server_up and server_cm.proc is not None and server_cm.proc.poll() is not None:
                _report_dead_server(server_cm, files)
            if server_cm is not None:
                await server_cm.__aexit__(None, None, None)
            try:
                loop.remove_signal_handler(signal.SIGTERM)
            except (NotImplementedError, RuntimeError):
                pass

    try:
        asyncio.run(main())
    except (KeyboardInterrupt, asyncio.CancelledError):
        _report(state.rows, files, partial=True)
        if terminated:
            from harness.cli import Terminated

            raise Terminated() from None
        raise KeyboardInterrupt from None
    finally:
        if files is not None:
            files.close()
    _report(state.rows, files, partial=False)
    _breakeven_hint(state.rows)
    return 0


def _report_dead_server(server: Any, files: Any) -> None:
    """A managed server that exited during the run: one line saying so, its log tail."""
    tail = "\n".join("  | " + line for line in server.log_tail().splitlines())
    kept = f"; completed requests are kept in {files.requests_path}" if files else ""
    print(f"harness bench: the {server.spec.kind} server exited with code "
          f"{server.proc.returncode} during the run; later requests failed and are recorded "
          f"as errors{kept}. Server log, last lines:\n{tail}", file=sys.stderr)


def _report(rows: list[dict[str, Any]], files: Any, partial: bool) -> None:
    if rows:
        print(summary_table(rows))
        from harness.power.columns import power_summary

        print(power_summary(rows))
        noisy = [r["scenario"] for r in rows if r.get("noisy")]
        if noisy:
            print(f"note: the machine was busy during {', '.join(noisy)} "
                  "(load average recorded); figures may be low")
        if any(r.get("status") == "partial" for r in rows):
            print("* partial: interrupted before the scenario finished")
    if files is not None:
        print("results:" if not partial else "results so far:")
        for path in files.written():
            print(f"  {path}")


def _breakeven_hint(rows: list[dict[str, Any]]) -> None:
    """A short break-even summary for this machine, when the break-even model exists."""
    try:
        from harness.breakeven import bench_summary
    except ImportError:
        return
    text = bench_summary(rows)
    if text:
        print()
        print(text)


__all__ = ["fmt"]
