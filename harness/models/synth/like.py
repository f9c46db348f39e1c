"""`--like REAL.gguf`: a twin of a real GGUF with new random weights.

Copies the architecture, every metadata key (tokenizer included) and each tensor's name,
shape and quantization type; fills the weights with random values quantized by ggml's
own code, so the twin runs the same kernels over the same number of bytes.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from harness.errors import UserError
from harness.models.files import GGUF_MAGIC, file_sha256
from harness.models.synth.from_shape import synthetic_kvs
from harness.models.synth.writer import KV, TensorPlan, write_gguf

_SKIP_KEYS = {"general.architecture", "general.alignment"}
STR, ARR = 8, 9


def read_source(src: Path):
    """A GGUFReader over `src`, or a UserError saying why it is not a usable GGUF."""
    from gguf import GGUFReader

    if not src.is_file():
        raise UserError(f"--like {src}: file not found; give a .gguf model file")
    with open(src, "rb") as f:
        magic = f.read(4)
    if magic != GGUF_MAGIC:
        raise UserError(f"--like {src} is not a GGUF file (it starts with {magic!r}, not "
                        "b'GGUF')")
    try:
        return GGUFReader(src)
    except Exception as exc:  # noqa: BLE001 - truncated or corrupt: one line
        raise UserError(f"--like {src}: cannot read it as GGUF ({exc})") from None


def _field_value(field) -> tuple[object, int, int | None]:
    """(value, type, element type) of a reader field; strings kept as raw bytes."""
    types = [int(t) for t in field.types]
    if types[0] == STR:
        return bytes(field.parts[field.data[0]]), STR, None
    if types[0] == ARR:
        sub = types[-1]
        if len(types) > 2:
            raise UserError(f"--like: nested array metadata {field.name} is not supported")
        if sub == STR:
            return [bytes(field.parts[i]) for i in field.data], ARR, STR
        return list(field.contents()), ARR, sub
    return field.contents(), types[0], None


def _fill(name: str, ne: tuple[int, ...]) -> tuple[str, float]:
    if len(ne) > 1:
        return "normal", 0.02
    return ("zeros", 0.0) if name.endswith(".bias") else ("ones", 0.0)


def like_plan(src: Path, seed: int = 0) -> tuple[str, list[KV], list[TensorPlan], str]:
    """(architecture, metadata, tensors, shape label) of a twin of `src`."""
    reader = read_source(src)
    arch_field = reader.fields.get("general.architecture")
    if arch_field is None:
        raise UserError(f"--like {src}: no general.architecture key; is it a model file?")
    arch = bytes(arch_field.parts[arch_field.data[0]]).decode()
    label = f"like:{src.stem}"
    name_field = reader.fields.get("general.name")
    real_name = bytes(name_field.parts[name_field.data[0]]).decode(errors="replace") \
        if name_field is not None else src.stem
    kvs: list[KV] = []
    for key, field in reader.fields.items():
        if key.startswith(("GGUF.", "harness.")) or key in _SKIP_KEYS:
            continue
        value, vtype, sub = _field_value(field)
        if key == "general.name":
            value, vtype = f"{real_name} (synthetic twin)", STR
        kvs.append(KV(key, value, vtype, sub))
    source = f"{src.name} ({real_name}; sha256 {file_sha256(src)[:16]})"
    kvs += synthetic_kvs(label, source, seed)
    tensors = []
    for t in reader.tensors:
        ne = tuple(int(x) for x in t.shape)
        fill, std = _fill(t.name, ne)
        tensors.append(TensorPlan(t.name, ne, int(t.tensor_type), fill, std))
    return arch, kvs, tensors, label


def make_like_gguf(src: Path, out: Path, seed: int = 0,
                   progress: Callable[[str], None] | None = None) -> Path:
    """Write the random-weight twin of `src` to `out` (atomic)."""
    if src.resolve() == out.resolve():
        raise UserError(f"--out {out} is the --like file itself; choose another --out")
    arch, kvs, tensors, _ = like_plan(src, seed)
    return write_gguf(out, arch, kvs, tensors, seed, progress)
