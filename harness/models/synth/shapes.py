"""Model shapes: the presets of `presets.toml` (published configs) and custom dimensions."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

from harness.errors import UserError, did_you_mean

PRESETS_FILE = Path(__file__).with_name("presets.toml")
ARCHES = ("llama", "qwen2")  # dense decoders llama.cpp and vLLM both run
_KEYS = {"source", "aliases", "arch", "hidden", "ffn", "layers", "heads", "kv_heads",
         "head_dim", "vocab", "context", "rope_theta", "rms_eps", "tied"}
MIN_VOCAB = 300  # specials + 256 byte tokens + a few pieces


@dataclass(frozen=True)
class Shape:
    """The dimensions that set a dense decoder's work per token."""

    name: str
    arch: str
    hidden: int
    ffn: int
    layers: int
    heads: int
    kv_heads: int
    vocab: int
    head_dim: int = 0  # 0: hidden // heads
    context: int = 4096
    rope_theta: float = 10000.0
    rms_eps: float = 1e-5
    tied: bool = False
    source: str = ""

    @property
    def head_size(self) -> int:
        return self.head_dim or self.hidden // self.heads

    @property
    def n_params(self) -> int:
        """Parameters, embeddings and norms included (as llama.cpp counts them)."""
        q, kv = self.heads * self.head_size, self.kv_heads * self.head_size
        per_layer = self.hidden * (q + 2 * kv) + q * self.hidden + 3 * self.hidden * self.ffn
        per_layer += 2 * self.hidden + (q + 2 * kv if self.arch == "qwen2" else 0)
        embed = self.vocab * self.hidden * (1 if self.tied else 2)
        return self.layers * per_layer + embed + self.hidden

    def validate(self, where: str = "shape") -> Shape:
        if self.arch not in ARCHES:
            raise UserError(f"{where}: --arch {self.arch} is not supported; use one of "
                            f"{', '.join(ARCHES)}" + did_you_mean(self.arch, ARCHES))
        for key in ("hidden", "ffn", "layers", "heads", "kv_heads", "vocab", "context"):
            if getattr(self, key) < 1:
                raise UserError(f"{where}: --{key.replace('_', '-')} must be >= 1")
        if self.heads % self.kv_heads:
            raise UserError(f"{where}: --heads {self.heads} must be a multiple of "
                            f"--kv-heads {self.kv_heads}")
        if not self.head_dim and self.hidden % self.heads:
            raise UserError(f"{where}: --hidden {self.hidden} is not a multiple of --heads "
                            f"{self.heads}; give --head-dim")
        if self.head_size % 2:
            raise UserError(f"{where}: the head size {self.head_size} must be even (RoPE)")
        for key in ("hidden", "ffn"):
            if getattr(self, key) % 32:
                raise UserError(f"{where}: --{key} {getattr(self, key)} must be a multiple of "
                                "32 (quantization blocks)")
        if self.vocab < MIN_VOCAB:
            raise UserError(f"{where}: --vocab {self.vocab} is too small; at least "
                            f"{MIN_VOCAB} (byte-fallback vocabulary)")
        return self


@lru_cache(maxsize=1)
def load_presets(path: Path = PRESETS_FILE) -> dict[str, Shape]:
    """Every preset by name and alias."""
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    shapes: dict[str, Shape] = {}
    for name, entry in data.items():
        unknown = set(entry) - _KEYS
        if unknown:
            raise ValueError(f"{path}: [{name}] has unknown key(s) {sorted(unknown)}")
        fields = {k: v for k, v in entry.items() if k != "aliases"}
        shape = Shape(name=name, **fields).validate(f"{path} [{name}]")
        shapes[name] = shape
        for alias in entry.get("aliases", []):
            shapes[alias] = shape
    return shapes


def preset_names() -> list[str]:
    """Canonical preset names (aliases left out)."""
    return sorted({s.name for s in load_presets().values()})


def get_preset(name: str) -> Shape:
    """The preset called `name` (or an alias of it), or a UserError listing the presets."""
    presets = load_presets()
    key = name.lower()
    if key in presets:
        return presets[key]
    raise UserError(f"unknown shape '{name}' (--shape)." + did_you_mean(key, list(presets))
                    + f" Presets: {', '.join(preset_names())}; or give custom dimensions "
                    "(--arch --hidden --ffn --layers --heads --kv-heads --vocab)")


def custom_shape(arch: str, hidden: int, ffn: int, layers: int, heads: int, kv_heads: int,
                 vocab: int, head_dim: int = 0, context: int = 4096,
                 name: str | None = None) -> Shape:
    """A shape from explicit dimensions; its name spells them out."""
    label = name or (f"custom-{arch}-h{hidden}-f{ffn}-l{layers}-a{heads}-kv{kv_heads}"
                     f"-v{vocab}" + (f"-d{head_dim}" if head_dim else ""))
    shape = Shape(name=label, arch=arch, hidden=hidden, ffn=ffn, layers=layers, heads=heads,
                  kv_heads=kv_heads, vocab=vocab, head_dim=head_dim, context=context,
                  rope_theta=1000000.0 if arch == "qwen2" else 500000.0,
                  rms_eps=1e-6 if arch == "qwen2" else 1e-5, source="custom dimensions")
    return shape.validate("custom shape")


__all__ = ["Shape", "custom_shape", "get_preset", "load_presets", "preset_names", "replace"]
