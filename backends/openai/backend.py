"""Any OpenAI-compatible endpoint through the official `openai` async client.

Hosted APIs and local servers (llama-server, llama_cpp.server, vLLM, Ollama, LM Studio,
SGLang) alike: streaming `/v1/completions` or `/v1/chat/completions`, the key read from
the environment variable named by `--api-key-env`, extra request fields passed through
(`ignore_eos`, `min_tokens`, ...). Usage comes from `stream_options.include_usage`;
where a server sends none the runner counts with the model's tokenizer (a GGUF's vocab
through llama.cpp, or a Hugging Face tokenizer) when one is known, else the events.
A chunk holding several tokens says so in `TokenEvent.n_tokens` (from its logprobs; no
tokenizer runs while streaming) so the harness spreads its gap over them. Output length is
forced the way a managed server's kind says; any other endpoint is probed once at open()
for `ignore_eos` and `min_tokens` (`force_length = "auto"`), and the row's settings say
what was used and what the probe saw. Retries are off: a failed
request is recorded with its class (connection, timeout, http_401, http_429, http_5xx,
stream_cut, bad_response) and the run goes on.
"""

from __future__ import annotations

import asyncio
import contextvars
import ipaddress
import os
import select
import time
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from backends.base import (
    BackendInfo,
    Endpoint,
    Request,
    RequestError,
    TokenEvent,
    Usage,
    typed_config,
)
from backends.openai.direct import DirectPost
from backends.openai.errors import classify_error, refused, short
from backends.openai.sse import ChunkParser
from backends.openai.tokenizer import Tokenizer
from backends.prometheus import (
    LLAMACPP_PROCESSING,
    gauge,
    llamacpp_details,
    llamacpp_summary,
    parse_metrics,
)
from harness.config.settings import BenchSettings
from harness.errors import UserError, did_you_mean
from harness.models.files import (
    SYNTHETIC_KEYS,
    file_sha256,
    ftype_name,
    gguf_strings,
    is_synthetic_gguf,
)

DEFAULT_BASE_URL = "https://api.openai.com/v1"
DEFAULT_KEY_ENV = "OPENAI_API_KEY"
LOCAL_DUMMY_KEY = "local-server-needs-no-key"
# How a request asks a server to produce exactly max_tokens (hosted APIs cannot); auto:
# probe once at open() which of ignore_eos and min_tokens the endpoint honours.
FORCE_LENGTH_FIELDS = ("auto", "none", "min_tokens", "ignore_eos", "both")
# The length probe: an answer that wants to end after a word, asked for this many tokens.
PROBE_TOKENS = 16
PROBE_PROMPT = "Reply with one word only: OK.\n"
PROBE_TIMEOUT_S = 60.0
# Seconds between /metrics samples of a llama-server's busy slots during a window.
METRICS_SAMPLE_S = 0.5
# How long a connection released after a response must stay open before its server is
# trusted to keep connections alive (until then requests to it open new ones).
POOL_PROBE_S = 0.5
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
    force_length: str = "none"  # auto | none | min_tokens | ignore_eos | both
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


