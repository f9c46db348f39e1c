"""llama.cpp in process through llama-cpp-python.

One request at a time: the model state is `reset()` before every request so no cached
prefix skips prefill; the output is forced to the requested length by greedy sampling
with every end-of-generation token masked; the engine's own timings
(`llama_perf_context`) are read after each request and returned with the usage.
"""

from __future__ import annotations

import asyncio
import codecs
import collections
import contextlib
import ctypes
import os
import threading
import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backends.base import (
    BackendInfo,
    Endpoint,
    Request,
    RequestError,
    TokenEvent,
    Usage,
    typed_config,
)
from harness.config.settings import BenchSettings
from harness.errors import UserError
from harness.models.files import file_sha256, ftype_name, is_synthetic_gguf
from harness.models.resolve import resolve_gguf

_SENTINEL = object()
WAKE_INTERVAL_S = 0.05  # longest delay before engine events reach the event loop


@dataclass
class LlamaCppConfig:
    """Settings that affect speed; all recorded in the result row."""

    model: str | None = None
    n_ctx: int = 4096
    n_threads: int | None = None  # None: physical cores (llama.cpp's CLI default)
    n_gpu_layers: int | None = None  # None: all layers where a GPU backend exists, else 0
    # None: auto, llama.cpp turns it on where the device supports it (llama-bench's and
    # llama-server's default); True/False: forced on/off
    flash_attn: bool | None = None
    n_batch: int | None = None  # None: n_ctx, so a prompt is one decode call
    n_ubatch: int = 512
    # False: the sliding-window layers (Gemma, ...) keep only their window in the KV cache,
    # as llama-bench and llama-server do; llama.cpp's C default (True) keeps the context
    swa_full: bool = False
    use_mmap: bool = True
    seed: int = 1234


