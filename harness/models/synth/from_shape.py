"""A GGUF of a preset or custom shape: llama.cpp tensor names, metadata, byte-fallback
vocabulary; written in F16/BF16/F32, then quantized file to file by llama.cpp."""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path

from harness.models.synth.ggml import GGML_BF16, GGML_F16, GGML_F32, QUANT_BPW, quantize_file
from harness.models.synth.shapes import Shape
from harness.models.synth.vocab import BOS_ID, EOS_ID, UNK_ID, spm_vocab
from harness.models.synth.writer import (
    KV,
    TensorPlan,
    atomic_output,
    check_disk,
    gguf_nbytes,
    write_gguf,
)

# GGUF value types (gguf.GGUFValueType)
U32, F32, BOOL, STR, ARR, I32 = 4, 6, 7, 8, 9, 5
FILE_TYPE = {"f32": 0, "f16": 1, "bf16": 32}  # LLAMA_FTYPE_ALL_F32 / MOSTLY_F16 / MOSTLY_BF16
DIRECT_TYPES = {"f32": GGML_F32, "f16": GGML_F16, "bf16": GGML_BF16}


def synthetic_kvs(shape_label: str, source: str, seed: int) -> list[KV]:
    """The keys that mark a file synthetic; the llamacpp backend reads them."""
    return [KV("harness.synthetic", "true", STR), KV("harness.synthetic_shape", shape_label, STR),
            KV("harness.synthetic_source", source, STR),
            KV("harness.synthetic_seed", seed, U32)]


def shape_kvs(shape: Shape, file_type: int, seed: int) -> list[KV]:
    """Architecture metadata, tokenizer and synthetic markers for `shape`."""
    a = shape.arch
    vocab = spm_vocab(shape.vocab)
    kvs = [
        KV("general.name", f"{shape.name} (synthetic)", STR),
        KV("general.file_type", file_type, U32),
        KV(f"{a}.context_length", shape.context, U32),
        KV(f"{a}.embedding_length", shape.hidden, U32),
        KV(f"{a}.block_count", shape.layers, U32),
        KV(f"{a}.feed_forward_length", shape.ffn, U32),
        KV(f"{a}.attention.head_count", shape.heads, U32),
        KV(f"{a}.attention.head_count_kv", shape.kv_heads, U32),
        KV(f"{a}.attention.key_length", shape.head_size, U32),
        KV(f"{a}.attention.value_length", shape.head_size, U32),
        KV(f"{a}.rope.dimension_count", shape.head_size, U32),
        KV(f"{a}.rope.freq_base", float(shape.rope_theta), F32),
        KV(f"{a}.attention.layer_norm_rms_epsilon", float(shape.rms_eps), F32),
        KV(f"{a}.vocab_size", shape.vocab, U32),
        KV("tokenizer.ggml.model", "llama", STR),
        KV("tokenizer.ggml.pre", "default", STR),
        KV("tokenizer.ggml.tokens", vocab.tokens, ARR, STR),
        KV("tokenizer.ggml.scores", vocab.scores, ARR, F32),
        KV("tokenizer.ggml.token_type", vocab.types, ARR, I32),
        KV("tokenizer.ggml.bos_token_id", BOS_ID, U32),
        KV("tokenizer.ggml.eos_token_id", EOS_ID, U32),
        KV("tokenizer.ggml.unknown_token_id", UNK_ID, U32),
        KV("tokenizer.ggml.add_bos_token", True, BOOL),
        KV("tokenizer.ggml.add_eos_token", False, BOOL),
    ]
    return kvs + synthetic_kvs(shape.name, shape.source, seed)


def shape_tensors(shape: Shape, weight_type: int) -> list[TensorPlan]:
    """Every tensor llama.cpp loads for `shape`, 2-D weights in `weight_type`, norms F32."""
    h, q = shape.hidden, shape.heads * shape.head_size
    kv = shape.kv_heads * shape.head_size
    std_in, std_ff = 1 / math.sqrt(h), 1 / math.sqrt(shape.ffn)
    t = [TensorPlan("token_embd.weight", (h, shape.vocab), weight_type, std=0.02)]
    for i in range(shape.layers):
        b = f"blk.{i}."
        t += [TensorPlan(b + "attn_norm.weight", (h,), GGML_F32, "ones"),
              TensorPlan(b + "attn_q.weight", (h, q), weight_type, std=std_in),
              TensorPlan(b + "attn_k.weight", (h, kv), weight_type, std=std_in),
              TensorPlan(b + "attn_v.weight", (h, kv), weight_type, std=std_in)]
        if shape.arch == "qwen2":
            t += [TensorPlan(b + "attn_q.bias", (q,), GGML_F32, "zeros"),
                  TensorPlan(b + "attn_k.bias", (kv,), GGML_F32, "zeros"),
                  TensorPlan(b + "attn_v.bias", (kv,), GGML_F32, "zeros")]
        t += [TensorPlan(b + "attn_output.weight", (q, h), weight_type, std=1 / math.sqrt(q)),
              TensorPlan(b + "ffn_norm.weight", (h,), GGML_F32, "ones"),
              TensorPlan(b + "ffn_gate.weight", (h, shape.ffn), weight_type, std=std_in),
              TensorPlan(b + "ffn_up.weight", (h, shape.ffn), weight_type, std=std_in),
              TensorPlan(b + "ffn_down.weight", (shape.ffn, h), weight_type, std=std_ff)]
    t.append(TensorPlan("output_norm.weight", (h,), GGML_F32, "ones"))
    if not shape.tied:
        t.append(TensorPlan("output.weight", (h, shape.vocab), weight_type, std=std_in))
    return t


def estimate_bytes(shape: Shape, quant: str) -> int:
    """Expected size of the finished file, for the disk check."""
    return int(shape.n_params * QUANT_BPW[quant] / 8 * 1.05) + (16 << 20)


def make_shape_gguf(shape: Shape, quant: str, out: Path, seed: int = 0,
                    progress: Callable[[str], None] | None = None) -> Path:
    """Write `shape` with random weights to `out` in quantization `quant` (atomic)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    if quant in DIRECT_TYPES:
        tensors = shape_tensors(shape, DIRECT_TYPES[quant])
        return write_gguf(out, shape.arch, shape_kvs(shape, FILE_TYPE[quant], seed), tensors,
                          seed, progress)
    tensors = shape_tensors(shape, GGML_F16)
    need = gguf_nbytes(tensors) + estimate_bytes(shape, quant)
    check_disk(out.parent, need, f"{out.name} (F16 intermediate "
               f"{gguf_nbytes(tensors) / 1e9:.1f} GB + {quant} output)")
    f16 = out.with_name(f".{out.name}.f16-{os.getpid()}")
    try:
        with atomic_output(out) as tmp:
            write_gguf(f16, shape.arch, shape_kvs(shape, FILE_TYPE["f16"], seed), tensors,
                       seed, progress)
            if progress:
                progress(f"quantizing to {quant} with llama.cpp (llama_model_quantize)")
            quantize_file(f16, tmp, quant)
    finally:
        f16.unlink(missing_ok=True)
    return out
