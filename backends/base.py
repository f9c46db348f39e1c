"""The backend contract: open a model or endpoint, describe it, stream one request.

A backend never computes metrics. It yields `TokenEvent`s, each stamped with
`time.perf_counter_ns()` when the text became available in this process; the last
event may carry the usage the engine reports. The harness derives every figure.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Protocol, TypeVar, runtime_checkable

from harness.errors import UserError


@dataclass(frozen=True)
class Request:
    """One request to send: a prompt sized in tokens and the output length to force."""

    request_id: str
    prompt: str
    input_tokens: int  # prompt length measured with the model's tokenizer (0 if unknown)
    max_output_tokens: int
    force_output_length: bool = True  # suppress EOS where the engine allows it
    chat: bool = False  # send as a chat message instead of a raw completion
    extra: dict[str, Any] = field(default_factory=dict)
    # A chat from a dataset: (role, content) of each message sent; `prompt` holds their
    # text for engines that take one prompt. Empty: one user message holding `prompt`.
    messages: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Usage:
    """Token counts as the engine reports them, plus engine-side timings when known."""

    input_tokens: int | None = None
    output_tokens: int | None = None
    source: str = "engine"  # engine | tokenizer | events
    engine_prefill_ms: float | None = None  # engine's own prompt-eval time
    engine_decode_ms: float | None = None  # engine's own generation time
    engine_prefill_tokens: int | None = None
    engine_decode_tokens: int | None = None  # tokens the engine timed in decode (N_out-1 typically)
    extra: dict[str, Any] = field(default_factory=dict)
    finish_reason: str | None = None  # why the output ended: length, stop, ... (None: unknown)


@dataclass(frozen=True)
class TokenEvent:
    """Text that arrived at `t_ns` holding `n_tokens` tokens; `usage` only on the last."""

    t_ns: int
    text: str
    n_tokens: int
    usage: Usage | None = None


@dataclass
class BackendInfo:
    """What a result row needs to know about the engine and the model."""

    backend: str
    engine: str
    engine_version: str
    engine_build: str = ""
    model: str = ""
    model_path: str = ""
    model_sha256: str = ""
    model_size_mb: float | None = None
    model_params: int | None = None
    model_arch: str = ""
    quant: str = ""
    weights: str = "real"  # real | synthetic
    device: str = "cpu"
    settings: dict[str, Any] = field(default_factory=dict)


class RequestError(Exception):
    """A request that failed; `kind` is its class (timeout, http_429, connection, ...)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass
class BatchResult:
    """One request of a batch a backend ran at once (optional `run_batch` hook): when it
    was submitted, its events as `stream()` would have yielded them, or its error."""

    request: Request
    send_ns: int
    events: list[TokenEvent]
    error: RequestError | None = None


@runtime_checkable
class Backend(Protocol):
    """What the runner needs from every backend."""

    name: str
    max_concurrency: int | None  # None: no limit; 1: requests are served one at a time

    async def open(self) -> BackendInfo:
        """Load the model or connect; raise UserError on bad input."""
        ...

    def count_tokens(self, text: str) -> int | None:
        """Tokens in `text` by the model's tokenizer, or None if no tokenizer is known."""
        ...

    def stream(self, request: Request) -> AsyncIterator[TokenEvent]:
        """Send one request and yield its events as they arrive."""
        ...

    async def close(self) -> None:
        """Release the model or connection; idempotent."""
        ...



@runtime_checkable
class BatchBackend(Backend, Protocol):
    """Optional: an offline engine whose API returns when a whole batch is done; the
    runner hands over each repetition at once."""

    async def run_batch(self, requests: Sequence[Request]) -> list[BatchResult]:
        ...


@runtime_checkable
class ServerMetricsBackend(Backend, Protocol):
    """Optional: engine-side figures over each measured window (a server's /metrics)."""

    async def server_metrics_start(self) -> None:
        ...

    async def server_metrics_stop(self) -> dict[str, Any] | None:
        """{"columns": row columns, "details": anything worth keeping} or None."""
        ...


@dataclass(frozen=True)
class Endpoint:
    """Where a managed server answers and what the client needs to know about it."""

    base_url: str  # ends in /v1
    model: str  # the served model name
    kind: str  # the server kind (llama-cpp-python, llama-server, vllm, command)
    tokenizer: str | None = None  # what the client counts tokens with (a GGUF, an HF id)
    force_length: str | None = None  # how this server is asked for exact output lengths
    info: dict[str, Any] = field(default_factory=dict)  # engine, version, argv, engine_args


ConfigT = TypeVar("ConfigT")


def typed_config(backend: str, config_cls: type[ConfigT], config: dict[str, Any]) -> ConfigT:
    """`config_cls(**config)`, or one UserError line naming the unknown settings."""
    known = {f.name for f in fields(config_cls)}  # type: ignore[arg-type]
    unknown = set(config) - known
    if unknown:
        raise UserError(f"{backend} backend: unknown setting(s) {', '.join(sorted(unknown))}; "
                        f"known: {', '.join(sorted(known))}")
    return config_cls(**config)
