"""vLLM: in process (`vllm.LLM`, offline batch) or a vLLM OpenAI server (serve).

- **offline** (no base URL): `vllm.LLM` loads the model; the runner hands over each
  repetition as one batch (`run_batch`), every request with `ignore_eos` and
  `max_tokens` so its output length is exact. vLLM's offline API returns when the whole
  batch is done, so per-request TTFT and decode time come from the engine's own request
  metrics (`RequestOutput.metrics`: first- and last-token times on the monotonic clock,
  which is the clock the harness reads); throughput is Σ N_out over the wall-clock window.
- **serve** (a base URL, usually from `--server vllm`): requests go through the `openai`
  backend, and the server's Prometheus `/metrics` is scraped before and after each load
  level (and sampled during it for KV-cache usage), giving server-side token counts,
  TTFT/ITL/E2E/queue means and preemptions beside the client's figures.

Engine settings (`[engine]` table of a --config file, or the vLLM flags of `harness
bench`) are vLLM's own `EngineArgs` names, passed through and recorded in the row.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import struct
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backends.base import (
    BackendInfo,
    BatchResult,
    Endpoint,
    Request,
    RequestError,
    TokenEvent,
    Usage,
    typed_config,
)
from backends.openai.backend import OpenAIBackend
from backends.prometheus import (
    VLLM_KV_USAGE,
    VLLM_RUNNING,
    gauge,
    parse_metrics,
    vllm_details,
    vllm_summary,
)
from backends.vllm.config import (
    check_engine_keys,
    check_model_dir,
    config_from_settings,
)
from harness.config.settings import BenchSettings
from harness.errors import UserError
from harness.models.files import file_sha256

METRICS_SAMPLE_S = 1.0


@dataclass
class VLLMConfig:
    """What decides how vLLM runs; every field is recorded in the result row."""

    model: str
    base_url: str | None = None  # serve mode: the vLLM server's /v1 URL
    timeout_s: float = 600.0
    engine_args: dict[str, Any] = field(default_factory=dict)  # vLLM EngineArgs names
    openai: dict[str, Any] = field(default_factory=dict)  # serve mode: the client's config
    server: dict[str, Any] = field(default_factory=dict)  # a managed server's description
    # serve: seconds between /metrics samples for peak KV-cache use during a window;
    # 0 = only the scrapes before and after it (each sample costs the server CPU time).
    metrics_sample_s: float = METRICS_SAMPLE_S

    @property
    def mode(self) -> str:
        return "serve" if self.base_url else "offline"


def safetensors_params(directory: Path) -> int | None:
    """Parameter count from the safetensors headers (no weights are read)."""
    total = 0
    files = sorted(directory.glob("*.safetensors"))
    for f in files:
        with open(f, "rb") as fh:
            (n,) = struct.unpack("<Q", fh.read(8))
            header = json.loads(fh.read(n))
        for name, meta in header.items():
            if name == "__metadata__":
                continue
            count = 1
            for dim in meta.get("shape", []):
                count *= int(dim)
            total += count
    return total or None


def is_synthetic(local: Path | None, engine_args: dict[str, Any]) -> bool:
    """Random weights: vLLM's dummy loading, or a folder marked by `harness model synth
    --format hf` (harness_synthetic.json) or the tiny test model."""
    if str(engine_args.get("load_format", "")) == "dummy":
        return True
    return local is not None and any((local / m).exists() for m in (
        "harness_synthetic.json", "harness_tiny_llama.json"))


def synthetic_label(local: Path | None) -> str:
    """`synthetic:<shape>` for a `harness model synth --format hf` folder, else ''."""
    marker = local / "harness_synthetic.json" if local is not None else None
    if marker is None or not marker.is_file():
        return ""
    try:
        return f"synthetic:{json.loads(marker.read_text())['shape']}"
    except (OSError, ValueError, KeyError, TypeError):
        return ""


def weights_sha256(directory: Path, limit_gib: float = 20.0) -> str:
    """sha256 over the per-file sha256 of the weight files (each cached by size and
    mtime); empty above `limit_gib`, where hashing would dominate the run."""
    files = sorted(directory.glob("*.safetensors")) or sorted(directory.glob("*.bin"))
    if not files or sum(f.stat().st_size for f in files) > limit_gib * 2**30:
        return ""
    digest = hashlib.sha256()
    for f in files:
        digest.update(f"{f.name}:{file_sha256(f)}\n".encode())
    return digest.hexdigest()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    # pydantic puts the useful part on the lines after the title
    return " ".join(lines[:3])[:400]


def samples_from_engine_metrics(metrics: list[Any]) -> dict[str, list[tuple[dict, float]]]:
    """`LLM.get_metrics()` objects → the sample dict `backends.prometheus` reads, named as
    the server's `/metrics` page names them (counters `_total`, histograms
    `_bucket/_sum/_count`)."""
    out: dict[str, list[tuple[dict, float]]] = {}
    for m in metrics:
        kind = type(m).__name__
        labels = dict(getattr(m, "labels", {}) or {})
        if kind == "Counter":
            out.setdefault(m.name + "_total", []).append((labels, float(m.value)))
        elif kind == "Gauge":
            out.setdefault(m.name, []).append((labels, float(m.value)))
        elif kind == "Histogram":
            for le, count in (m.buckets or {}).items():
                out.setdefault(m.name + "_bucket", []).append(({**labels, "le": le},
                                                               float(count)))
            out.setdefault(m.name + "_sum", []).append((labels, float(m.sum)))
            out.setdefault(m.name + "_count", []).append((labels, float(m.count)))
    return out


class VLLMBackend:
    """vLLM offline (in-process batch) or serve (through the openai backend)."""

    name = "vllm"
    max_concurrency: int | None = None

    @classmethod
    def config_from_settings(cls, settings: BenchSettings, endpoint: Endpoint | None,
                             context_tokens: int) -> dict[str, Any]:
        """This backend's config (`backends.vllm.config.config_from_settings`)."""
        return config_from_settings(settings, endpoint)

    def __init__(self, **config: Any) -> None:
        self.config = typed_config("vllm", VLLMConfig, config)
        self.llm: Any = None
        self.tokenizer: Any = None
        self.client: Any = None  # serve mode: the OpenAIBackend
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vllm")
        self._metrics_before: Any = None
        self._peaks: dict[str, float | None] = {}
        self._sampler: asyncio.Task | None = None
        if self.config.mode == "offline":
            # The runner submits each repetition as one batch through run_batch().
            self.run_batch = self._run_batch

    # ---- open -------------------------------------------------------------------------

    async def open(self) -> BackendInfo:
        if self.config.mode == "serve":
            return await self._open_serve()
        return await self._open_offline()

    async def _open_offline(self) -> BackendInfo:
        cfg = self.config
        local = check_model_dir(cfg.model)
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")  # GiB; read by the CPU build
        os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
        try:
            import vllm
        except ImportError as exc:
            raise UserError(f"vLLM is not importable ({exc}); install it with "
                            "`make install-vllm` and run .venv-vllm/bin/harness "
                            "(make bench BACKEND=vllm does both)") from None
        check_engine_keys(set(cfg.engine_args))
        args = {"disable_log_stats": False, "seed": 0, **cfg.engine_args}
        try:
            self.llm = await asyncio.get_running_loop().run_in_executor(
                self._executor, lambda: vllm.LLM(model=str(local or cfg.model), **args))
        except Exception as exc:  # noqa: BLE001 - vLLM raises many kinds; one line each
            raise UserError(f"vLLM could not start on {cfg.model} with "
                            f"{json.dumps(cfg.engine_args, default=str)}: {_first_line(exc)}"
                            ) from None
        self.tokenizer = self.llm.get_tokenizer()
        return self._info(vllm.__version__, local)

    def _engine_settings(self) -> dict[str, Any]:
        """What vLLM resolved (dtype, lengths, parallelism, KV cache) — the row records
        these, not just what was asked."""
        vc = getattr(self.llm.llm_engine, "vllm_config", None)
        if vc is None:
            return {}
        mc, cc, pc, sc = vc.model_config, vc.cache_config, vc.parallel_config, \
            vc.scheduler_config
        out = {
            "dtype": str(getattr(mc, "dtype", "")).replace("torch.", ""),
            "max_model_len": getattr(mc, "max_model_len", None),
            "quantization": getattr(mc, "quantization", None),
            "enforce_eager": getattr(mc, "enforce_eager", None),
            "max_num_seqs": getattr(sc, "max_num_seqs", None),
            "max_num_batched_tokens": getattr(sc, "max_num_batched_tokens", None),
            "gpu_memory_utilization": getattr(cc, "gpu_memory_utilization", None),
            "block_size": getattr(cc, "block_size", None),
            "enable_prefix_caching": getattr(cc, "enable_prefix_caching", None),
            "kv_cache_blocks": getattr(cc, "num_gpu_blocks", None),
            "tensor_parallel_size": getattr(pc, "tensor_parallel_size", None),
            "pipeline_parallel_size": getattr(pc, "pipeline_parallel_size", None),
            "distributed_executor_backend": str(getattr(pc, "distributed_executor_backend",
                                                        "") or ""),
        }
        if os.environ.get("VLLM_CPU_KVCACHE_SPACE"):
            out["cpu_kvcache_space_gib"] = os.environ["VLLM_CPU_KVCACHE_SPACE"]
        return out

    def _info(self, version: str, local: Path | None) -> BackendInfo:
        try:
            from vllm.platforms import current_platform

            device = str(current_platform.device_type or "")
        except Exception:  # noqa: BLE001 - only used for the record
            device = ""
        resolved = self._engine_settings()
        hf_config: dict[str, Any] = {}
        if local is not None:
            try:
                hf_config = json.loads((local / "config.json").read_text())
            except (OSError, ValueError):
                hf_config = {}
        quant = (hf_config.get("quantization_config") or {}).get("quant_method") or \
            resolved.get("quantization") or resolved.get("dtype", "")
        size_mb = None
        if local is not None:
            size_mb = round(sum(f.stat().st_size for f in local.glob("*.safetensors"))
                            / 2**20, 1) or None
        return BackendInfo(
            backend=self.name, engine="vllm", engine_version=version,
            engine_build=f"{device} build" + (" (vllm-cpu)" if device == "cpu" else ""),
            model=synthetic_label(local) or (local.name if local is not None
                                             else self.config.model),
            model_path=str(local.resolve()) if local is not None else "",
            model_sha256=weights_sha256(local) if local is not None else "",
            model_size_mb=size_mb,
            model_params=safetensors_params(local) if local is not None else None,
            model_arch=",".join(hf_config.get("architectures") or []), quant=str(quant),
            weights="synthetic" if is_synthetic(local, self.config.engine_args) else "real",
            device=device or "unknown",
            settings={"mode": "offline", "requested": self.config.engine_args, **resolved,
                      "timing_source": "engine request metrics (first/last token time)"},
        )

    # ---- offline requests -------------------------------------------------------------

    def count_tokens(self, text: str, prompt: bool = False) -> int | None:
        """Tokens by the model's tokenizer; `prompt=True` counts the BOS vLLM adds."""
        if self.client is not None:
            return self.client.count_tokens(text, prompt=prompt)
        if self.tokenizer is None:
            return None
        return len(self.tokenizer.encode(text, add_special_tokens=prompt))

    def _prompt(self, request: Request) -> Any:
        if not request.chat:
            return request.prompt
        messages = ([{"role": r, "content": c} for r, c in request.messages]
                    or [{"role": "user", "content": request.prompt}])
        ids = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True,
                                                 tokenize=True)
        if isinstance(ids, dict) or hasattr(ids, "input_ids"):
            ids = ids["input_ids"]
        return {"prompt_token_ids": list(ids)}

    def _generate(self, requests: list[Request]) -> list[BatchResult]:
        from vllm import SamplingParams

        params = [SamplingParams(max_tokens=r.max_output_tokens, temperature=0.0,
                                 ignore_eos=r.force_output_length) for r in requests]
        prompts = [self._prompt(r) for r in requests]
        # Engine timestamps are time.monotonic(); map them onto perf_counter_ns.
        offset_ns = time.perf_counter_ns() - time.monotonic_ns()
        send_ns = time.perf_counter_ns()
        outputs = self.llm.generate(prompts, params, use_tqdm=False)
        done_ns = time.perf_counter_ns()
        results = []
        for request, out in zip(requests, outputs):
            results.append(self._result(request, out, send_ns, done_ns, offset_ns))
        return results

    @staticmethod
    def _result(request: Request, out: Any, send_ns: int, done_ns: int,
                offset_ns: int) -> BatchResult:
        comp = out.outputs[0] if out.outputs else None
        if comp is None:
            return BatchResult(request, send_ns, [],
                               RequestError("empty_response", "vLLM returned no completion"))
        n_out = len(comp.token_ids)
        n_in = len(out.prompt_token_ids or [])
        m = getattr(out, "metrics", None)

        def ns(ts: Any) -> int | None:
            return int(ts * 1e9) + offset_ns if ts else None

        first = ns(getattr(m, "first_token_ts", None))
        last = ns(getattr(m, "last_token_ts", None))
        sched = ns(getattr(m, "scheduled_ts", None))
        # Clamp into the wall-clock window (the clocks agree on Linux; guard elsewhere).
        if first is None or last is None or not send_ns <= first <= last <= done_ns + 10**6:
            first = last = done_ns
            sched = None
        usage = Usage(
            input_tokens=n_in, output_tokens=n_out, source="engine",
            engine_prefill_ms=(first - sched) / 1e6 if sched else None,
            engine_decode_ms=(last - first) / 1e6 if sched and n_out > 1 else None,
            engine_prefill_tokens=n_in if sched else None,
            engine_decode_tokens=n_out - 1 if sched and n_out > 1 else None,
            extra={"finish_reason": comp.finish_reason,
                   "queued_ms": ((sched - send_ns) / 1e6) if sched else None},
            finish_reason=comp.finish_reason)
        if n_out <= 1:
            events = [TokenEvent(t_ns=last, text=comp.text, n_tokens=max(n_out, 1),
                                 usage=usage)]
        else:
            events = [TokenEvent(t_ns=first, text="", n_tokens=1),
                      TokenEvent(t_ns=last, text=comp.text, n_tokens=n_out - 1, usage=usage)]
        return BatchResult(request, send_ns, events)

    async def _run_batch(self, requests: list[Request]) -> list[BatchResult]:
        """Submit all `requests` to the engine at once; one result per request, in order."""
        if self.llm is None:
            raise RuntimeError("open() the backend first")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, self._generate, requests)
        except Exception as exc:  # noqa: BLE001 - every request of the batch failed
            err = RequestError("engine_error", f"{type(exc).__name__}: {_first_line(exc)}")
            now = time.perf_counter_ns()
            return [BatchResult(r, now, [], err) for r in requests]

    async def stream(self, request: Request) -> AsyncIterator[TokenEvent]:
        if self.client is not None:
            async for event in self.client.stream(request):
                yield event
            return
        (result,) = await self._run_batch([request])
        if result.error is not None:
            raise result.error
        for event in result.events:
            yield event

    # ---- server-side figures (both modes) ---------------------------------------------

    def _metrics_url(self) -> str:
        base = (self.config.base_url or "").rstrip("/")
        return base.removesuffix("/v1") + "/metrics"

    async def _scrape(self) -> Any:
        if self.config.mode == "offline":
            return samples_from_engine_metrics(self.llm.get_metrics())
        import httpx

        async with httpx.AsyncClient(timeout=10.0) as http:
            resp = await http.get(self._metrics_url())
            resp.raise_for_status()
            return parse_metrics(resp.text)

    async def _sample_peaks(self) -> None:
        while True:
            await asyncio.sleep(self.config.metrics_sample_s)
            try:
                page = await self._scrape()
            except Exception:  # noqa: BLE001, S112 - a missed sample is not an error
                continue
            for key, names in (("kv_cache_usage", VLLM_KV_USAGE),
                               ("requests_running", VLLM_RUNNING)):
                value = gauge(page, names)
                if value is not None:
                    self._peaks[key] = max(value, self._peaks.get(key) or 0.0)

    async def server_metrics_start(self) -> None:
        """Scrape the engine's metrics at the start of a measured window."""
        self._peaks = {}
        try:
            self._metrics_before = await self._scrape()
        except Exception:  # noqa: BLE001 - figures are optional; the run goes on
            self._metrics_before = None
            return
        if self.config.mode == "serve" and self.config.metrics_sample_s > 0:
            self._sampler = asyncio.create_task(self._sample_peaks())

    async def server_metrics_stop(self) -> dict[str, Any] | None:
        """Scrape again; the window's server-side columns and details, or None."""
        if self._sampler is not None:
            self._sampler.cancel()
            try:
                await self._sampler
            except asyncio.CancelledError:
                pass
            self._sampler = None
        before, self._metrics_before = self._metrics_before, None
        if before is None:
            return None
        try:
            after = await self._scrape()
        except Exception as exc:  # noqa: BLE001
            return {"columns": {}, "details": {"error": f"scrape failed: {_first_line(exc)}"}}
        source = "engine get_metrics()" if self.config.mode == "offline" else \
            self._metrics_url()
        return {"columns": vllm_summary(before, after, self._peaks),
                "details": {"source": source, **vllm_details(before, after),
                            "peaks": dict(self._peaks)}}

    # ---- serve ------------------------------------------------------------------------

    async def _open_serve(self) -> BackendInfo:
        self.client = OpenAIBackend(**self.config.openai)
        info = await self.client.open()
        info.backend = self.name
        info.engine = "vllm"
        version = await self._server_version()
        if version:
            info.engine_version = version
        server = self.config.server
        local = Path(server["model_path"]) if server.get("model_path") else None
        if local is not None and local.is_dir():
            info.model_path = str(local)
            info.model_sha256 = weights_sha256(local)
            info.model_params = safetensors_params(local)
        if is_synthetic(local if local is not None and local.is_dir() else None,
                        self.config.engine_args):
            info.weights = "synthetic"
            info.model = synthetic_label(local) or info.model
        else:
            info.weights = "real"
        info.settings = {"mode": "serve", "engine_args": self.config.engine_args,
                         "metrics_url": self._metrics_url(),
                         "metrics_sample_s": self.config.metrics_sample_s, **info.settings}
        return info

    async def _server_version(self) -> str:
        import httpx

        base = self._metrics_url()[: -len("/metrics")]
        try:
            async with httpx.AsyncClient(timeout=10.0) as http:
                resp = await http.get(base + "/version")
                return str(resp.json().get("version", "")) if resp.status_code == 200 else ""
        except Exception:  # noqa: BLE001 - the version is informative only
            return ""

    async def close(self) -> None:
        if self._sampler is not None:
            self._sampler.cancel()
        if self.client is not None:
            client, self.client = self.client, None
            await client.close()
        if self.llm is not None:
            llm, self.llm = self.llm, None

            def shutdown() -> None:
                engine = getattr(llm, "llm_engine", None)
                core = getattr(engine, "engine_core", None)
                if core is not None and hasattr(core, "shutdown"):
                    core.shutdown()

            await asyncio.get_running_loop().run_in_executor(self._executor, shutdown)
        self._executor.shutdown(wait=False)
