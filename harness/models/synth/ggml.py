"""llama.cpp's own quantization, reached through the libraries llama-cpp-python ships.

`quantize_rows` calls ggml's `ggml_quantize_chunk` (the code `llama-quantize` runs), so a
synthetic tensor holds properly quantized blocks: finite scales, the engine's bit layout.
`quantize_file` calls `llama_model_quantize`, file to file, which picks the per-tensor
type mix of a file type (Q4_K_M keeps some tensors in Q6_K, …) exactly as for a real
model. `validate_rows` is ggml's own check for NaN/Inf scales.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import tempfile
from functools import lru_cache
from pathlib import Path

import numpy as np

from harness.errors import UserError, did_you_mean

# ggml_type values (ggml.h); the gguf package's GGMLQuantizationType uses the same numbers.
GGML_F32, GGML_F16, GGML_BF16 = 0, 1, 30
_INT_TYPES = {24: 1, 25: 2, 26: 4, 27: 8, 28: 8}  # I8, I16, I32, I64, F64 → bytes/element

# File types llama.cpp quantizes to without an importance matrix; name → LLAMA_FTYPE_*.
QUANT_FTYPES: dict[str, str] = {
    "f32": "ALL_F32", "f16": "MOSTLY_F16", "bf16": "MOSTLY_BF16", "q8_0": "MOSTLY_Q8_0",
    "q4_0": "MOSTLY_Q4_0", "q4_1": "MOSTLY_Q4_1", "q5_0": "MOSTLY_Q5_0",
    "q5_1": "MOSTLY_Q5_1", "q2_k": "MOSTLY_Q2_K", "q3_k_s": "MOSTLY_Q3_K_S",
    "q3_k_m": "MOSTLY_Q3_K_M", "q3_k_l": "MOSTLY_Q3_K_L", "q4_k_s": "MOSTLY_Q4_K_S",
    "q4_k_m": "MOSTLY_Q4_K_M", "q5_k_s": "MOSTLY_Q5_K_S", "q5_k_m": "MOSTLY_Q5_K_M",
    "q6_k": "MOSTLY_Q6_K", "iq4_nl": "MOSTLY_IQ4_NL", "iq4_xs": "MOSTLY_IQ4_XS",
}
# Approximate bits per weight of each file type, to check free disk space before writing.
QUANT_BPW: dict[str, float] = {
    "f32": 32, "f16": 16, "bf16": 16, "q8_0": 8.5, "q4_0": 4.6, "q4_1": 5.1, "q5_0": 5.6,
    "q5_1": 6.1, "q2_k": 3.4, "q3_k_s": 3.6, "q3_k_m": 4.0, "q3_k_l": 4.3,
    "q4_k_s": 4.7, "q4_k_m": 5.0, "q5_k_s": 5.6, "q5_k_m": 5.8, "q6_k": 6.6,
    "iq4_nl": 4.6, "iq4_xs": 4.4,
}


def check_quant(name: str, flag: str = "--quant") -> str:
    """A known quantization name (lower case), or a UserError listing those that work."""
    key = name.lower().replace("-", "_")
    if key not in QUANT_FTYPES:
        raise UserError(f"{flag} {name}: llama.cpp cannot produce this quantization without "
                        f"an importance matrix, or it is unknown." + did_you_mean(
                            key, list(QUANT_FTYPES)) + f" Choose one of: "
                        f"{', '.join(QUANT_FTYPES)}")
    return key


@lru_cache(maxsize=1)
def _lib() -> ctypes.CDLL:
    try:
        import llama_cpp
    except ImportError:
        raise UserError("synthetic models need llama-cpp-python: pip install -e "
                        "'.[llamacpp]' (make bench does this)") from None
    lib_dir = Path(llama_cpp.__file__).parent / "lib"
    candidates = sorted(lib_dir.glob("libggml-base.*")) + sorted(lib_dir.glob("ggml-base.*"))
    if not candidates:
        raise UserError(f"cannot find libggml-base in {lib_dir}; reinstall llama-cpp-python")
    lib = ctypes.CDLL(str(candidates[0]))
    lib.ggml_quantize_chunk.restype = ctypes.c_size_t
    lib.ggml_quantize_chunk.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p,
                                        ctypes.c_int64, ctypes.c_int64, ctypes.c_int64,
                                        ctypes.c_void_p]
    lib.ggml_row_size.restype = ctypes.c_size_t
    lib.ggml_row_size.argtypes = [ctypes.c_int, ctypes.c_int64]
    lib.ggml_blck_size.restype = ctypes.c_int64
    lib.ggml_blck_size.argtypes = [ctypes.c_int]
    lib.ggml_quantize_requires_imatrix.restype = ctypes.c_bool
    lib.ggml_quantize_requires_imatrix.argtypes = [ctypes.c_int]
    lib.ggml_validate_row_data.restype = ctypes.c_bool
    lib.ggml_validate_row_data.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t]
    return lib


def row_size(ggml_type: int, n_per_row: int) -> int:
    """Bytes of one row of `n_per_row` elements in `ggml_type`."""
    if ggml_type in _INT_TYPES:
        return _INT_TYPES[ggml_type] * n_per_row
    return int(_lib().ggml_row_size(ggml_type, n_per_row))


def block_size(ggml_type: int) -> int:
    """Elements per quantization block (1 for plain types)."""
    if ggml_type in _INT_TYPES:
        return 1
    return int(_lib().ggml_blck_size(ggml_type))


def quantize_rows(ggml_type: int, values: np.ndarray) -> bytes:
    """Quantize a 2-D float32 array (rows × n_per_row) to `ggml_type` with ggml's code."""
    src = np.ascontiguousarray(values, dtype=np.float32)
    nrows, n_per_row = src.shape
    if ggml_type in _INT_TYPES:
        return bytes(row_size(ggml_type, n_per_row) * nrows)
    if n_per_row % block_size(ggml_type):
        raise UserError(f"a row of {n_per_row} values cannot be stored in ggml type "
                        f"{ggml_type} (blocks of {block_size(ggml_type)})")
    lib = _lib()
    dst = np.empty(row_size(ggml_type, n_per_row) * nrows, dtype=np.uint8)
    imatrix = None
    if lib.ggml_quantize_requires_imatrix(ggml_type):
        imatrix = np.ones(n_per_row, dtype=np.float32)  # equal importance: a valid matrix
    written = lib.ggml_quantize_chunk(ggml_type, src.ctypes.data, dst.ctypes.data, 0, nrows,
                                      n_per_row, None if imatrix is None else
                                      imatrix.ctypes.data)
    if written != dst.size:
        raise RuntimeError(f"ggml_quantize_chunk wrote {written} bytes, expected {dst.size}")
    return dst.tobytes()