class LlamaCppBackend:
    """In-process llama.cpp; serves one request at a time."""

    name = "llamacpp"
    max_concurrency: int | None = 1

    @classmethod
    def config_from_settings(cls, settings: BenchSettings, endpoint: Endpoint | None,
                             context_tokens: int) -> dict[str, Any]:
        """This backend's config: --model, the llama.cpp flags (n_ctx defaults to what
        the workload needs) and the [engine] table (any LlamaCppConfig field)."""
        if endpoint is not None:
            raise UserError(f"--server {endpoint.kind} is benchmarked over HTTP: use "
                            "--backend openai (or leave --backend out), not --backend "
                            "llamacpp")
        cfg: dict[str, Any] = {"model": settings.model,
                               "n_ctx": settings.n_ctx or context_tokens}
        cfg.update({k: v for k, v in settings.owned_by("llamacpp").items() if k != "n_ctx"})
        return {**cfg, **settings.engine}

    def __init__(self, **config: Any) -> None:
        self.config = typed_config("llamacpp", LlamaCppConfig, config)
        self.llm: Any = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llamacpp")
        self._lock = asyncio.Lock()
        self._n_vocab = 0
        self._eog: list[int] = []
        self._pool: _ThreadPool | None = None

    async def open(self) -> BackendInfo:
        try:
            import llama_cpp
        except ImportError:
            raise UserError("llama-cpp-python is not installed: pip install -e '.[llamacpp]' "
                            "(make bench does this)") from None
        path = resolve_gguf(self.config.model)
        cfg = self.config
        gpu = bool(llama_cpp.llama_supports_gpu_offload())
        n_gpu_layers = cfg.n_gpu_layers if cfg.n_gpu_layers is not None else (-1 if gpu else 0)
        n_batch = cfg.n_batch or cfg.n_ctx
        kwargs = dict(model_path=str(path), n_ctx=cfg.n_ctx, n_batch=n_batch,
                      n_ubatch=min(cfg.n_ubatch, n_batch), n_gpu_layers=n_gpu_layers,
                      flash_attn=bool(cfg.flash_attn), swa_full=cfg.swa_full,
                      use_mmap=cfg.use_mmap, seed=cfg.seed, logits_all=False, verbose=False)
        threads = cfg.n_threads or default_threads()
        kwargs.update(n_threads=threads, n_threads_batch=threads)

        def load() -> Any:
            if cfg.flash_attn is not None:
                return llama_cpp.Llama(**kwargs)
            with _flash_attn_auto(llama_cpp):
                return llama_cpp.Llama(**kwargs)

        try:
            self.llm = await asyncio.get_running_loop().run_in_executor(self._executor, load)
        except (ValueError, RuntimeError, OSError) as exc:
            raise UserError(f"llama.cpp could not load {path}: {exc} (is the file complete "
                            "and a model llama.cpp supports?)") from None
        self._find_eog()
        self._pool = _ThreadPool.attach(llama_cpp, self.llm._ctx.ctx, threads)
        meta = dict(self.llm.metadata)
        model_ptr = self.llm._model.model
        desc_buf = ctypes.create_string_buffer(256)
        llama_cpp.llama_model_desc(model_ptr, desc_buf, 256)
        ftype = meta.get("general.file_type")
        quant = ftype_name(int(ftype)) if ftype is not None else ""
        system_info = llama_cpp.llama_print_system_info().decode(errors="replace").strip()
        device = "cpu"
        if gpu and n_gpu_layers != 0:
            device = "cuda" if "CUDA" in system_info else (
                "metal" if "METAL" in system_info.upper() else "gpu")
        settings = {
            "n_ctx": cfg.n_ctx, "n_batch": n_batch, "n_ubatch": min(cfg.n_ubatch, n_batch),
            "n_threads": self.llm.context_params.n_threads,
            "n_threads_batch": self.llm.context_params.n_threads_batch,
            "n_gpu_layers": n_gpu_layers,
            "flash_attn": "auto" if cfg.flash_attn is None else cfg.flash_attn,
            "swa_full": cfg.swa_full, "use_mmap": cfg.use_mmap,
            "type_k": "f16", "type_v": "f16", "repack": True,  # llama.cpp's defaults
            "threadpool": "persistent, poll 50 (as llama-bench and llama-server)"
            if self._pool is not None else "one per graph (llama-cpp-python's default)",
            "decode": "llama_decode per token (llama_batch_get_one)",
            "sampler": "greedy (argmax, EOG masked when forced)", "eog_banned_tokens": len(self._eog),
        }
        synthetic = is_synthetic_gguf(meta)
        model_name = meta.get("general.name") or path.stem
        if synthetic:  # random weights: the row names the shape it stands for
            model_name = f"synthetic:{meta.get('harness.synthetic_shape') or model_name}"
            settings.update(synthetic_shape=meta.get("harness.synthetic_shape", ""),
                            synthetic_source=meta.get("harness.synthetic_source", ""))
        return BackendInfo(
            backend=self.name, engine="llama.cpp", engine_version=llama_cpp.__version__,
            engine_build=system_info, model=model_name,
            model_path=str(path), model_sha256=file_sha256(path),
            model_size_mb=round(path.stat().st_size / 2**20, 1),
            model_params=int(llama_cpp.llama_model_n_params(model_ptr)),
            model_arch=meta.get("general.architecture", ""), quant=quant,
            weights="synthetic" if synthetic else "real", device=device, settings={
                **settings, "model_desc": desc_buf.value.decode(errors="replace")},
        )

    def _find_eog(self) -> None:
        """The vocabulary size and every end-of-generation token (banned when forcing)."""
        import llama_cpp

        vocab = llama_cpp.llama_model_get_vocab(self.llm._model.model)
        self._n_vocab = llama_cpp.llama_vocab_n_tokens(vocab)
        self._eog = [t for t in range(self._n_vocab) if llama_cpp.llama_vocab_is_eog(vocab, t)]

    def count_tokens(self, text: str, prompt: bool = False) -> int | None:
        """Tokens by the model's own tokenizer; `prompt=True` counts the BOS it adds."""
        if self.llm is None:
            return None
        return len(self.llm.tokenize(text.encode("utf-8"), add_bos=prompt, special=False))

    def _greedy(self, ctx: Any, banned: Any) -> int:
        """Greedy next token straight from the logits (numpy argmax), with the banned
        end-of-generation ids masked: the same token llama.cpp's greedy sampler with a
        -inf logit bias picks, at a tenth of its cost on a 262k vocabulary (it builds a
        candidate array per token, ~1 ms here: 4% of a decode step on this model)."""
        import llama_cpp
        import numpy as np

        logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(ctx, -1),
                                       shape=(self._n_vocab,))
        if banned is not None:
            saved = logits[banned].copy()
            logits[banned] = -np.inf
            token = int(logits.argmax())
            logits[banned] = saved
            return token
        return int(logits.argmax())

    def _generate(self, request: Request, emit: Any, cancel: threading.Event) -> None:
        import llama_cpp
        import numpy as np

        llm = self.llm
        tokens = llm.tokenize(request.prompt.encode("utf-8"), add_bos=True, special=False)
        if len(tokens) + request.max_output_tokens > llm.n_ctx():
            raise RequestError("context_overflow",
                               f"{len(tokens)} prompt + {request.max_output_tokens} output "
                               f"tokens exceed n_ctx={llm.n_ctx()}; raise --n-ctx")
        ctx = llm._ctx.ctx
        banned = (np.asarray(self._eog, dtype=np.int64)
                  if request.force_output_length and self._eog else None)
        llm.reset()  # forget every cached token: this request's prefill runs in full
        llama_cpp.llama_perf_context_reset(ctx)
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        llm.eval(tokens)
        one = (llama_cpp.llama_token * 1)()
        produced = 0
        finish = "length"
        for i in range(request.max_output_tokens):
            token = self._greedy(ctx, banned)
            t_ns = time.perf_counter_ns()
            produced += 1
            text = decoder.decode(llm.detokenize([token]))
            emit(TokenEvent(t_ns=t_ns, text=text, n_tokens=1))
            if token in self._eog and not request.force_output_length:
                finish = "stop"
                break
            if i + 1 == request.max_output_tokens:
                break
            if cancel.is_set():
                finish = "cancelled"
                break
            one[0] = token  # llama_decode straight: llm.eval copies 1 MB of logits a token
            if llama_cpp.llama_decode(ctx, llama_cpp.llama_batch_get_one(one, 1)) != 0:
                raise RequestError("engine_error", "llama_decode failed (context full?)")
        perf = llama_cpp.llama_perf_context(ctx)
        emit(TokenEvent(t_ns=time.perf_counter_ns(), text="", n_tokens=0, usage=Usage(
            input_tokens=len(tokens), output_tokens=produced, source="engine",
            engine_prefill_ms=perf.t_p_eval_ms, engine_decode_ms=perf.t_eval_ms,
            engine_prefill_tokens=perf.n_p_eval, engine_decode_tokens=perf.n_eval,
            finish_reason=finish)),
            final=True)

    async def stream(self, request: Request) -> AsyncIterator[TokenEvent]:
        """Events are stamped in the engine thread as each token is sampled and handed
        to the event loop in batches (at most every WAKE_INTERVAL_S), so waking the loop
        per token does not steal CPU from the compute threads; the timestamps, not the
        delivery, define every metric."""
        if self.llm is None:
            raise RuntimeError("open() the backend first")
        loop = asyncio.get_running_loop()
        pending: collections.deque[Any] = collections.deque()
        ready = asyncio.Event()
        cancel = threading.Event()
        last_wake = [0.0]

        def emit(item: Any, final: bool = False) -> None:
            pending.append(item)
            now = time.monotonic()
            if final or now - last_wake[0] >= WAKE_INTERVAL_S:
                last_wake[0] = now
                loop.call_soon_threadsafe(ready.set)

        def work() -> None:
            try:
                self._generate(request, emit, cancel)
            except BaseException as exc:  # noqa: BLE001 - handed to the consumer
                emit(exc)
            finally:
                emit(_SENTINEL, final=True)

        async with self._lock:
            future = loop.run_in_executor(self._executor, work)
            try:
                while True:
                    await ready.wait()
                    ready.clear()
                    while pending:
                        item = pending.popleft()
                        if item is _SENTINEL:
                            return
                        if isinstance(item, BaseException):
                            if isinstance(item, RequestError):
                                raise item
                            raise RequestError("engine_error",
                                               f"{type(item).__name__}: {item}")
                        yield item
            finally:
                cancel.set()
                await asyncio.shield(future)  # the engine is free again before unlocking

    async def close(self) -> None:
        if self.llm is not None:
            llm, self.llm = self.llm, None
            pool, self._pool = self._pool, None

            def close() -> None:
                if pool is not None:
                    pool.detach(llm._ctx.ctx)
                llm.close()
                if pool is not None:
                    pool.free()

            await asyncio.get_running_loop().run_in_executor(self._executor, close)
        self._executor.shutdown(wait=False)


