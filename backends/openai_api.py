"""Any OpenAI-compatible endpoint through the official `openai` async client.

Hosted APIs and local servers (llama-server, llama_cpp.server, vLLM, Ollama, LM Studio,
SGLang) alike: streaming `/v1/completions` or `/v1/chat/completions`, the key read from
the environment variable named by `--api-key-env`, extra request fields passed through
(`ignore_eos`, `min_tokens`, ...). Usage comes from `stream_options.include_usage`;
where a server sends none the runner counts with the model's tokenizer (a GGUF's vocab
through llama.cpp, or a Hugging Face tokenizer) when one is known, else the events.
A chunk holding several tokens says so in `TokenEvent.n_tokens` (from its logprobs, else
the tokenizer) so the harness spreads its gap over them. Retries are off: a failed
request is recorded with its class (connection, timeout, http_401, http_429, http_5xx,
stream_cut, bad_response) and the run goes on.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from backends.base import BackendInfo, Request, RequestError, TokenEvent, Usage, typed_config
from harness.errors import UserError, did_you_mean

DEFAULT_BASE_URL = "https://api.openai.com/v1"
DEFAULT_KEY_ENV = "OPENAI_API_KEY"
LOCAL_DUMMY_KEY = "local-server-needs-no-key"
# How a request asks a server to produce exactly max_tokens (hosted APIs cannot).
FORCE_LENGTH_FIELDS = ("none", "min_tokens", "ignore_eos", "both")
# Settings of this backend an [engine] table may hold; every other key of the table is
# an extra request field sent as is.
_SETTING_KEYS = {"tokenizer", "force_length", "include_usage", "max_tokens_field",
                 "check_model", "temperature", "endpoint", "http_client"}


@dataclass
class OpenAIConfig:
    """Everything that decides what is sent; recorded in the result row (not the key)."""

    model: str
    base_url: str = DEFAULT_BASE_URL
    api_key_env: str = DEFAULT_KEY_ENV
    endpoint: str | None = None  # completions | chat | None: chat when the request says so
    timeout_s: float = 600.0
    tokenizer: str | None = None  # GGUF path, tokenizer.json, or a Hugging Face id/dir
    force_length: str = "none"  # none | min_tokens | ignore_eos | both
    include_usage: bool = True
    max_tokens_field: str = "max_tokens"  # or max_completion_tokens (newer hosted models)
    check_model: bool = True  # ask GET /models whether the model is served
    temperature: float | None = 0.0
    http_client: str = "auto"  # auto | aiohttp | httpx: the openai client's transport
    extra_body: dict[str, Any] = field(default_factory=dict)
    server: dict[str, Any] = field(default_factory=dict)  # a managed server's description


def is_loopback(base_url: str) -> bool:
    """True for http(s)://localhost, 127.x.x.x or [::1] URLs."""
    host = urlsplit(base_url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def public_url(base_url: str) -> str:
    """The URL without user:password or query (safe to record)."""
    parts = urlsplit(base_url)
    netloc = parts.hostname or ""
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def config_from_values(values: dict[str, Any], engine: dict[str, Any]) -> dict[str, Any]:
    """The backend's config from merged flags/config file values and an [engine] table."""
    engine = dict(engine)
    model = values.get("model")
    if not model:
        raise UserError("--backend openai needs --model NAME: the model name the endpoint "
                        "serves (GET <base-url>/models lists them)")
    base_url = str(values.get("base_url") or DEFAULT_BASE_URL).rstrip("/")
    if urlsplit(base_url).scheme not in ("http", "https") or not urlsplit(base_url).hostname:
        raise UserError(f"--base-url {base_url!r} is not an http(s) URL; e.g. "
                        "http://127.0.0.1:8000/v1")
    server = dict(values.get("server_info") or {})
    kind = values.get("server")
    force_default = {"llama-cpp-python": "min_tokens", "vllm": "ignore_eos"}.get(
        str(kind), "none")
    cfg: dict[str, Any] = {
        "model": str(model), "base_url": base_url,
        "api_key_env": values.get("api_key_env") or DEFAULT_KEY_ENV,
        "endpoint": values.get("endpoint") or engine.pop("endpoint", None),
        "timeout_s": float(values.get("timeout") or 600.0),
        "tokenizer": values.get("tokenizer") or engine.pop("tokenizer", None),
        "force_length": engine.pop("force_length", force_default),
        "server": server,
    }
    for key in ("include_usage", "max_tokens_field", "check_model", "temperature",
                "http_client"):
        if key in engine:
            cfg[key] = engine.pop(key)
    if cfg["force_length"] not in FORCE_LENGTH_FIELDS:
        raise UserError(f"[engine] force_length = {cfg['force_length']!r}: must be one of "
                        f"{', '.join(FORCE_LENGTH_FIELDS)}")
    if cfg["endpoint"] not in (None, "completions", "chat"):
        raise UserError(f"--endpoint {cfg['endpoint']!r}: must be completions or chat")
    from harness.servers import SERVER_ENGINE_KEYS  # they configure the server process

    cfg["extra_body"] = {k: v for k, v in engine.items()  # the rest: extra request fields
                         if k not in SERVER_ENGINE_KEYS}
    return cfg


def classify_error(exc: BaseException, streaming: bool = False) -> RequestError:
    """An `openai` client exception → RequestError with its class; `streaming` is True
    once the response had started (a transport error then is a stream cut short)."""
    import openai

    if isinstance(exc, RequestError):
        return exc
    if isinstance(exc, openai.APITimeoutError) and not _refused(exc):
        return RequestError("timeout", "the request timed out")
    if isinstance(exc, openai.APIConnectionError):
        cause = exc.__cause__ or exc.__context__
        detail = f"{type(cause).__name__}: {cause}" if cause else str(exc)
        if streaming:
            return RequestError("stream_cut", f"the stream was cut short ({detail})")
        return RequestError("connection", f"connection failed ({detail})")
    if isinstance(exc, openai.APIStatusError):
        code = exc.status_code
        kind = f"http_{code}" if code < 500 else "http_5xx"
        return RequestError(kind, f"HTTP {code}: {_short(exc.message)}")
    if isinstance(exc, openai.APIResponseValidationError):
        return RequestError("bad_response", _short(str(exc)))
    if isinstance(exc, openai.APIError):  # an error event inside the stream
        return RequestError("stream_error", _short(str(exc)))
    if type(exc).__module__.split(".")[0] in ("httpx", "httpx2", "httpcore", "h11", "anyio"):
        # Transport errors while reading the body: the client does not wrap those.
        detail = f"{type(exc).__name__}: {_short(str(exc), 200)}"
        if "Timeout" in type(exc).__name__:
            return RequestError("timeout", f"the stream stalled ({detail})")
        return RequestError("stream_cut" if streaming else "connection",
                            f"the stream was cut short ({detail})" if streaming
                            else f"connection failed ({detail})")
    if isinstance(exc, (ConnectionError, OSError)):
        return RequestError("stream_cut" if streaming else "connection",
                            f"{type(exc).__name__}: {_short(str(exc), 200)}")
    if isinstance(exc, (ValueError, KeyError, TypeError, AttributeError)):
        return RequestError("bad_response", f"{type(exc).__name__}: {_short(str(exc))}")
    return RequestError("client_error", f"{type(exc).__name__}: {_short(str(exc))}")


def _refused(exc: BaseException) -> bool:
    """True when the cause chain shows a refused or failed connect, not a timeout (the
    aiohttp transport reports a refused connection as a connect timeout)."""
    seen = 0
    cause: BaseException | None = exc
    while cause is not None and seen < 10:
        if isinstance(cause, ConnectionRefusedError) or type(cause).__name__ in (
                "ClientConnectorError", "ClientConnectorDNSError", "ServerDisconnectedError"):
            return True
        cause = cause.__cause__ or cause.__context__
        seen += 1
    return False


def _short(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _api_price(model: str) -> tuple[float, float] | None:
    """(input, output) USD per million tokens from the price catalog, where it knows."""
    try:
        from harness.prices import api_price
    except ImportError:
        return None
    try:
        return api_price(model)
    except Exception:  # noqa: BLE001 - a broken catalog must not fail the benchmark
        return None


def cost_usd(price: tuple[float, float] | None, input_tokens: int | None,
             output_tokens: int | None) -> float | None:
    """Usage × price per million tokens; None when the price or the usage is unknown."""
    if price is None or input_tokens is None or output_tokens is None:
        return None
    return (input_tokens * price[0] + output_tokens * price[1]) / 1_000_000


try:  # the openai client's own fast JSON parser (one of its dependencies)
    from jiter import from_json as _loads
except ImportError:  # pragma: no cover
    _loads = json.loads


class ChunkParser:
    """Server-sent events of a completions or chat stream → (text, tokens) per chunk.

    Feed it the bytes as they arrive; it keeps partial events for the next feed. A
    chunk's token count comes from its logprobs when it lists them, else from the
    tokenizer (`count`), else 1 per chunk with text. It remembers whether a
    finish_reason was seen, whether `[DONE]` arrived, and the last usage object.
    """

    def __init__(self, chat: bool, count: Any = None) -> None:
        self.chat, self.count = chat, count
        self.buffer = b""
        self.done = False
        self.finished = False
        self.usage: dict[str, Any] | None = None

    def feed(self, data: bytes) -> list[tuple[str, int]]:
        buf = self.buffer + data if self.buffer else data
        if b"\r" in buf:
            buf = buf.replace(b"\r\n", b"\n")  # a split CR LF joins up on the next feed
        out: list[tuple[str, int]] = []
        pos = 0
        while not self.done:
            end = buf.find(b"\n\n", pos)
            if end < 0:
                break
            event, pos = buf[pos:end], end + 2
            if event.startswith(b"data:") and b"\n" not in event:
                payload = event[5:].lstrip()
            else:
                payload = b"\n".join(line[5:].lstrip() for line in event.split(b"\n")
                                     if line.startswith(b"data:"))
            if not payload:
                continue  # a comment or keep-alive ping
            if payload == b"[DONE]":
                self.done = True
                break
            item = self.chunk(payload)
            if item is not None:
                out.append(item)
        self.buffer = buf[pos:]
        return out

    def chunk(self, payload: bytes) -> tuple[str, int] | None:
        try:
            obj = _loads(payload)
        except ValueError as exc:
            raise RequestError("bad_response", f"a stream chunk is not JSON ({exc}): "
                               f"{_short(payload.decode(errors='replace'), 120)}") from None
        if not isinstance(obj, dict):
            raise RequestError("bad_response", f"a stream chunk is not an object: "
                               f"{_short(payload.decode(errors='replace'), 120)}")
        if obj.get("error"):
            err = obj["error"]
            msg = err.get("message") if isinstance(err, dict) else err
            raise RequestError("stream_error", f"error inside the stream: {_short(str(msg))}")
        if obj.get("usage"):
            self.usage = obj["usage"]
        choices = obj.get("choices") or []
        if not choices:
            return None
        choice = choices[0]
        logprobs = choice.get("logprobs") or {}
        if self.chat:
            delta = choice.get("delta") or {}
            text = (delta.get("content") or delta.get("reasoning_content")
                    or delta.get("reasoning") or "")
            listed = logprobs.get("content") if isinstance(logprobs, dict) else None
        else:
            text = choice.get("text") or ""
            listed = logprobs.get("tokens") if isinstance(logprobs, dict) else None
        if choice.get("finish_reason"):
            self.finished = True
        if listed:
            n = len(listed)
        elif not text:
            n = 0
        elif self.count is not None:
            n = max(1, self.count(text, False))
        else:
            n = 1
        return (text, n) if text or n else None


@contextlib.contextmanager
def quiet_stderr() -> Iterator[None]:
    """Silence file descriptor 2 (native libraries' own prints) for the block."""
    sys.stderr.flush()
    saved = os.dup(2)
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


class _Tokenizer:
    """Counts tokens with a GGUF vocabulary (llama.cpp) or a Hugging Face tokenizer."""

    def __init__(self, spec: str) -> None:
        self.spec = spec
        self.metadata: dict[str, str] = {}
        path = Path(spec).expanduser()
        if path.suffix == ".gguf":
            if not path.is_file():
                raise UserError(f"tokenizer file not found: {path} ([engine] tokenizer)")
            try:
                import llama_cpp
            except ImportError:
                raise UserError("counting with a GGUF tokenizer needs llama-cpp-python: "
                                "pip install -e '.[llamacpp]'") from None
            try:
                with quiet_stderr():  # llama.cpp warns about the context of a vocab-only load
                    self._llama = llama_cpp.Llama(model_path=str(path), vocab_only=True,
                                                  verbose=False)
            except (ValueError, RuntimeError, OSError) as exc:
                raise UserError(f"cannot read the tokenizer of {path}: {exc}") from None
            self.metadata = dict(self._llama.metadata)
            self._hf = None
            return
        self._llama = None
        try:
            from transformers import AutoTokenizer
        except ImportError:
            raise UserError(f"tokenizer {spec!r}: give a .gguf file, or install transformers "
                            "to use a Hugging Face tokenizer") from None
        try:
            self._hf = AutoTokenizer.from_pretrained(spec)
        except Exception as exc:  # noqa: BLE001 - offline, missing: one line
            raise UserError(f"cannot load tokenizer {spec!r}: {_short(str(exc), 200)}") from None

    def count(self, text: str, prompt: bool) -> int:
        if self._llama is not None:
            return len(self._llama.tokenize(text.encode("utf-8"), add_bos=prompt,
                                            special=False))
        return len(self._hf.encode(text, add_special_tokens=prompt))

    def close(self) -> None:
        if self._llama is not None:
            self._llama.close()
            self._llama = None


class OpenAIBackend:
    """An OpenAI-compatible endpoint; requests run concurrently (the server decides)."""

    name = "openai"
    max_concurrency: int | None = None

    def __init__(self, **config: Any) -> None:
        self.config = typed_config("openai", OpenAIConfig, config)
        self.client: Any = None
        self.tokenizer: _Tokenizer | None = None
        self._price = None
        self._api_key = self._read_key()

    def _read_key(self) -> str:
        """The key from the named environment variable; a dummy for loopback servers."""
        var = self.config.api_key_env
        key = os.environ.get(var)
        if key:
            return key
        if is_loopback(self.config.base_url):
            return LOCAL_DUMMY_KEY
        raise UserError(f"environment variable {var} is not set; export it with the API key "
                        f"for {public_url(self.config.base_url)}, or name another variable "
                        "with --api-key-env VAR")

    async def open(self) -> BackendInfo:
        try:
            import openai
        except ImportError:
            raise UserError("the openai package is not installed: pip install -e '.[openai]'"
                            ) from None
        cfg = self.config
        self.client = openai.AsyncOpenAI(base_url=cfg.base_url, api_key=self._api_key,
                                         max_retries=0, timeout=cfg.timeout_s,
                                         http_client=self._http_client(openai))
        try:
            if cfg.check_model:
                await self._check_model(openai)
            if cfg.tokenizer:
                self.tokenizer = _Tokenizer(cfg.tokenizer)
        except BaseException:
            await self.close()  # the caller gets no backend to close
            raise
        self._price = _api_price(cfg.model)
        return self._info(openai.__version__)

    def _http_client(self, openai: Any) -> Any:
        """The client's transport: aiohttp (its C HTTP parser costs the client less per
        chunk; the `openai[aiohttp]` extra) when chosen or, for `auto`, installed."""
        choice = self.config.http_client
        if choice not in ("auto", "aiohttp", "httpx"):
            raise UserError(f"[engine] http_client = {choice!r}: must be auto, aiohttp or "
                            "httpx")
        if choice == "httpx":
            return None
        try:
            import aiohttp  # noqa: F401

            return openai.DefaultAioHttpClient(timeout=self.config.timeout_s)
        except (ImportError, RuntimeError, AttributeError):
            if choice == "aiohttp":
                raise UserError("[engine] http_client = 'aiohttp' needs the openai[aiohttp] "
                                "extra: pip install 'openai[aiohttp]'") from None
            return None

    async def _check_model(self, openai: Any) -> None:
        """GET /models: the endpoint answers, accepts the key, and serves the model."""
        cfg = self.config
        url = public_url(cfg.base_url)
        try:
            page = await self.client.with_options(timeout=min(cfg.timeout_s, 30.0)
                                                  ).models.list()
        except openai.APITimeoutError as exc:
            if _refused(exc):
                raise UserError(f"cannot connect to {url} (--base-url): connection refused; "
                                "is the server running and the URL right?") from None
            raise UserError(f"{url} did not answer GET /models within 30 s (--base-url)"
                            ) from None
        except openai.APIConnectionError as exc:
            cause = exc.__cause__ or exc.__context__
            raise UserError(f"cannot connect to {url} (--base-url): "
                            f"{_short(str(cause or exc), 160)}; is the server running "
                            "and the URL right?") from None
        except openai.AuthenticationError:
            raise UserError(f"{url} rejected the API key from ${cfg.api_key_env} (HTTP 401); "
                            "check the key, or name another variable with --api-key-env"
                            ) from None
        except openai.NotFoundError:
            raise UserError(f"{url}/models answered 404: wrong --base-url? OpenAI-compatible "
                            "servers serve under /v1 (e.g. http://127.0.0.1:8000/v1); set "
                            "check_model = false in [engine] for an endpoint without "
                            "/models") from None
        except openai.APIStatusError as exc:
            raise UserError(f"{url}/models answered HTTP {exc.status_code}: "
                            f"{_short(exc.message, 160)} (--base-url)") from None
        ids = [m.id for m in getattr(page, "data", []) or []]
        if ids and cfg.model not in ids:
            shown = ", ".join(ids[:8]) + (f" (+{len(ids) - 8} more)" if len(ids) > 8 else "")
            raise UserError(f"model '{cfg.model}' is not served by {url} (--model); it "
                            f"serves: {shown}." + did_you_mean(cfg.model, ids))

    def _info(self, sdk_version: str) -> BackendInfo:
        cfg = self.config
        server = cfg.server
        meta = self.tokenizer.metadata if self.tokenizer is not None else {}
        model_path = str(server.get("model_path") or "")
        sha, size_mb = "", None
        if model_path and Path(model_path).is_file():
            from harness.models import file_sha256

            sha = file_sha256(Path(model_path))
            size_mb = round(Path(model_path).stat().st_size / 2**20, 1)
        quant = ""
        if meta.get("general.file_type") is not None:
            try:
                from backends.llamacpp import _ftype_names

                quant = _ftype_names().get(int(meta["general.file_type"]), "")
            except (ImportError, ValueError):
                quant = ""
        settings = {
            "base_url": public_url(cfg.base_url), "endpoint": cfg.endpoint or "per scenario",
            "api_key_env": cfg.api_key_env, "timeout_s": cfg.timeout_s,
            "tokenizer": cfg.tokenizer or "", "force_length": cfg.force_length,
            # none: the server may stop early; N_out is what it produced (long_answer)
            "output_length_forced": cfg.force_length != "none",
            "include_usage": cfg.include_usage, "max_tokens_field": cfg.max_tokens_field,
            "temperature": cfg.temperature, "extra_body": cfg.extra_body,
            "client": f"openai-python {sdk_version}", "retries": 0,
        }
        if server:
            settings["server"] = {k: v for k, v in server.items()
                                  if k not in ("engine", "engine_version", "model_path")}
        return BackendInfo(
            backend=self.name,
            engine=str(server.get("engine") or "openai-compatible"),
            engine_version=str(server.get("engine_version") or "unknown"),
            engine_build=f"openai-python {sdk_version}",
            model=cfg.model, model_path=model_path, model_sha256=sha, model_size_mb=size_mb,
            model_arch=str(meta.get("general.architecture", "")), quant=quant,
            weights="real", device=str(server.get("device") or
                                       ("local" if is_loopback(cfg.base_url) else "remote")),
            settings=settings,
        )

    def count_tokens(self, text: str, prompt: bool = False) -> int | None:
        """Tokens by the model's tokenizer when one is known, else None."""
        if self.tokenizer is None:
            return None
        return self.tokenizer.count(text, prompt)

    def request_body(self, request: Request) -> tuple[str, dict[str, Any], dict[str, Any]]:
        """(endpoint, standard arguments, extra fields) for one request."""
        cfg = self.config
        endpoint = cfg.endpoint or ("chat" if request.chat else "completions")
        args: dict[str, Any] = {"model": cfg.model, "stream": True,
                                cfg.max_tokens_field: request.max_output_tokens}
        if cfg.temperature is not None:
            args["temperature"] = cfg.temperature
        if cfg.include_usage:
            args["stream_options"] = {"include_usage": True}
        if endpoint == "chat":
            args["messages"] = [{"role": "user", "content": request.prompt}]
        else:
            args["prompt"] = request.prompt
        extra = dict(cfg.extra_body)
        if request.force_output_length:
            if cfg.force_length in ("min_tokens", "both"):
                extra["min_tokens"] = request.max_output_tokens
            if cfg.force_length in ("ignore_eos", "both"):
                extra["ignore_eos"] = True
        extra.update(request.extra)
        return endpoint, args, extra

    async def stream(self, request: Request) -> AsyncIterator[TokenEvent]:
        """Send one streaming request; yield an event per chunk with content, then one
        carrying the usage when the server sent it.

        The official client sends the request (auth, errors by status); the server-sent
        events are read from the raw response and parsed here, which costs a fraction
        of building the client's typed chunk objects (see bench/client_overhead.py).
        """
        if self.client is None:
            raise RuntimeError("open() the backend first")
        endpoint, args, extra = self.request_body(request)
        api = self.client.chat.completions if endpoint == "chat" else self.client.completions
        manager = api.with_streaming_response.create(**args, extra_body=extra or None)
        try:
            response = await manager.__aenter__()
        except Exception as exc:  # noqa: BLE001 - classified, recorded by the runner
            raise classify_error(exc) from None
        parser = ChunkParser(chat=endpoint == "chat", count=(
            self.tokenizer.count if self.tokenizer is not None else None))
        try:
            async for data in response.iter_bytes():
                t_ns = time.perf_counter_ns()
                for text, n_tokens in parser.feed(data):
                    yield TokenEvent(t_ns=t_ns, text=text, n_tokens=n_tokens)
                # After [DONE] the body is read to its end, so the connection is reused.
        except RequestError:
            raise
        except Exception as exc:  # noqa: BLE001 - classified, recorded by the runner
            raise classify_error(exc, streaming=True) from None
        finally:
            try:
                await manager.__aexit__(None, None, None)
            except Exception:  # noqa: BLE001 - closing a broken stream: best effort
                pass
        if not parser.finished:
            raise RequestError("stream_cut", "the stream ended without a finish_reason")
        if parser.usage is not None:
            yield TokenEvent(t_ns=time.perf_counter_ns(), text="", n_tokens=0,
                             usage=self._usage(parser.usage))

    def _usage(self, raw: dict[str, Any]) -> Usage:
        n_in = raw.get("prompt_tokens")
        n_out = raw.get("completion_tokens")
        extra: dict[str, Any] = {}
        cost = cost_usd(self._price, n_in, n_out)
        if cost is not None:
            extra["cost_usd"] = cost
        return Usage(input_tokens=n_in, output_tokens=n_out, source="engine", extra=extra)

    async def close(self) -> None:
        if self.client is not None:
            client, self.client = self.client, None
            await client.close()
        if self.tokenizer is not None:
            self.tokenizer.close()
            self.tokenizer = None


__all__ = ["OpenAIBackend", "OpenAIConfig", "classify_error", "config_from_values",
           "cost_usd", "is_loopback", "public_url"]
