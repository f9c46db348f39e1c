"""Validate `harness bench` settings from a --config TOML file or the flags, key by key.

Every value gets its type and range checked here, at the edge, so that a wrong value
ends as one line naming the file, the key and what it takes (`UserError`), never as a
traceback deep in a backend. Keys that look like credentials are refused: keys are read
only from the environment (`api_key_env` names the variable).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from harness.errors import UserError
from harness.secrets import is_secret_name

_STR = {"backend", "model", "workload", "server", "server_command", "base_url",
        "api_key_env", "api", "tokenizer", "dtype", "quantization",
        "distributed_executor_backend"}
_CHOICES = {"power": ("auto", "none", "nvml", "rapl", "apple", "estimate"),
            "endpoint": ("completions", "chat")}
_INT_MIN = {"requests": 1, "repetitions": 1, "n_ctx": 1, "n_threads": 1, "warmup": 0,
            "n_gpu_layers": -1, "max_model_len": 1, "max_num_seqs": 1,
            "tensor_parallel_size": 1, "pipeline_parallel_size": 1}
_BOOL = {"flash_attn", "enforce_eager", "quiet"}
_POSITIVE = {"timeout", "stall_timeout", "slo_ttft_ms", "slo_tpot_ms", "tdp_w",
             "server_timeout"}
_NON_NEGATIVE = {"idle_power_s"}
_FRACTION = {"gpu_memory_utilization"}


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return (isinstance(v, (int, float)) and not isinstance(v, bool)
            and math.isfinite(v))


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def check_value(key: str, value: Any, where: str) -> Any:
    """`value` of setting `key` checked (and normalised: lists → tuples); `where` names
    the source in messages ("--timeout" or "bench.toml: 'timeout'")."""
    if key in _STR:
        if not isinstance(value, str) or not value.strip() or "\x00" in value:
            raise UserError(f"{where} must be a non-empty string, got {_show(value)}")
        return value
    if key in _CHOICES:
        if value not in _CHOICES[key]:
            raise UserError(f"{where} must be one of {', '.join(_CHOICES[key])}, got "
                            f"{_show(value)}")
        return value
    if key in _INT_MIN:
        if not _is_int(value) or value < _INT_MIN[key]:
            raise UserError(f"{where} must be an integer >= {_INT_MIN[key]}, got "
                            f"{_show(value)}")
        return value
    if key in _BOOL:
        if not isinstance(value, bool):
            raise UserError(f"{where} must be true or false, got {_show(value)}")
        return value
    if key in _POSITIVE or key in _NON_NEGATIVE or key in _FRACTION:
        ok = _is_num(value) and (value > 0 if key in _POSITIVE else value >= 0 if
                                 key in _NON_NEGATIVE else 0 < value <= 1)
        if not ok:
            rule = ("a number > 0" if key in _POSITIVE else "a number >= 0" if
                    key in _NON_NEGATIVE else "a number in (0, 1]")
            raise UserError(f"{where} must be {rule}, got {_show(value)}")
        return float(value)
    if key == "concurrency":
        items = value if isinstance(value, (list, tuple)) else [value]
        if not items or not all(_is_int(v) and v >= 1 for v in items):
            raise UserError(f"{where} takes integers >= 1 like 1,4,8 (a list sweeps), got "
                            f"{_show(value)}")
        return tuple(items)
    if key == "rate":
        items = value if isinstance(value, (list, tuple)) else [value]
        if not items or not all(_is_num(v) and v > 0 for v in items):
            raise UserError(f"{where} takes numbers > 0 like 0.5,1,2 (a list sweeps), got "
                            f"{_show(value)}")
        return tuple(float(v) for v in items)
    if key == "output":
        if isinstance(value, Path):
            return value
        if not isinstance(value, str) or not value.strip() or "\x00" in value:
            raise UserError(f"{where} must be a folder path, got {_show(value)}")
        return Path(value)
    if key == "engine":
        if not isinstance(value, dict):
            raise UserError(f"{where} must be a table of engine settings ([engine])")
        for name in value:
            if is_secret_name(name) or name.lower() in ("authorization", "headers"):
                raise UserError(f"{where}: {name!r} looks like a credential; keys are read "
                                "only from the environment: export it and name the "
                                "variable with --api-key-env")
        return value
    return value


def credential_key_error(path: Path, key: str) -> UserError:
    """The error for a --config key that holds a credential."""
    return UserError(f"{path}: {key!r} looks like a credential; keys are read only from the "
                     "environment: export it and set api_key_env = \"VAR\" (or "
                     "--api-key-env VAR)")


__all__ = ["check_value", "credential_key_error"]