class _ThreadPoolParams(ctypes.Structure):
    """ggml's `struct ggml_threadpool_params` (ggml.h)."""

    _fields_ = [("cpumask", ctypes.c_bool * 512), ("n_threads", ctypes.c_int),
                ("prio", ctypes.c_int), ("poll", ctypes.c_uint32),
                ("strict_cpu", ctypes.c_bool), ("paused", ctypes.c_bool)]


class _ThreadPool:
    """A persistent ggml thread pool attached to the context, as llama-bench and
    llama-server attach one; llama-cpp-python attaches none, so ggml starts and joins its
    threads for every graph (every token). Through the wheel's own libggml-base and
    libggml-cpu; `attach` returns None where they or the functions are not found, or the
    parameters do not read back as set (a changed struct layout)."""

    def __init__(self, pool: int, cpu: Any, llama: Any) -> None:
        self.pool, self._cpu, self._llama = pool, cpu, llama

    @staticmethod
    def _lib(folder: Path, name: str) -> Any:
        for pattern in (f"lib{name}.so", f"lib{name}.dylib", f"{name}.dll", f"lib{name}.so.*"):
            found = sorted(folder.glob(pattern))
            if found:
                return ctypes.CDLL(str(found[0]))
        raise OSError(f"{name} not found in {folder}")

    @classmethod
    def attach(cls, llama_cpp: Any, ctx: Any, n_threads: int) -> _ThreadPool | None:
        try:
            folder = Path(llama_cpp.__file__).parent / "lib"
            base, cpu = cls._lib(folder, "ggml-base"), cls._lib(folder, "ggml-cpu")
            llama = llama_cpp.llama_cpp._lib
            base.ggml_threadpool_params_init.argtypes = [
                ctypes.POINTER(_ThreadPoolParams), ctypes.c_int]
            cpu.ggml_threadpool_new.argtypes = [ctypes.POINTER(_ThreadPoolParams)]
            cpu.ggml_threadpool_new.restype = ctypes.c_void_p
            cpu.ggml_threadpool_free.argtypes = [ctypes.c_void_p]
            llama.llama_attach_threadpool.argtypes = [ctypes.c_void_p, ctypes.c_void_p,
                                                      ctypes.c_void_p]
            llama.llama_detach_threadpool.argtypes = [ctypes.c_void_p]
        except (OSError, AttributeError):
            return None
        params = _ThreadPoolParams()
        base.ggml_threadpool_params_init(ctypes.byref(params), n_threads)
        if params.n_threads != n_threads or params.poll != 50 or params.paused:
            return None
        pool = cpu.ggml_threadpool_new(ctypes.byref(params))
        if not pool:
            return None
        llama.llama_attach_threadpool(ctx, pool, None)
        return cls(pool, cpu, llama)

    def detach(self, ctx: Any) -> None:
        self._llama.llama_detach_threadpool(ctx)

    def free(self) -> None:
        self._cpu.ggml_threadpool_free(self.pool)


