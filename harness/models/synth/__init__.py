"""Synthetic models of real shapes: random weights, real dimensions and quantization.

Throughput of a dense model depends on its shape and quantization, not on its weights'
values, so a random-weight model with a real model's shape runs the same kernels over the
same bytes. Entry points: `make_synth` (the `harness model synth` command) and
`resolve_synth_model` (`--model synth:SHAPE[-QUANT]`, generated once into `.models/`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from harness.errors import UserError
from harness.models.synth.from_shape import make_shape_gguf
from harness.models.synth.ggml import QUANT_FTYPES, check_quant
from harness.models.synth.like import make_like_gguf
from harness.models.synth.shapes import Shape, get_preset
from harness.models.synth.writer import stderr_progress

DEFAULT_QUANT = "q4_k_m"


def parse_spec(spec: str) -> tuple[str, str]:
    """`SHAPE[-QUANT]` → (shape name, quant); the quant defaults to q4_k_m."""
    low = spec.strip().lower()
    if not low:
        raise UserError("--model synth:: give a shape, e.g. synth:llama3-8b-q4_k_m")
    for quant in sorted(QUANT_FTYPES, key=len, reverse=True):
        if low.endswith("-" + quant):
            return low[: -len(quant) - 1], quant
    return low, DEFAULT_QUANT


def make_synth(out: Path, shape: Shape | None = None, like: Path | None = None,
               quant: str = DEFAULT_QUANT, seed: int = 0,
               progress: Callable[[str], None] | None = stderr_progress) -> Path:
    """Write a synthetic GGUF of `shape` (in `quant`) or a twin of `like` to `out`."""
    if like is not None:
        return make_like_gguf(like, out, seed, progress)
    if shape is None:
        raise UserError("give --shape NAME, custom dimensions, or --like FILE.gguf")

    return make_shape_gguf(shape, check_quant(quant), out, seed, progress)


def resolve_synth_model(spec: str, models_dir: Path) -> Path:
    """`synth:SHAPE[-QUANT]` or `synth:like:PATH` → a GGUF in `models_dir`, made once."""
    if spec.startswith("like:"):
        src = Path(spec[5:]).expanduser()
        out = models_dir / f"synth-like-{src.stem}.gguf"
        if not out.is_file():
            stderr_progress(f"harness: generating the synthetic twin of {src} into {out} "
                            "(once)")
            make_synth(out, like=src)
        return out
    name, quant = parse_spec(spec)
    shape = get_preset(name)
    out = models_dir / f"synth-{shape.name}-{quant}.gguf"
    if not out.is_file():
        stderr_progress(f"harness: generating synthetic {shape.name} ({quant}) into {out} "
                        "(once; later runs reuse it)")
        make_synth(out, shape=shape, quant=quant)
    return out


__all__ = ["DEFAULT_QUANT", "make_synth", "parse_spec", "resolve_synth_model"]
