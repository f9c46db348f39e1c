"""llama.cpp's own `llama-server` as a managed server kind (`--server llama-server`).

The binary is, in order: `--server-binary PATH`, the `LLAMA_SERVER` environment
variable, or the one built from the SAME source as the installed llama-cpp-python (its
sdist's `vendor/llama.cpp`, the wheel's CMake flags) by `scripts/build-llama-tool` and
cached beside the wheel (`~/.cache/llm-harness/tools/<key>/bin/`); built on first use
with a progress message (`make llama-server` builds it ahead).

The server is started the way it batches concurrent users:
- on a free loopback port, with `-np N` parallel slots: N is `--parallel` or `-np` in
  `[engine] server_args`, else the run's largest concurrency (`max_concurrency`: the
  bench session passes `workload_max_concurrency` of the run, --concurrency auto's cap
  included; else the largest `--concurrency`), else llama-server's own default of 4;
- continuous batching on (`-cb`, llama-server's default, made explicit);
- the context sized for N slots: `-c n_ctx*N`, n_ctx the per-request context (--n-ctx,
  else what fits the workload's longest request), so every slot holds a whole request;
- `--metrics` on: its Prometheus `/metrics` fills the `server_*` columns;
- threads, GPU layers and flash attention from the llama.cpp settings, and llama.cpp's
  own defaults otherwise, every one written on the command line and recorded.

Requests force their output length (`max_tokens` is llama-server's `n_predict`, plus
`ignore_eos`); usage and per-request `timings` come in the final stream chunk.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from backends.llamacpp import default_threads
from harness.errors import UserError
from harness.models.resolve import resolve_gguf
from harness.servers.managed import LOOPBACK, ServerSpec

SERVER_ENV = "LLAMA_SERVER"
BENCH_ENV = "LLAMA_BENCH"
BUILD_SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "build-llama-tool"
DEFAULT_HEALTH_TIMEOUT_S = 300.0
DEFAULT_N_CTX = 4096
DEFAULT_SLOTS = 4  # llama-server's own default for -np auto
_NP_FLAGS = ("-np", "--parallel")


def _get(values: Any, key: str, default: Any = None) -> Any:
    """A setting from the run's settings (a dict, or an object with attributes)."""
    if isinstance(values, dict):
        value = values.get(key)
    else:
        value = getattr(values, key, None)
    return default if value is None else value


def _engine(values: Any) -> dict[str, Any]:
    """The [engine] keys that configure the server process (server_args, server_env)."""
    out: dict[str, Any] = {}
    for key in ("engine", "server_engine"):
        table = _get(values, key) or {}
        if isinstance(table, dict):
            out.update({k: v for k, v in table.items() if k in ("server_args", "server_env")})
    return out


def _server_args(values: Any) -> list[str]:
    extra = _engine(values).get("server_args", [])
    if isinstance(extra, str):
        return shlex.split(extra)
    if not isinstance(extra, list) or not all(isinstance(a, (str, int, float)) for a in extra):
        raise UserError("[engine] server_args must be a list of strings or one string")
    return [str(a) for a in extra]


def _server_env(values: Any) -> dict[str, str]:
    env = _engine(values).get("server_env", {})
    if not isinstance(env, dict):
        raise UserError("[engine] server_env must be a table of NAME = \"value\"")
    return {str(k): str(v) for k, v in env.items()}


# -- the binaries -----------------------------------------------------------------------


def _script() -> Path:
    if not BUILD_SCRIPT.is_file():
        raise UserError(f"{BUILD_SCRIPT} is missing (the harness is not run from its source "
                        f"tree); give a llama-server binary with --server-binary PATH or "
                        f"{SERVER_ENV}=PATH")
    return BUILD_SCRIPT


