"""Server kinds: each turns the run's settings into a `ServerSpec` (the command line, where
it will answer, the served model, the tokenizer the client can count with, how output
length is forced). `SERVER_KINDS` is the one registry; `register_server_kind` adds one.

- `llama-cpp-python`: `python -m llama_cpp.server` on the GGUF from `--model`, with the
  flags that keep its numbers honest: `--logits_all False` (no logits kept for every
  prompt token), `--interrupt_requests False` (concurrent requests queue instead of
  cancelling each other), a chat format for base models without a template (`gemma`
  for Gemma), a batch as large as the context (as the in-process backend uses).
- `llama-server`: llama.cpp's own server (`harness.servers.llama_server`), parallel slots
  sized by the run's largest concurrency (the builders' `max_concurrency`).
- `vllm`: vLLM's OpenAI server (`python -m vllm.entrypoints.openai.api_server`) with
  every vLLM setting (flags and [engine] table) as its command-line flag.
- `command`: any command line (`--server-command`); `{port}`, `{host}` and `{model}`
  in it are filled in.

`[engine] server_args` are appended to every kind's command line.
"""

from __future__ import annotations

import importlib.util
import os
import shlex
import sys
from collections.abc import Callable
from pathlib import Path

from backends.openai.tokenizer import quiet_stderr
from backends.vllm.config import (
    CLIENT_KEYS,
    check_engine_keys,
    check_model_dir,
    device_guess,
    engine_version,
    server_cli_args,
)
from harness.config.settings import BenchSettings
from harness.errors import UserError, did_you_mean
from harness.models.resolve import resolve_gguf
from harness.servers.llama_server import llama_server_spec
from harness.servers.managed import LOOPBACK, ManagedServer, ServerSpec, free_port

# (settings, context tokens the workload needs, port, the most requests the run holds in
# flight or None when unbounded) -> how to start the server
ServerBuilder = Callable[[BenchSettings, int, int, int | None], ServerSpec]
# Settings that configure `--server llama-server` only.
LLAMA_SERVER_ONLY = ("server_binary", "parallel")


def server_args(settings: BenchSettings) -> list[str]:
    """`[engine] server_args` (a list, or one string split like a shell would)."""
    extra = settings.server_engine.get("server_args", [])
    if isinstance(extra, str):
        return shlex.split(extra)
    if not isinstance(extra, list) or not all(isinstance(a, (str, int, float)) for a in extra):
        raise UserError("[engine] server_args must be a list of strings or one string")
    return [str(a) for a in extra]


def health_timeout_s(settings: BenchSettings, default_s: float) -> float:
    """--server-timeout, else the kind's default."""
    return float(settings.server_timeout) if settings.server_timeout else default_s


def llama_cpp_python_spec(settings: BenchSettings, context_tokens: int, port: int,
                          max_concurrency: int | None = None) -> ServerSpec:
    """`python -m llama_cpp.server` on the GGUF named by --model (default model if none)."""
    try:
        import llama_cpp
        import llama_cpp.server  # noqa: F401 - its presence is the check
    except ImportError as exc:
        raise UserError(f"--server llama-cpp-python needs llama-cpp-python with its server "
                        f"extra ({exc}): pip install -e '.[llamacpp]'") from None
    path = resolve_gguf(settings.model)
    meta = _gguf_metadata(path)
    chat_format = settings.server_engine.get("chat_format")
    if chat_format is None and "tokenizer.chat_template" not in meta:
        # A base model has no template; without one llama_cpp.server falls back to a
        # Llama-2 format. Gemma models get their own.
        chat_format = "gemma" if meta.get("general.architecture", "").startswith(
            "gemma") else "chatml"
    n_ctx = int(settings.n_ctx or context_tokens)
    alias = str(settings.model or path.stem)
    argv = [sys.executable, "-m", "llama_cpp.server", "--model", str(path),
            "--model_alias", alias, "--host", LOOPBACK, "--port", str(port),
            "--n_ctx", str(n_ctx), "--n_batch", str(n_ctx), "--n_ubatch", "512",
            "--logits_all", "False", "--interrupt_requests", "False"]
    if chat_format:
        argv += ["--chat_format", str(chat_format)]
    if settings.n_threads:
        argv += ["--n_threads", str(settings.n_threads),
                 "--n_threads_batch", str(settings.n_threads)]
    gpu = bool(llama_cpp.llama_supports_gpu_offload())
    n_gpu_layers = settings.n_gpu_layers
    if n_gpu_layers is None:
        n_gpu_layers = -1 if gpu else 0
    argv += ["--n_gpu_layers", str(n_gpu_layers)]
    if settings.flash_attn:
        argv += ["--flash_attn", "True"]
    argv += server_args(settings)
    return ServerSpec(
        kind="llama-cpp-python", argv=argv, base_url=f"http://{LOOPBACK}:{port}/v1",
        model=alias, health_timeout_s=health_timeout_s(settings, 120.0), tokenizer=str(path),
        force_length="min_tokens",
        info={"engine": "llama.cpp (llama_cpp.server)", "engine_version": llama_cpp.__version__,
              "model_path": str(path), "device": "cpu" if not gpu or n_gpu_layers == 0
              else "gpu", "kind": "llama-cpp-python", "chat_format": chat_format or "",
              "n_ctx": n_ctx, "n_gpu_layers": n_gpu_layers,
              "flags": "--logits_all False --interrupt_requests False"})


def _gguf_metadata(path: Path) -> dict[str, str]:
    """A GGUF's metadata, read with llama.cpp's vocab-only loader (no weights)."""
    import llama_cpp

    try:
        with quiet_stderr():
            llm = llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False)
    except (ValueError, RuntimeError, OSError) as exc:
        raise UserError(f"llama.cpp cannot read {path}: {exc}") from None
    try:
        return dict(llm.metadata)
    finally:
        llm.close()


