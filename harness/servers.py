"""Managed servers: start an OpenAI-compatible server, wait until it is healthy,
benchmark it through the `openai` backend, stop it, and keep its log with the results.

A server kind is a function that turns the run's settings into a `ServerSpec` (the
command line, where it will answer, the served model name, the tokenizer the client
can count with); `SERVER_KINDS` maps names to them, and `register_server_kind` adds
one. Built in:

- `llama-cpp-python`: `python -m llama_cpp.server` on the GGUF from `--model`, with the
  flags that keep its numbers honest: `--logits_all False` (no logits kept for every
  prompt token), `--interrupt_requests False` (concurrent requests queue instead of
  cancelling each other), a chat format for base models without a template (`gemma`
  for Gemma), a batch as large as the context (as the in-process backend uses).
- `vllm`: `vllm serve`-equivalent (`python -m vllm.entrypoints.openai.api_server`), its
  command line built by `backends.vllm_engine.server_spec` from the vLLM engine settings,
  with `[engine] server_args` appended.
- `command`: any command line (`--server-command`); `{port}`, `{host}` and `{model}`
  in it are filled in.

The process runs in its own session (its own process group, so Ctrl-C reaches only the
harness, which then stops it): SIGTERM to the group, then SIGKILL after a grace period.
On Linux it also gets SIGTERM if the harness dies. Its output goes to a log file;
`attach_log` links or copies it beside the results.
"""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import UserError, did_you_mean

LOOPBACK = "127.0.0.1"
STOP_GRACE_S = 10.0
HEALTH_POLL_S = 0.25
# [engine] keys that configure the server process, not the requests sent to it.
SERVER_ENGINE_KEYS = {"chat_format", "server_args", "server_env"}


@dataclass
class ServerSpec:
    """How to start one server and where it will answer."""

    kind: str
    argv: list[str]
    base_url: str  # ends in /v1
    model: str | None  # the served model name; None: the first one GET /models lists
    health_timeout_s: float = 120.0
    env: dict[str, str] = field(default_factory=dict)
    tokenizer: str | None = None  # what the client counts tokens with (a GGUF, an HF id)
    info: dict[str, Any] = field(default_factory=dict)  # engine, engine_version, ...


ServerBuilder = Callable[[dict[str, Any], Any, int], ServerSpec]


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _engine(values: dict[str, Any]) -> dict[str, Any]:
    engine = values.get("engine") or {}
    return engine if isinstance(engine, dict) else {}


def _server_args(values: dict[str, Any]) -> list[str]:
    extra = _engine(values).get("server_args", [])
    if isinstance(extra, str):
        return shlex.split(extra)
    if not isinstance(extra, list) or not all(isinstance(a, (str, int, float)) for a in extra):
        raise UserError("[engine] server_args must be a list of strings or one string")
    return [str(a) for a in extra]


def _health_timeout(values: dict[str, Any], default_s: float) -> float:
    value = values.get("server_timeout")
    if value is None:
        return default_s
    try:
        timeout = float(value)
    except (TypeError, ValueError):
        timeout = -1.0
    if timeout <= 0:
        raise UserError(f"--server-timeout must be a number of seconds > 0, got {value!r}")
    return timeout