def tools_dir() -> Path:
    """The cache folder the tools of this machine's build live in (built or not)."""
    try:
        out = subprocess.run(["bash", str(_script()), "--print-dir"], capture_output=True,
                             text=True, check=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as exc:
        raise UserError(f"cannot run {BUILD_SCRIPT}: {exc}") from None
    return Path(out.stdout.strip())


def cached_tool(name: str) -> Path | None:
    """The cached `name` (llama-server, llama-bench) when it has been built, else None."""
    path = tools_dir() / name
    return path if path.is_file() and os.access(path, os.X_OK) else None


def build_tool(name: str) -> Path:
    """Build (first use) or find the cached `name`; the build prints its progress."""
    cached = cached_tool(name)
    if cached is not None:
        return cached
    print(f"harness: {name} is not built yet for this machine; building it now from the "
          "llama-cpp-python sdist (once; `make llama-server` does this ahead)",
          file=sys.stderr, flush=True)
    try:
        out = subprocess.run(["bash", str(_script()), name], stdout=subprocess.PIPE,
                             text=True, check=False)
    except OSError as exc:
        raise UserError(f"cannot run {BUILD_SCRIPT}: {exc}") from None
    lines = out.stdout.strip().splitlines()
    if out.returncode != 0 or not lines or not Path(lines[-1]).is_file():
        raise UserError(f"building {name} failed (exit {out.returncode}; the build log is "
                        f"named above); or give your own binary with --server-binary PATH "
                        f"or {SERVER_ENV}=PATH")
    return Path(lines[-1])


def _user_binary(text: str, where: str) -> Path:
    path = Path(text).expanduser()
    if not path.is_absolute() and os.sep not in text:
        found = _which(text)
        if found is not None:
            return found
    fix = ("give the path of a llama-server binary, or leave it out to use the one built "
           "from the llama-cpp-python sdist (make llama-server)")
    if path.is_dir():
        raise UserError(f"{where} {text}: a folder, not a file; {fix}")
    if not path.is_file():
        on_path = " (nor on PATH)" if not path.is_absolute() and os.sep not in text else ""
        raise UserError(f"{where} {text}: no such file{on_path}; {fix}")
    if not os.access(path, os.X_OK):
        raise UserError(f"{where} {text}: not executable; chmod +x it, or {fix}")
    return path


def _which(name: str) -> Path | None:
    found = shutil.which(name)
    return Path(found) if found else None


def find_server_binary(values: Any) -> tuple[Path, str]:
    """(llama-server binary, where it came from: flag, env or cache)."""
    flag = _get(values, "server_binary")
    if flag:
        return _user_binary(str(flag), "--server-binary"), "--server-binary"
    env = os.environ.get(SERVER_ENV)
    if env:
        return _user_binary(env, SERVER_ENV), SERVER_ENV
    return build_tool("llama-server"), "built from the llama-cpp-python sdist (cached)"


def binary_version(binary: Path) -> str:
    """What `llama-server --version` says ("0.5.0-dev (build 1, commit 0c1e570)"), or ""."""
    try:
        out = subprocess.run([str(binary), "--version"], capture_output=True, text=True,
                             timeout=60, check=False)
    except (OSError, subprocess.SubprocessError):
        return ""
    m = re.search(r"version:\s*(.+)", (out.stdout or "") + (out.stderr or ""))
    return m.group(1).strip() if m else ""


def _build_info(binary: Path) -> str:
    """The BUILD_INFO the build script writes beside a cached binary, one line."""
    info = binary.parent / "BUILD_INFO"
    try:
        return "; ".join(line.strip() for line in info.read_text().splitlines() if line.strip())
    except OSError:
        return ""


# -- the server -------------------------------------------------------------------------


def workload_max_concurrency(workload: Any, auto_cap: int | None = None) -> int | None:
    """The most requests a run of `workload` (the load flags applied) holds in flight:
    per closed-loop scenario its largest concurrency, or `auto_cap` when `--concurrency
    auto` sweeps it (the sweep may go up to its cap, --max-concurrency); per open-loop
    scenario its max_in_flight. None when no scenario bounds it (open loop, no cap)."""
    levels: list[int] = []
    for scenario in getattr(workload, "scenarios", ()) or ():
        if scenario.rate_rps:
            if scenario.max_in_flight:
                levels.append(int(scenario.max_in_flight))
        elif auto_cap is not None:
            levels.append(int(auto_cap))
        else:
            levels.extend(int(c) for c in scenario.concurrency or ())
    return max(levels) if levels else None


def parallel_slots(values: Any, max_concurrency: int | None = None) -> tuple[int, str]:
    """(N slots, why): the `parallel` setting, `-np` in [engine] server_args, the run's
    largest concurrency (`max_concurrency`, else --concurrency), else llama-server's own
    default of 4."""
    given = _get(values, "parallel")
    if given is not None:
        return int(given), "--parallel"
    args = _server_args(values)
    for i, arg in enumerate(args):
        if arg in _NP_FLAGS and i + 1 < len(args):
            try:
                return int(args[i + 1]), "-np in [engine] server_args"
            except ValueError:
                raise UserError(f"[engine] server_args: {arg} {args[i + 1]!r} is not a "
                                "number") from None
    if max_concurrency:
        return int(max_concurrency), "largest concurrency of the run"
    concurrency = _get(values, "concurrency")
    if concurrency == "auto":  # the saturation sweep may go up to its cap
        return int(_get(values, "max_concurrency") or 64), "--concurrency auto's cap " \
            "(--max-concurrency, default 64)"
    if concurrency:
        return max(int(c) for c in concurrency), "largest --concurrency"
    return DEFAULT_SLOTS, "llama-server's default (the run's concurrency was not known)"


def llama_server_spec(values: Any, context_tokens: int | None, port: int,
                      max_concurrency: int | None = None) -> ServerSpec:
    """`llama-server` on the GGUF named by --model (the default model if none), with N
    parallel slots, continuous batching, a context of N whole requests and --metrics.
    `context_tokens`: what one request of the workload needs (--n-ctx wins)."""
    path = resolve_gguf(_get(values, "model"))
    n_slots, why = parallel_slots(values, max_concurrency)
    if n_slots < 1:
        raise UserError(f"llama-server needs at least 1 parallel slot, got {n_slots}")
    timeout = _get(values, "server_timeout")
    if timeout is not None and float(timeout) <= 0:
        raise UserError(f"--server-timeout must be a number of seconds > 0, got {timeout!r}")
    binary, source = find_server_binary(values)
    n_ctx = int(_get(values, "n_ctx") or context_tokens or DEFAULT_N_CTX)
    threads = int(_get(values, "n_threads") or default_threads())
    flash = _get(values, "flash_attn")
    flash_arg = "auto" if flash is None else ("on" if flash else "off")
    alias = str(_get(values, "model") or path.stem)
    argv = [str(binary), "-m", str(path), "--alias", alias, "--host", LOOPBACK,
            "--port", str(port), "-np", str(n_slots), "-c", str(n_ctx * n_slots),
            "-cb", "--metrics", "-t", str(threads), "-tb", str(threads),
            "-fa", flash_arg, "--no-webui"]
    n_gpu_layers = _get(values, "n_gpu_layers")
    if n_gpu_layers is not None:
        argv += ["-ngl", str(n_gpu_layers)]
    user_args = _server_args(values)
    argv += user_args
    version = binary_version(binary)
    from_cache = source.startswith("built")
    engine_version = version or "unknown"
    if from_cache:
        engine_version += f" (llama-cpp-python {_sdist_version(binary)} sdist)"
    return ServerSpec(
        kind="llama-server", argv=argv, base_url=f"http://{LOOPBACK}:{port}/v1",
        model=alias, health_timeout_s=float(timeout or DEFAULT_HEALTH_TIMEOUT_S),
        env=_server_env(values), tokenizer=str(path), force_length="ignore_eos",
        info={"engine": "llama.cpp (llama-server)", "engine_version": engine_version,
              "model_path": str(path), "kind": "llama-server",
              "device": _device(binary, from_cache, n_gpu_layers),
              "binary": str(binary), "binary_source": source,
              "build": _build_info(binary) if from_cache else "",
              "n_parallel": n_slots, "n_parallel_from": why, "n_ctx_per_slot": n_ctx,
              "n_ctx": n_ctx * n_slots, "n_threads": threads,
              "flash_attn": flash_arg, "n_gpu_layers": "llama-server default"
              if n_gpu_layers is None else n_gpu_layers,
              "cont_batching": True, "server_args": shlex.join(user_args),
              "metrics_url": f"http://{LOOPBACK}:{port}/metrics",
              "output_length": "max_tokens (llama-server's n_predict) + ignore_eos"})


def _device(binary: Path, from_cache: bool, n_gpu_layers: Any) -> str:
    """cpu, cuda or metal for a cached build (from its flags); "unknown" for a user's."""
    if n_gpu_layers == 0:
        return "cpu"
    if not from_cache:
        return "unknown (user binary)"
    info = _build_info(binary)
    if "GGML_CUDA=on" in info:
        return "cuda"
    if "Darwin arm64" in info:
        return "metal"
    return "cpu"


def _sdist_version(binary: Path) -> str:
    info = _build_info(binary)
    m = re.search(r"llama-cpp-python ([^\s;]+)", info)
    return m.group(1) if m else "?"


__all__ = ["BENCH_ENV", "SERVER_ENV", "binary_version", "build_tool", "cached_tool",
           "find_server_binary", "llama_server_spec", "parallel_slots", "tools_dir",
           "workload_max_concurrency"]
