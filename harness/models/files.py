"""Model files: the GGUF magic and checks, llama.cpp's file-type names, sha256."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

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