def vllm_spec(settings: BenchSettings, context_tokens: int, port: int,
              max_concurrency: int | None = None) -> ServerSpec:
    """vLLM's OpenAI server on --model (an HF id or local folder) with every vLLM setting
    (flags and [engine] table) passed as its command-line flag, and recorded."""
    model = settings.model
    if not model:
        raise UserError("--server vllm needs --model: a Hugging Face id or a local model "
                        "directory")
    local = check_model_dir(str(model))
    if importlib.util.find_spec("vllm") is None:
        raise UserError("--server vllm: vLLM is not installed for this Python; run "
                        "`make install-vllm` and use .venv-vllm/bin/harness (make bench "
                        "BACKEND=vllm ARGS='--server vllm' does both)")
    engine = {k: v for k, v in settings.engine.items()
              if k not in CLIENT_KEYS and k != "metrics_sample_s"}
    engine.update(settings.owned_by("vllm"))
    check_engine_keys(set(engine))
    argv = [sys.executable, "-m", "vllm.entrypoints.openai.api_server",
            "--model", str(local or model), "--served-model-name", str(model),
            "--host", LOOPBACK, "--port", str(port), *server_cli_args(engine),
            *server_args(settings)]
    env = {} if os.environ.get("VLLM_CPU_KVCACHE_SPACE") else {"VLLM_CPU_KVCACHE_SPACE": "2"}
    device = device_guess()
    return ServerSpec(
        kind="vllm", argv=argv, base_url=f"http://{LOOPBACK}:{port}/v1", model=str(model),
        health_timeout_s=health_timeout_s(settings, 900.0), env=env,
        tokenizer=str(local or model), force_length="ignore_eos",
        info={"engine": "vllm", "engine_version": engine_version(), "kind": "vllm",
              "model_path": str(local.resolve()) if local else "", "device": device,
              "engine_args": engine,
              "cpu_kvcache_space_gib": os.environ.get("VLLM_CPU_KVCACHE_SPACE",
                                                      env.get("VLLM_CPU_KVCACHE_SPACE"))
              if device == "cpu" else None})


def command_spec(settings: BenchSettings, context_tokens: int, port: int,
                 max_concurrency: int | None = None) -> ServerSpec:
    """Any server command line (`--server-command`); `{port}`, `{host}`, `{model}` are
    filled in, and the server is reached at --base-url or http://127.0.0.1:{port}/v1."""
    command = settings.server_command
    if not command:
        raise UserError("--server command needs --server-command 'CMD' (e.g. "
                        "'llama-server -m model.gguf --port {port}')")
    model = settings.model
    if "{port}" not in str(command) and not settings.base_url:
        raise UserError("--server-command: put {port} where the server takes its port, or "
                        "give --base-url where it will answer")
    try:
        argv = [a.format(port=port, host=LOOPBACK, model=model or "")
                for a in shlex.split(str(command))]
    except (ValueError, KeyError, IndexError) as exc:
        raise UserError(f"--server-command {command!r}: {exc}") from None
    base_url = str(settings.base_url or f"http://{LOOPBACK}:{port}/v1").rstrip("/")
    tokenizer = settings.tokenizer or settings.engine.get("tokenizer")
    return ServerSpec(kind="command", argv=argv, base_url=base_url,
                      model=str(model) if model else None,
                      health_timeout_s=health_timeout_s(settings, 300.0), tokenizer=tokenizer,
                      info={"engine": Path(argv[0]).name if argv else "command",
                            "kind": "command"})


SERVER_KINDS: dict[str, ServerBuilder] = {
    "llama-cpp-python": llama_cpp_python_spec,
    "llama-server": llama_server_spec,
    "vllm": vllm_spec,
    "command": command_spec,
}


def register_server_kind(name: str, builder: ServerBuilder) -> None:
    """Add or replace a server kind."""
    SERVER_KINDS[name] = builder


def check_server_settings(settings: BenchSettings) -> None:
    """Settings of one server kind given for another (or for no managed server) are an
    error, not silently ignored: --server-binary and --parallel need --server
    llama-server."""
    given = [s for s in LLAMA_SERVER_ONLY if getattr(settings, s, None) is not None]
    if given and settings.server != "llama-server":
        flags = " and ".join("--" + s.replace("_", "-") for s in given)
        now = f"--server {settings.server}" if settings.server else "no --server"
        raise UserError(f"{flags} configure{'s' if len(given) == 1 else ''} --server "
                        f"llama-server, but this run has {now}: add --server llama-server "
                        f"or leave {flags} out")


def managed_server_for(settings: BenchSettings, context_tokens: int,
                       max_concurrency: int | None = None) -> ManagedServer:
    """The managed server that `--server KIND` (and its settings) names; not started.
    `max_concurrency`: the most requests the run will hold in flight (llama-server sizes
    its parallel slots by it)."""
    kind = str(settings.server or "")
    check_server_settings(settings)
    if settings.backend not in (None, "openai", "vllm"):
        raise UserError(f"--server {kind} is benchmarked over HTTP: use --backend openai "
                        f"(or leave --backend out), not --backend {settings.backend}")
    if kind not in SERVER_KINDS:
        raise UserError(f"unknown --server {kind!r}; known: {', '.join(SERVER_KINDS)}."
                        + did_you_mean(kind, list(SERVER_KINDS)))
    return ManagedServer(SERVER_KINDS[kind](settings, context_tokens, free_port(),
                                            max_concurrency))


__all__ = ["LLAMA_SERVER_ONLY", "SERVER_KINDS", "ServerBuilder", "check_server_settings",
           "command_spec", "llama_cpp_python_spec", "managed_server_for",
           "register_server_kind", "vllm_spec"]