def config_from_settings(settings: BenchSettings, endpoint: Endpoint | None = None,
                         context_tokens: int | None = None,
                         engine: dict[str, Any] | None = None) -> dict[str, Any]:
    """The backend's config from the run's settings and, for a managed server, its
    endpoint; `engine` (default: the settings' [engine] table) holds this backend's
    settings and extra request fields."""
    engine = dict(settings.engine if engine is None else engine)
    model = endpoint.model if endpoint is not None else settings.model
    if not model:
        raise UserError("--backend openai needs --model NAME: the model name the endpoint "
                        "serves (GET <base-url>/models lists them)")
    base_url = str(endpoint.base_url if endpoint is not None
                   else settings.base_url or DEFAULT_BASE_URL).rstrip("/")
    if urlsplit(base_url).scheme not in ("http", "https") or not urlsplit(base_url).hostname:
        raise UserError(f"--base-url {base_url!r} is not an http(s) URL; e.g. "
                        "http://127.0.0.1:8000/v1")
    server = dict(endpoint.info) if endpoint is not None else {}
    # A managed server of a known kind says how it forces length; any other endpoint
    # (--base-url, --server command) is probed (auto).
    force_default = (endpoint.force_length if endpoint is not None else None) or "auto"
    force_engine = engine.pop("force_length", None)
    tokenizer = settings.tokenizer or engine.pop("tokenizer", None)
    if tokenizer is None and endpoint is not None:
        tokenizer = endpoint.tokenizer
    cfg: dict[str, Any] = {
        "model": str(model), "base_url": base_url,
        "api_key_env": settings.api_key_env or DEFAULT_KEY_ENV,
        "endpoint": settings.endpoint or engine.pop("endpoint", None),
        "timeout_s": float(settings.timeout or 600.0),
        "tokenizer": tokenizer,
        "force_length": settings.force_length or force_engine or force_default,
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
    cfg["extra_body"] = engine  # the rest: extra request fields
    return cfg


class OpenAIBackend:
    """An OpenAI-compatible endpoint; requests run concurrently (the server decides)."""

    name = "openai"
    max_concurrency: int | None = None

    @classmethod
    def config_from_settings(cls, settings: BenchSettings, endpoint: Endpoint | None,
                             context_tokens: int) -> dict[str, Any]:
        """This backend's config (see `config_from_settings` of this module)."""
        return config_from_settings(settings, endpoint)

    def __init__(self, **config: Any) -> None:
        self.config = typed_config("openai", OpenAIConfig, config)
        self.client: Any = None
        self._direct: DirectPost | None = None  # set by open() where it applies
        self.tokenizer: Tokenizer | None = None
        self._api_key = self._read_key()
        # How force_length was decided: what the probe saw, or why there was none.
        self.force_length_probe = ("not probed: set by the managed server or the settings"
                                   if self.config.force_length != "auto" else "")

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
        self._direct = DirectPost.attach(self.client, cfg.timeout_s)
        try:
            if cfg.check_model:
                await self._check_model(openai)
            if cfg.tokenizer:
                self.tokenizer = Tokenizer(cfg.tokenizer)
            if cfg.force_length == "auto":
                await self._probe_force_length()
        except BaseException:
            await self.close()  # the caller gets no backend to close
            raise
        return self._info(openai.__version__)

    def _http_client(self, openai: Any) -> Any:
        """The client's transport: aiohttp (its C HTTP parser costs the client less per
        chunk; the `openai[aiohttp]` extra) when chosen or, for `auto`, installed, with
        a pool that never reuses a connection the server has closed (`_fresh_pool`);
        httpx (which checks that itself) when chosen or where that cannot be set up."""
        choice = self.config.http_client
        if choice not in ("auto", "aiohttp", "httpx"):
            raise UserError(f"[engine] http_client = {choice!r}: must be auto, aiohttp or "
                            "httpx")
        if choice == "httpx":
            return None
        try:
            import aiohttp

            client = openai.DefaultAioHttpClient(timeout=self.config.timeout_s)
        except (ImportError, RuntimeError, AttributeError):
            if choice == "aiohttp":
                raise UserError("[engine] http_client = 'aiohttp' needs the openai[aiohttp] "
                                "extra: pip install 'openai[aiohttp]'") from None
            return None
        if _fresh_pool(client, aiohttp):
            return client
        if choice == "aiohttp":
            raise UserError("[engine] http_client = 'aiohttp': this openai/aiohttp version "
                            "does not let the harness check pooled connections; use "
                            "http_client = 'httpx'")
        return None

    async def _check_model(self, openai: Any) -> None:
        """GET /models: the endpoint answers, accepts the key, and serves the model."""
        cfg = self.config
        url = public_url(cfg.base_url)
        try:
            page = await self.client.with_options(timeout=min(cfg.timeout_s, 30.0)
                                                  ).models.list()
        except openai.APITimeoutError as exc:
            if refused(exc):
                raise UserError(f"cannot connect to {url} (--base-url): connection refused; "
                                "is the server running and the URL right?") from None
            raise UserError(f"{url} did not answer GET /models within 30 s (--base-url)"
                            ) from None
        except openai.APIConnectionError as exc:
            cause = exc.__cause__ or exc.__context__
            raise UserError(f"cannot connect to {url} (--base-url): "
                            f"{short(str(cause or exc), 160)}; is the server running "
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
                            f"{short(exc.message, 160)} (--base-url)") from None
        ids = [m.id for m in getattr(page, "data", []) or []]
        if ids and cfg.model not in ids:
            shown = ", ".join(ids[:8]) + (f" (+{len(ids) - 8} more)" if len(ids) > 8 else "")
            raise UserError(f"model '{cfg.model}' is not served by {url} (--model); it "
                            f"serves: {shown}." + did_you_mean(cfg.model, ids))

    async def _probe_force_length(self) -> None:
        """Find out whether this endpoint honours `ignore_eos` and `min_tokens`: one short
        request with each, asking for PROBE_TOKENS tokens of an answer that would end
        after a word. A field is honoured when its answer holds all PROBE_TOKENS tokens
        (a rejected field, HTTP 400, is not). `force_length` becomes what works (both,
        one, or none) and `force_length_probe` says what each probe returned."""
        honoured: list[str] = []
        seen: list[str] = []
        for name, value in (("ignore_eos", True), ("min_tokens", PROBE_TOKENS)):
            request = Request(request_id=f"probe-{name}", prompt=PROBE_PROMPT,
                              input_tokens=0, max_output_tokens=PROBE_TOKENS,
                              force_output_length=False, extra={name: value})
            try:
                async with asyncio.timeout(min(self.config.timeout_s, PROBE_TIMEOUT_S)):
                    n_out, finish = await self._answer_length(request)
            except RequestError as exc:
                seen.append(f"{name}: {exc.kind} ({short(str(exc), 80)}): not honoured")
                continue
            except TimeoutError:
                seen.append(f"{name}: no answer within {PROBE_TIMEOUT_S:g} s: not honoured")
                continue
            ok = n_out >= PROBE_TOKENS
            if ok:
                honoured.append(name)
            seen.append(f"{name}: {n_out}/{PROBE_TOKENS} tokens (finish_reason "
                        f"{finish or '?'}): {'honoured' if ok else 'not honoured'}")
        self.config.force_length = ("both" if len(honoured) == 2 else
                                    honoured[0] if honoured else "none")
        self.force_length_probe = "; ".join(seen)

    async def _answer_length(self, request: Request) -> tuple[int, str | None]:
        """(output tokens, finish reason) of one request: the server's usage, else the
        tokenizer's count of the text, else the number of chunks."""
        texts: list[str] = []
        listed, usage = 0, None
        async for event in self.stream(request):
            texts.append(event.text)
            listed += event.n_tokens
            usage = event.usage or usage
        if usage is not None and usage.output_tokens is not None:
            return int(usage.output_tokens), usage.finish_reason
        counted = self.count_tokens("".join(texts)) if texts else None
        return (counted if counted is not None else listed,
                usage.finish_reason if usage is not None else None)

    def _info(self, sdk_version: str) -> BackendInfo:
        cfg = self.config
        server = cfg.server
        meta = self.tokenizer.metadata if self.tokenizer is not None else {}
        model_path = str(server.get("model_path") or "")
        sha, size_mb, synthetic = "", None, False
        if model_path and Path(model_path).is_file():
            sha = file_sha256(Path(model_path))
            size_mb = round(Path(model_path).stat().st_size / 2**20, 1)
            # A managed server's GGUF: random weights are labelled as in process.
            marks = gguf_strings(Path(model_path), SYNTHETIC_KEYS)
            synthetic = is_synthetic_gguf(marks)
        quant = ""
        if meta.get("general.file_type") is not None:
            try:
                quant = ftype_name(int(meta["general.file_type"]))
            except ValueError:
                quant = ""
        settings = {
            "base_url": public_url(cfg.base_url), "endpoint": cfg.endpoint or "per scenario",
            "api_key_env": cfg.api_key_env, "timeout_s": cfg.timeout_s,
            "tokenizer": cfg.tokenizer or "", "force_length": cfg.force_length,
            "force_length_probe": self.force_length_probe,
            # none: the server may stop early; N_out is what it produced (long_answer)
            "output_length_forced": cfg.force_length != "none",
            "include_usage": cfg.include_usage, "max_tokens_field": cfg.max_tokens_field,
            "temperature": cfg.temperature, "extra_body": cfg.extra_body,
            "client": f"openai-python {sdk_version}", "retries": 0,
        }
        if server:
            settings["server"] = {k: v for k, v in server.items()
                                  if k not in ("engine", "engine_version", "model_path")}
        if synthetic:
            settings.update(synthetic_shape=marks.get("harness.synthetic_shape", ""),
                            synthetic_source=marks.get("harness.synthetic_source", ""))
        return BackendInfo(
            backend=self.name,
            engine=str(server.get("engine") or "openai-compatible"),
            engine_version=str(server.get("engine_version") or "unknown"),
            engine_build=f"openai-python {sdk_version}",
            model=cfg.model, model_path=model_path, model_sha256=sha, model_size_mb=size_mb,
            model_arch=str(meta.get("general.architecture", "")), quant=quant,
            weights="synthetic" if synthetic else "real",
            device=str(server.get("device") or
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
            args["messages"] = ([{"role": r, "content": c} for r, c in request.messages]
                                or [{"role": "user", "content": request.prompt}])
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
        carrying the usage (counts as far as the server sent them, the finish reason).

        The request goes out on the official client's session (its URL, key, headers,
        timeouts and error classes; see `_send`); the server-sent events are read from
        the raw response and parsed here, which costs a fraction of building the
        client's typed chunk objects (see bench/client_overhead.py).
        """
        if self.client is None:
            raise RuntimeError("open() the backend first")
        endpoint, args, extra = self.request_body(request)
        _STREAMING.set(True)  # the pool learns keep-alive from streamed responses only
        body, close = await self._send(endpoint, args, extra)
        # No tokenizer while streaming: a chunk counts its logprobs or one token; where
        # the server sends no usage the runner counts the text after the request ended.
        parser = ChunkParser(chat=endpoint == "chat")
        try:
            async for data in body:
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
                await close()
            except Exception:  # noqa: BLE001 - closing a broken stream: best effort
                pass
            _STREAMING.set(False)
        if not parser.finished:
            raise RequestError("stream_cut", "the stream ended without a finish_reason")
        yield TokenEvent(t_ns=time.perf_counter_ns(), text="", n_tokens=0,
                         usage=self._usage(parser.usage, parser.timings,
                                           parser.finish_reason))

    async def _send(self, endpoint: str, args: dict[str, Any], extra: dict[str, Any]
                    ) -> tuple[AsyncIterator[bytes], Callable[[], Awaitable[Any]]]:
        """Send one streaming request: (its body's bytes as they arrive, a close
        function), or RequestError. On aiohttp with a plain key straight on the client's
        session (`DirectPost`: a fifth of the client's CPU per request), else through
        `create()`."""
        if self._direct is not None:
            return await self._direct.post(endpoint, {**args, **extra})
        api = self.client.chat.completions if endpoint == "chat" else self.client.completions
        manager = api.with_streaming_response.create(**args, extra_body=extra or None)
        try:
            response = await manager.__aenter__()
        except Exception as exc:  # noqa: BLE001 - classified, recorded by the runner
            raise classify_error(exc) from None
        return _body_bytes(response), lambda: manager.__aexit__(None, None, None)

    def _usage(self, raw: dict[str, Any] | None,
               timings: dict[str, Any] | None = None,
               finish_reason: str | None = None) -> Usage:
        """Usage from the stream; with llama-server's `timings` (final chunk) the engine's
        own prefill and decode times. Its predicted_ms runs from the first token to the
        last, so it timed predicted_n - 1 decode steps (llama-server's own rate)."""
        raw = raw or {}
        n_in = raw.get("prompt_tokens")
        n_out = raw.get("completion_tokens")
        if not timings:
            return Usage(input_tokens=n_in, output_tokens=n_out, source="engine",
                         finish_reason=finish_reason)

        def num(key: str) -> float | None:
            value = timings.get(key)
            return float(value) if isinstance(value, (int, float)) else None

        prompt_n, predicted_n = num("prompt_n"), num("predicted_n")
        extra = {"cache_n": int(timings["cache_n"])} if isinstance(
            timings.get("cache_n"), int) else {}
        return Usage(
            input_tokens=n_in, output_tokens=n_out, source="engine",
            engine_prefill_ms=num("prompt_ms"), engine_decode_ms=num("predicted_ms"),
            engine_prefill_tokens=int(prompt_n) if prompt_n is not None else None,
            engine_decode_tokens=max(int(predicted_n) - 1, 0) if predicted_n is not None
            else None, extra=extra, finish_reason=finish_reason)

    # ---- server-side figures: a llama-server's Prometheus /metrics ---------------------

    def _metrics_url(self) -> str | None:
        server = self.config.server
        url = server.get("metrics_url")
        return str(url) if url and server.get("kind") == "llama-server" else None

    async def _scrape(self) -> Any:
        url = self._metrics_url()
        assert url is not None

        def get() -> str:
            with urllib.request.urlopen(url, timeout=10.0) as resp:  # noqa: S310 - loopback
                return resp.read().decode("utf-8", errors="replace")

        return parse_metrics(await asyncio.to_thread(get))

    async def _sample_peaks(self) -> None:
        while True:
            await asyncio.sleep(METRICS_SAMPLE_S)
            try:
                page = await self._scrape()
            except Exception:  # noqa: BLE001, S112 - a missed sample is not an error
                continue
            value = gauge(page, LLAMACPP_PROCESSING)
            if value is not None:
                self._peaks["requests_running"] = max(
                    value, self._peaks.get("requests_running") or 0.0)

    async def server_metrics_start(self) -> None:
        """Scrape a managed llama-server's /metrics at the start of a measured window and
        sample its busy slots during it; nothing for other endpoints."""
        self._peaks: dict[str, float] = {}
        self._metrics_before: Any = None
        self._sampler: asyncio.Task[None] | None = None
        if self._metrics_url() is None:
            return
        try:
            self._metrics_before = await self._scrape()
        except Exception:  # noqa: BLE001 - figures are optional; the run goes on
            return
        self._sampler = asyncio.create_task(self._sample_peaks())

    async def server_metrics_stop(self) -> dict[str, Any] | None:
        """Scrape again: the window's server_* columns and details, or None."""
        sampler, self._sampler = getattr(self, "_sampler", None), None
        if sampler is not None:
            sampler.cancel()
            try:
                await sampler
            except asyncio.CancelledError:
                pass
        before, self._metrics_before = getattr(self, "_metrics_before", None), None
        if before is None:
            return None
        try:
            after = await self._scrape()
        except Exception as exc:  # noqa: BLE001
            return {"columns": {}, "details": {"error": f"scrape failed: {short(str(exc))}"}}
        return {"columns": llamacpp_summary(before, after, self._peaks),
                "details": {"source": self._metrics_url(),
                            **llamacpp_details(before, after), "peaks": dict(self._peaks)}}

    async def close(self) -> None:
        if self.client is not None:
            client, self.client = self.client, None
            await client.close()
        if self.tokenizer is not None:
            self.tokenizer.close()
            self.tokenizer = None


def _body_bytes(response: Any) -> AsyncIterator[bytes]:
    """The response body's bytes as they arrive. With the aiohttp transport and a body
    that is not content-encoded, straight from aiohttp's stream: the openai and httpx
    layers above it (four async generators per chunk) cost the client more CPU per
    streamed token than the rest of its per-chunk path (bench/client_overhead.py).
    Otherwise (httpx, gzip, another openai version) through the client's iter_bytes."""
    http = getattr(response, "http_response", None)
    stream = getattr(http, "stream", None)
    for _ in range(3):  # httpx wraps the transport's stream (BoundAsyncStream._stream)
        if stream is None or hasattr(stream, "_aiohttp_response"):
            break
        stream = getattr(stream, "_stream", None)
    content = getattr(getattr(stream, "_aiohttp_response", None), "content", None)
    if content is None or not hasattr(content, "iter_any") or \
            http.headers.get("content-encoding", "identity") not in ("", "identity"):
        return response.iter_bytes()
    return content.iter_any()


# True in a task that streams: llama-server keeps a connection open after a plain response
# (GET /models) but closes it after a streamed one, so only the latter teach the pool.
_STREAMING: contextvars.ContextVar[bool] = contextvars.ContextVar("harness_openai_streaming",
                                                                 default=False)


def _server_closed(protocol: Any) -> bool:
    """True when an idle pooled connection's socket is readable: the server closed it (or
    sent bytes no request asked for), so it must not carry the next request. httpx checks
    this before reusing a connection; aiohttp does not, and hands out a connection whose
    close it has not processed yet."""
    transport = getattr(protocol, "transport", None)
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is None:
        return False
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


def _fresh_pool(client: Any, aiohttp: Any) -> bool:
    """Give the openai client's aiohttp transport a connection pool that never sends a
    request on a connection its server is closing.

    llama-server (cpp-httplib) closes the connection after every streamed response while
    its headers say `Keep-Alive`. aiohttp put the connection back in its pool when the
    body ended and reused it before it had read the server's FIN: every second request
    failed at once ("Server disconnected", reported as a connect "timeout" in 0 s). A
    pool cannot tell from the socket alone whether a FIN is still on its way, so it
    learns it per server: until a connection released after a streamed response has
    stayed open for POOL_PROBE_S, requests to that server open new connections; a server
    that kept it open gets its connections reused (each checked for a FIN first, as
    httpx does), one that closed it never does. No request is sent twice.
    False when this openai/aiohttp version has no place to plug the pool in (the caller
    then uses httpx)."""
    transport = getattr(client, "_transport", None)
    if transport is None or not hasattr(transport, "client") or \
            getattr(transport, "client", None) is not None or \
            not hasattr(aiohttp.TCPConnector, "_get") or \
            not hasattr(aiohttp.TCPConnector, "_release"):
        return False

    class LearningConnector(aiohttp.TCPConnector):  # type: ignore[misc,name-defined]
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            # server (connection key) -> keeps connections open after a response?
            self.keeps_alive: dict[Any, bool] = {}

        async def _get(self, key: Any, traces: Any) -> Any:
            if self.keeps_alive.get(key) is not True:
                return None  # not known to keep connections open: a new connection
            while True:
                conn = await super()._get(key, traces)
                if conn is None or not _server_closed(conn.protocol):
                    return conn
                self.keeps_alive[key] = False  # it closed one after all
                conn.close()

        def _release(self, key: Any, protocol: Any, *, should_close: bool = False) -> None:
            known = self.keeps_alive.get(key)
            closing = should_close or known is False or bool(protocol.should_close)
            super()._release(key, protocol, should_close=closing)
            if known is None and not closing and _STREAMING.get():
                self._loop.call_later(POOL_PROBE_S, self._judge, key, protocol)

        def _judge(self, key: Any, protocol: Any) -> None:
            if self.keeps_alive.get(key) is None and not self.closed:
                self.keeps_alive[key] = bool(protocol.is_connected()) and \
                    not _server_closed(protocol)

    limits = getattr(transport, "limits", None)
    ssl_context = getattr(transport, "ssl_context", None)

    def session() -> Any:  # called in the event loop on the first request
        kwargs: dict[str, Any] = {"ssl": ssl_context} if ssl_context is not None else {}
        if limits is not None:
            if limits.max_connections is not None:
                kwargs["limit"] = limits.max_connections
            kwargs["keepalive_timeout"] = limits.keepalive_expiry
        return aiohttp.ClientSession(connector=LearningConnector(**kwargs))

    transport.client = session
    return True


__all__ = ["OpenAIBackend", "OpenAIConfig", "classify_error", "config_from_settings",
           "is_loopback", "public_url"]