_FA_LOCK = threading.Lock()


@contextlib.contextmanager
def _flash_attn_auto(llama_cpp: Any) -> Iterator[None]:
    """llama-cpp-python's constructor maps `flash_attn` False to
    LLAMA_FLASH_ATTN_TYPE_DISABLED and has no auto; for the length of one construction,
    DISABLED reads as AUTO, so llama.cpp decides as llama-bench and llama-server let it."""
    module = getattr(getattr(llama_cpp, "llama", None), "llama_cpp", None)
    auto = getattr(llama_cpp, "LLAMA_FLASH_ATTN_TYPE_AUTO", None)
    if module is None or auto is None or not hasattr(module, "LLAMA_FLASH_ATTN_TYPE_DISABLED"):
        yield
        return
    with _FA_LOCK:
        saved = module.LLAMA_FLASH_ATTN_TYPE_DISABLED
        module.LLAMA_FLASH_ATTN_TYPE_DISABLED = auto
        try:
            yield
        finally:
            module.LLAMA_FLASH_ATTN_TYPE_DISABLED = saved


def default_threads() -> int:
    """Physical cores, as llama.cpp's own tools default to; logical CPUs if unknown."""
    try:
        import psutil

        return psutil.cpu_count(logical=False) or os.cpu_count() or 1
    except ImportError:
        return os.cpu_count() or 1


__all__ = ["LlamaCppBackend", "LlamaCppConfig", "Path"]
