"""Model files: the GGUF magic and checks, llama.cpp's file-type names, sha256."""

from __future__ import annotations

import hashlib
import json
import os
import struct
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

from harness.errors import UserError

GGUF_MAGIC = b"GGUF"
# llama.cpp's `general.file_type` numbers (enum llama_ftype) → the names its tools print.
FTYPE_NAMES: dict[int, str] = {
    0: "ALL_F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1",
    10: "Q2_K", 11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M",
    16: "Q5_K_S", 17: "Q5_K_M", 18: "Q6_K", 19: "IQ2_XXS", 20: "IQ2_XS", 21: "Q2_K_S",
    22: "IQ3_XS", 23: "IQ3_XXS", 24: "IQ1_S", 25: "IQ4_NL", 26: "IQ3_S", 27: "IQ3_M",
    28: "IQ2_S", 29: "IQ2_M", 30: "IQ4_XS", 31: "IQ1_M", 32: "BF16", 36: "TQ1_0",
    37: "TQ2_0", 38: "MXFP4_MOE", 39: "NVFP4", 40: "Q1_0", 41: "Q2_0", 1024: "GUESSED",
}


def ftype_name(ftype: int) -> str:
    """The name of a GGUF `general.file_type` (Q4_K_M, F16, ...), or the number."""
    return FTYPE_NAMES.get(int(ftype), str(ftype))


def check_gguf(path: Path) -> Path:
    """A readable file that starts with the GGUF magic, or a UserError saying why not."""
    if not path.exists():
        raise UserError(f"model file not found: {path} (--model); give a .gguf path, "
                        "hf:owner/repo/file.gguf, or leave --model out for the default")
    if not path.is_file():
        raise UserError(f"--model {path} is a directory; give the .gguf file inside it")
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
    except OSError as exc:
        raise UserError(f"cannot read model file {path}: {exc.strerror}") from None
    if magic != GGUF_MAGIC:
        raise UserError(f"{path} is not a GGUF file (it starts with {magic!r}, not b'GGUF'); "
                        "the llamacpp backend needs a .gguf model")
    return path


# GGUF value types (gguf_type): fixed sizes in bytes; 8 = string, 9 = array.
_GGUF_SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
_GGUF_STRING, _GGUF_ARRAY = 8, 9


def gguf_strings(path: Path, keys: Iterable[str]) -> dict[str, str]:
    """The string values of `keys` in a GGUF file's metadata (those present), read from
    its header without loading the model: the whole header is walked only until every
    key was found. {} for a file that is not GGUF or is cut short."""
    wanted, found = set(keys), {}
    try:
        with open(path, "rb") as f:
            if f.read(4) != GGUF_MAGIC:
                return {}
            _version, _tensors, n_kv = struct.unpack("<IQQ", f.read(20))
            for _ in range(n_kv):
                key = _gguf_str(f)
                (kind,) = struct.unpack("<I", f.read(4))
                if kind == _GGUF_STRING and key in wanted:
                    found[key] = _gguf_str(f)
                    if len(found) == len(wanted):
                        break
                else:
                    _gguf_skip(f, kind)
    except (OSError, struct.error, ValueError, UnicodeDecodeError):
        pass
    return found


SYNTHETIC_KEYS = ("harness.synthetic", "harness.synthetic_shape", "harness.synthetic_source",
                  "general.name")


def is_synthetic_gguf(meta: dict[str, str]) -> bool:
    """Random weights: a GGUF `harness model synth` wrote (its `harness.synthetic` key),
    or one whose name says synthetic."""
    return meta.get("harness.synthetic") == "true" or "synthetic" in str(
        meta.get("general.name", "")).lower()


def _gguf_str(f: BinaryIO) -> str:
    (n,) = struct.unpack("<Q", f.read(8))
    data = f.read(n)
    if len(data) != n:
        raise ValueError("cut short")
    return data.decode("utf-8")


def _gguf_skip(f: BinaryIO, kind: int) -> None:
    if kind == _GGUF_STRING:
        (n,) = struct.unpack("<Q", f.read(8))
        f.seek(n, os.SEEK_CUR)
    elif kind == _GGUF_ARRAY:
        item, count = struct.unpack("<IQ", f.read(12))
        if item in _GGUF_SIZES:
            f.seek(_GGUF_SIZES[item] * count, os.SEEK_CUR)
        else:
            for _ in range(count):
                _gguf_skip(f, item)
    elif kind in _GGUF_SIZES:
        f.seek(_GGUF_SIZES[kind], os.SEEK_CUR)
    else:
        raise ValueError(f"unknown GGUF value type {kind}")


def _cache_file() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "llm-harness" / "sha256.json"


def file_sha256(path: Path) -> str:
    """sha256 of a file, cached by (path, size, mtime) so big models hash once."""
    stat = path.stat()
    key = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    cache_path = _cache_file()
    try:
        cache = json.loads(cache_path.read_text())
    except (OSError, ValueError):
        cache = {}
    if key in cache:
        return cache[key]
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    cache[key] = digest.hexdigest()
    try:
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        cache_path.write_text(json.dumps(cache))
    except OSError:
        pass
    return cache[key]