def llama_cpp_python_spec(values: dict[str, Any], workload: Any, port: int) -> ServerSpec:
    """`python -m llama_cpp.server` on the GGUF named by --model (default model if none)."""
    from harness.models import resolve_gguf

    try:
        import llama_cpp
        import llama_cpp.server
    except ImportError as exc:
        raise UserError(f"--server llama-cpp-python needs llama-cpp-python with its server "
                        f"extra ({exc}): pip install -e '.[llamacpp]'") from None
    path = resolve_gguf(values.get("model"))
    engine = _engine(values)
    meta = _gguf_metadata(path)
    chat_format = engine.get("chat_format")
    if chat_format is None and "tokenizer.chat_template" not in meta:
        # A base model has no template; without one llama_cpp.server falls back to a
        # Llama-2 format. Gemma models get their own.
        chat_format = "gemma" if meta.get("general.architecture", "").startswith(
            "gemma") else "chatml"
    if values.get("n_ctx"):
        n_ctx = int(values["n_ctx"])
    else:
        from harness.cmd_bench import _n_ctx_for

        n_ctx = _n_ctx_for(workload) if workload is not None else 4096
    alias = str(values.get("model") or path.stem)
    argv = [sys.executable, "-m", "llama_cpp.server", "--model", str(path),
            "--model_alias", alias, "--host", LOOPBACK, "--port", str(port),
            "--n_ctx", str(n_ctx), "--n_batch", str(n_ctx), "--n_ubatch", "512",
            "--logits_all", "False", "--interrupt_requests", "False"]
    if chat_format:
        argv += ["--chat_format", str(chat_format)]
    if values.get("n_threads"):
        argv += ["--n_threads", str(values["n_threads"]),
                 "--n_threads_batch", str(values["n_threads"])]
    gpu = bool(llama_cpp.llama_supports_gpu_offload())
    n_gpu_layers = values.get("n_gpu_layers")
    if n_gpu_layers is None:
        n_gpu_layers = -1 if gpu else 0
    argv += ["--n_gpu_layers", str(n_gpu_layers)]
    if values.get("flash_attn"):
        argv += ["--flash_attn", "True"]
    argv += _server_args(values)
    return ServerSpec(
        kind="llama-cpp-python", argv=argv, base_url=f"http://{LOOPBACK}:{port}/v1",
        model=alias, health_timeout_s=_health_timeout(values, 120.0), tokenizer=str(path),
        info={"engine": "llama.cpp (llama_cpp.server)", "engine_version": llama_cpp.__version__,
              "model_path": str(path), "device": "cpu" if not gpu or n_gpu_layers == 0
              else "gpu", "kind": "llama-cpp-python", "chat_format": chat_format or "",
              "n_ctx": n_ctx, "n_gpu_layers": n_gpu_layers,
              "flags": "--logits_all False --interrupt_requests False"})


def _gguf_metadata(path: Path) -> dict[str, str]:
    """A GGUF's metadata, read with llama.cpp's vocab-only loader (no weights)."""
    import llama_cpp

    from backends.openai_api import quiet_stderr

    try:
        with quiet_stderr():
            llm = llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False)
    except (ValueError, RuntimeError, OSError) as exc:
        raise UserError(f"llama.cpp cannot read {path}: {exc}") from None
    try:
        return dict(llm.metadata)
    finally:
        llm.close()


def vllm_spec(values: dict[str, Any], workload: Any, port: int) -> ServerSpec:
    """vLLM's OpenAI-compatible server on --model (an HF id or local folder), built by the
    vLLM backend (`backends.vllm_engine.server_spec`): engine flags and [engine] settings
    become server flags; `[engine] server_args` are appended."""
    from backends.vllm_engine import server_spec

    return server_spec(values, workload, port)


def command_spec(values: dict[str, Any], workload: Any, port: int) -> ServerSpec:
    """Any server command line (`--server-command`); `{port}`, `{host}`, `{model}` are
    filled in, and the server is reached at --base-url or http://127.0.0.1:{port}/v1."""
    command = values.get("server_command")
    if not command:
        raise UserError("--server command needs --server-command 'CMD' (e.g. "
                        "'llama-server -m model.gguf --port {port}')")
    model = values.get("model")
    uses_port = "{port}" in str(command)
    if not uses_port and not values.get("base_url"):
        raise UserError("--server-command: put {port} where the server takes its port, or "
                        "give --base-url where it will answer")
    try:
        argv = [a.format(port=port, host=LOOPBACK, model=model or "")
                for a in shlex.split(str(command))]
    except (ValueError, KeyError, IndexError) as exc:
        raise UserError(f"--server-command {command!r}: {exc}") from None
    base_url = str(values.get("base_url") or f"http://{LOOPBACK}:{port}/v1").rstrip("/")
    tokenizer = values.get("tokenizer") or _engine(values).get("tokenizer")
    return ServerSpec(kind="command", argv=argv, base_url=base_url,
                      model=str(model) if model else None,
                      health_timeout_s=_health_timeout(values, 300.0), tokenizer=tokenizer,
                      info={"engine": Path(argv[0]).name if argv else "command",
                            "kind": "command"})


