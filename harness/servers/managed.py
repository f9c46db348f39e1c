"""Managed servers: start an OpenAI-compatible server, wait until it is healthy,
hand the client a typed `Endpoint`, stop it, and keep its log with the results.

A `ServerSpec` says how to start one server and where it will answer; the server kinds
that build specs from the run's settings are in `harness.servers.kinds`.

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

from backends.base import Endpoint
from harness.errors import UserError
from harness.results.files import atomic_write_text
from harness.secrets import redact

LOOPBACK = "127.0.0.1"
STOP_GRACE_S = 10.0
HEALTH_POLL_S = 0.25


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
    force_length: str | None = None  # how requests ask this server for exact lengths
    info: dict[str, Any] = field(default_factory=dict)  # engine, engine_version, ...


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


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
        """The last lines of the server's log (its copy beside the results once the
        server stopped and the working log was removed)."""
        for path in (self.log_path, self._attached):
            if path is None:
                continue
            try:
                text = path.read_text(encoding="utf-8", errors="replace")
            except OSError:
                continue
            return "\n".join(text.rstrip().splitlines()[-lines:])
        return ""

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

    def endpoint(self) -> Endpoint:
        """Where the (healthy) server answers and what the client needs to know."""
        if self.model is None:
            raise RuntimeError("the server is not healthy yet")
        info = dict(self.spec.info)
        info["argv"] = shlex.join(_mask_secrets(self.spec.argv))
        return Endpoint(base_url=self.base_url, model=self.model, kind=self.spec.kind,
                        tokenizer=self.tokenizer, force_length=self.spec.force_length,
                        info=info)

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


__all__ = ["LOOPBACK", "ManagedServer", "ServerSpec", "free_port"]