def validate_rows(ggml_type: int, data: bytes) -> bool:
    """ggml's own check: False when a block holds a NaN/Inf scale or value."""
    if ggml_type in _INT_TYPES:
        return True
    buf = ctypes.create_string_buffer(data, len(data))
    return bool(_lib().ggml_validate_row_data(ggml_type, buf, len(data)))


@contextlib.contextmanager
def _stderr_to(path: Path):
    """Send the C library's stderr (fd 2) to `path` for the duration."""
    saved = os.dup(2)
    with open(path, "wb") as f:
        os.dup2(f.fileno(), 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def quantize_file(src: Path, dst: Path, quant: str, n_threads: int | None = None) -> None:
    """llama.cpp's `llama_model_quantize`: `src` (F16/F32 GGUF) → `dst` in file type `quant`."""
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, "LLAMA_FTYPE_" + QUANT_FTYPES[quant])
    params.nthread = n_threads or os.cpu_count() or 1
    with tempfile.NamedTemporaryFile(prefix="quantize-", suffix=".log", delete=False) as log:
        log_path = Path(log.name)
    try:
        with _stderr_to(log_path):
            rc = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(),
                                                ctypes.byref(params))
        if rc != 0:
            tail = log_path.read_text(errors="replace").strip().splitlines()[-3:]
            raise UserError(f"llama.cpp could not quantize to {quant}: "
                            f"{' | '.join(tail) or f'error {rc}'}")
    finally:
        log_path.unlink(missing_ok=True)
