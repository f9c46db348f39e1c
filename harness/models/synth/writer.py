"""Stream a GGUF with random weights to disk, chunk by chunk, with bounded memory.

Memory stays at a few MB whatever the model size: each chunk of about 1 M values is drawn,
quantized with ggml's own code and written before the next. Every chunk is fresh: a file
made by repeating one random block per tensor kind (the first design) decoded ~1.27x
faster than the real model on this project's VM, presumably because identical pages are
merged or cached below the guest, so repeated blocks would flatter CPU figures. Constant
fills (norms, biases) are repeated. The file is written under a temporary name beside the
target and renamed when complete, so an error or Ctrl-C leaves no half-written model.
"""

from __future__ import annotations

import math
import os
import shutil
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from harness.errors import UserError
from harness.models.synth.ggml import quantize_rows, row_size

BLOCK_VALUES = 1 << 20  # random values per chunk (4 MB of float32)
DISK_MARGIN_BYTES = 256 << 20
PROGRESS_MIN_BYTES = 100 << 20  # smaller files are written silently


@dataclass(frozen=True)
class TensorPlan:
    """One tensor to write: `ne` in ggml order (ne[0] is the row length)."""

    name: str
    ne: tuple[int, ...]
    ggml_type: int
    fill: str = "normal"  # normal | ones | zeros
    std: float = 0.02

    @property
    def n_rows(self) -> int:
        return math.prod(self.ne[1:])

    @property
    def nbytes(self) -> int:
        return row_size(self.ggml_type, self.ne[0]) * self.n_rows


@dataclass(frozen=True)
class KV:
    """One metadata key: value and GGUF value type (and element type for arrays)."""

    key: str
    value: Any
    vtype: int
    sub_type: int | None = None


def gguf_nbytes(tensors: list[TensorPlan], alignment: int = 32) -> int:
    """Tensor data bytes of a file holding `tensors` (metadata not counted)."""
    return sum(-(-t.nbytes // alignment) * alignment for t in tensors)


def check_disk(directory: Path, need_bytes: int, what: str) -> None:
    """UserError naming how much is needed when `directory` has too little free space."""
    directory.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(directory).free
    if free < need_bytes + DISK_MARGIN_BYTES:
        raise UserError(f"not enough disk in {directory} for {what}: needs "
                        f"{(need_bytes + DISK_MARGIN_BYTES) / 1e9:.1f} GB, "
                        f"{free / 1e9:.1f} GB free; free space or choose another --out")


@contextmanager
def atomic_output(path: Path, tag: str = "partial") -> Iterator[Path]:
    """A temporary path beside `path`, renamed onto it on success, removed on failure."""
    tmp = path.with_name(f".{path.name}.{tag}-{os.getpid()}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


class BlockCache:
    """Quantized random blocks keyed by (type, row length, fill, std), made once each."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.blocks: dict[tuple[int, int, str, float], tuple[bytes, int]] = {}

    def get(self, t: TensorPlan) -> tuple[bytes, int]:
        """(block bytes, rows in the block) for tensors like `t`."""
        key = (t.ggml_type, t.ne[0], t.fill, t.std)
        if key not in self.blocks:
            rows = max(1, min(t.n_rows, BLOCK_VALUES // t.ne[0]))
            if t.fill == "ones":
                values = np.ones((rows, t.ne[0]), dtype=np.float32)
            elif t.fill == "zeros":
                values = np.zeros((rows, t.ne[0]), dtype=np.float32)
            else:
                values = self.rng.standard_normal((rows, t.ne[0]), dtype=np.float32)
                values *= np.float32(t.std)
            self.blocks[key] = (quantize_rows(t.ggml_type, values), rows)
        return self.blocks[key]


def _write_tensor(fout: Any, t: TensorPlan, blocks: BlockCache, repeat: bool) -> None:
    """Write `t` chunk by chunk: fresh random rows for each chunk (`repeat=False`), or
    one cached block repeated (constant fills, or `repeat=True`)."""
    if repeat or t.fill != "normal":
        block, rows = blocks.get(t)
        per_row = len(block) // rows
        full, rest = divmod(t.n_rows, rows)
        view = memoryview(block)
        for _ in range(full):
            fout.write(view)
        if rest:
            fout.write(view[: rest * per_row])
        return
    rows = max(1, min(t.n_rows, BLOCK_VALUES // t.ne[0]))
    left = t.n_rows
    while left:
        n = min(rows, left)
        values = blocks.rng.standard_normal((n, t.ne[0]), dtype=np.float32)
        values *= np.float32(t.std)
        fout.write(quantize_rows(t.ggml_type, values))
        left -= n


def write_gguf(path: Path, arch: str, kvs: list[KV], tensors: list[TensorPlan],
               seed: int = 0, progress: Callable[[str], None] | None = None,
               repeat: bool = False) -> Path:
    """Write a complete GGUF at `path` (atomically): metadata `kvs`, random `tensors`
    (fresh random chunks; `repeat=True` repeats one block per kind: quicker to make, but
    it ran faster than real weights on a VM, see the module docstring)."""
    from gguf import GGMLQuantizationType, GGUFWriter

    check_disk(path.parent, gguf_nbytes(tensors), str(path.name))
    blocks = BlockCache(seed)
    total = max(1, gguf_nbytes(tensors))
    with atomic_output(path) as tmp:
        writer = GGUFWriter(tmp, arch)
        for kv in kvs:
            if kv.key == "general.architecture":
                continue
            writer.add_key_value(kv.key, kv.value, kv.vtype, sub_type=kv.sub_type)
        for t in tensors:
            writer.add_tensor_info(t.name, list(reversed(t.ne)), np.dtype(np.float32),
                                   t.nbytes, raw_dtype=GGMLQuantizationType(t.ggml_type))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        fout = writer.fout[0]
        align = writer.data_alignment
        done, last_pct = 0, -10
        for t in tensors:
            writer.write_padding(fout, fout.tell(), align)
            _write_tensor(fout, t, blocks, repeat)
            writer.write_padding(fout, t.nbytes, align)
            done += t.nbytes
            pct = 100 * done // total
            if progress and total >= PROGRESS_MIN_BYTES and (pct >= last_pct + 10 or done == total):
                progress(f"writing {path.name}: {pct}% of {total / 1e9:.2f} GB")
                last_pct = pct
        writer.close()
    return path


def stderr_progress(text: str) -> None:
    """Progress lines on stderr."""
    print(text, file=sys.stderr, flush=True)