SERVER_KINDS: dict[str, ServerBuilder] = {
    "llama-cpp-python": llama_cpp_python_spec,
    "vllm": vllm_spec,
    "command": command_spec,
}


def register_server_kind(name: str, builder: ServerBuilder) -> None:
    """Add or replace a server kind (e.g. a richer `vllm` from the vLLM backend)."""
    SERVER_KINDS[name] = builder


def _pdeathsig_hook() -> Callable[[], None] | None:
    """A child hook asking Linux to SIGTERM the server if the harness dies; resolved in
    the parent so the child (between fork and exec) only calls into libc."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    term = int(signal.SIGTERM)

    def hook() -> None:
        prctl(1, term)  # PR_SET_PDEATHSIG

    return hook


def _mask_secrets(argv: list[str]) -> list[str]:
    """The command line with values after key/token/password flags masked."""
    out: list[str] = []
    hide = False
    for arg in argv:
        if hide:
            out.append("***")
            hide = False
            continue
        lowered = arg.lower()
        secret = any(w in lowered for w in ("key", "token", "password", "secret"))
        if secret and arg.startswith("-") and "=" in arg:
            out.append(arg.split("=", 1)[0] + "=***")
        else:
            out.append(arg)
            hide = secret and arg.startswith("-")
    return out


class ManagedServer:
    """One server process: `async with` starts it and waits for health, then stops it."""

    def __init__(self, spec: ServerSpec) -> None:
        self.spec = spec
        self.base_url = spec.base_url
        self.model = spec.model
        self.tokenizer = spec.tokenizer
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_ns: int | None = None
        fd, name = tempfile.mkstemp(prefix=f"harness-{spec.kind}-", suffix=".log")
        os.close(fd)
        self.log_path = Path(name)
        self._attached: Path | None = None
        self._linked = False

    @property
    def pid(self) -> int | None:
        """The server's process id (the leader of its process group)."""
        return self.proc.pid if self.proc is not None else None

    def start(self) -> None:
        """Start the process (output to the log file)."""
        with open(self.log_path, "ab") as log:
            log.write(f"$ {shlex.join(_mask_secrets(self.spec.argv))}\n".encode())
            log.flush()
            try:
                self.proc = subprocess.Popen(
                    self.spec.argv, stdout=log, stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL, start_new_session=True,
                    env={**os.environ, **self.spec.env},
                    preexec_fn=_pdeathsig_hook())  # noqa: PLW1509 - only calls prctl
            except (FileNotFoundError, PermissionError, OSError) as exc:
                raise UserError(f"--server {self.spec.kind}: cannot start "
                                f"{self.spec.argv[0]!r}: {exc.strerror or exc}") from None
        self.started_ns = time.perf_counter_ns()

    def log_tail(self, lines: int = 15) -> str:
        """The last lines of the server's log."""
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.rstrip().splitlines()[-lines:])

    def _probe(self) -> tuple[int | None, Any]:
        """GET <base_url>/models: (status, parsed JSON) or (None, reason)."""
        try:
            with urllib.request.urlopen(self.base_url + "/models", timeout=2.0) as resp:
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            return exc.code, None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            return None, exc

    async def wait_healthy(self) -> None:
        """Poll GET /models until it answers 200; fail with the log tail when the process
        exits or the timeout passes."""
        timeout_s = self.spec.health_timeout_s
        deadline = time.monotonic() + timeout_s
        assert self.proc is not None
        while True:
            code = self.proc.poll()
            if code is not None:
                raise self._failure(f"exited with code {code} before it became healthy")
            status, data = await asyncio.to_thread(self._probe)
            if status == 200:
                if self.model is None:
                    ids = [m.get("id") for m in (data or {}).get("data", [])
                           if isinstance(m, dict)]
                    if not ids:
                        raise self._failure("is up but GET /models lists no model; "
                                            "give --model")
                    self.model = str(ids[0])
                return
            if time.monotonic() >= deadline:
                what = f"HTTP {status}" if status else f"{data}"
                raise self._failure(f"was not healthy after {timeout_s:g} s (GET "
                                    f"{self.base_url}/models: {what}); raise "
                                    "--server-timeout if it is still loading")
            await asyncio.sleep(HEALTH_POLL_S)

    def _failure(self, what: str) -> UserError:
        self.stop()
        tail = self.log_tail()
        shown = "\n".join("  | " + line for line in tail.splitlines()) or "  | (empty)"
        return UserError(f"--server {self.spec.kind} {what}; log {self.log_path}, "
                         f"last lines:\n{shown}")

    def stop(self, grace_s: float = STOP_GRACE_S) -> int | None:
        """SIGTERM to the server's process group, SIGKILL after `grace_s`; the exit code."""
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            self._signal(signal.SIGTERM)
            try:
                proc.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                proc.wait(timeout=10)
        else:
            self._signal(signal.SIGKILL)  # children it may have left behind
        self._sync_log()
        self._redact_logs()
        return proc.returncode

    def _redact_logs(self) -> None:
        """Mask keys and bearer tokens the server may have logged (harness.secrets)."""
        from harness.results import atomic_write_text
        from harness.secrets import redact

        for path in {self.log_path, self._attached} - {None}:
            try:
                text = path.read_text(encoding="utf-8", errors="replace")
                if redact(text) != text:
                    atomic_write_text(path, text)  # writes it masked
            except OSError:
                pass

    def _signal(self, sig: int) -> None:
        assert self.proc is not None
        try:
            os.killpg(self.proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            try:
                self.proc.send_signal(sig)
            except ProcessLookupError:
                pass

    def attach_log(self, path: str | Path) -> None:
        """Keep the log at `path` (beside the results): a hard link when the file system
        allows, else a copy refreshed when the server stops."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        self._attached = target
        try:
            if target.exists():
                target.unlink()
            os.link(self.log_path, target)
            self._linked = True
        except OSError:
            self._linked = False
            self._sync_log()

    def _sync_log(self) -> None:
        if self._attached is not None and not self._linked:
            try:
                shutil.copyfile(self.log_path, self._attached)
            except OSError:
                pass

    def backend_values(self) -> dict[str, Any]:
        """Settings the `openai` backend takes from this server."""
        info = dict(self.spec.info)
        info["argv"] = shlex.join(_mask_secrets(self.spec.argv))
        return {"tokenizer": self.tokenizer, "server_info": info}

    async def __aenter__(self) -> ManagedServer:
        self.start()
        await self.wait_healthy()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.to_thread(self.stop)
        if self._attached is not None and self._attached.exists():
            try:
                self.log_path.unlink()
            except OSError:
                pass


def managed_server_for(values: dict[str, Any], workload: Any = None) -> ManagedServer:
    """The managed server that `--server KIND` (and its settings) names; not started."""
    kind = str(values.get("server") or "")
    backend = values.get("backend")
    if backend not in (None, "openai", "vllm"):
        raise UserError(f"--server {kind} is benchmarked over HTTP: use --backend openai "
                        f"(or leave --backend out), not --backend {backend}")
    if kind not in SERVER_KINDS:
        raise UserError(f"unknown --server {kind!r}; known: {', '.join(SERVER_KINDS)}."
                        + did_you_mean(kind, list(SERVER_KINDS)))
    spec = SERVER_KINDS[kind](values, workload, free_port())
    return ManagedServer(spec)


__all__ = [
    "SERVER_ENGINE_KEYS",
    "SERVER_KINDS",
    "ManagedServer",
    "ServerSpec",
    "free_port",
    "managed_server_for",
    "register_server_kind",
]
