"""`--format hf`: a Hugging Face model folder without weights, for vLLM's dummy loading.

Writes `config.json` (the shape), a byte-level BPE `tokenizer.json` of the shape's
vocabulary size, `tokenizer_config.json`, `special_tokens_map.json` and
`generation_config.json`, and `harness_synthetic.json` (the shape and its source). Serve it with `vllm serve DIR --load-format dummy`: vLLM fills
the weights with random values itself.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from harness.errors import UserError
from harness.models.synth.shapes import Shape
from harness.models.synth.vocab import BOS_ID, EOS_ID, hf_tokenizer_json

MARKER_FILE = "harness_synthetic.json"  # marks the folder synthetic for result rows
HF_DTYPES = {"bf16": "bfloat16", "f16": "float16", "f32": "float32"}
HF_ARCH = {"llama": ("LlamaForCausalLM", "llama"), "qwen2": ("Qwen2ForCausalLM", "qwen2")}


def hf_config(shape: Shape, quant: str = "bf16") -> dict:
    """The `config.json` of `shape` as transformers and vLLM read it."""
    if quant not in HF_DTYPES:
        raise UserError(f"--format hf --quant {quant}: vLLM's dummy weights are unquantized; "
                        f"use one of {', '.join(HF_DTYPES)}")
    architecture, model_type = HF_ARCH[shape.arch]
    config = {
        "architectures": [architecture], "model_type": model_type,
        "hidden_size": shape.hidden, "intermediate_size": shape.ffn,
        "num_hidden_layers": shape.layers, "num_attention_heads": shape.heads,
        "num_key_value_heads": shape.kv_heads, "head_dim": shape.head_size,
        "vocab_size": shape.vocab, "max_position_embeddings": shape.context,
        "rms_norm_eps": shape.rms_eps, "rope_theta": shape.rope_theta,
        "tie_word_embeddings": shape.tied, "hidden_act": "silu", "initializer_range": 0.02,
        "bos_token_id": BOS_ID, "eos_token_id": EOS_ID, "torch_dtype": HF_DTYPES[quant],
        "use_cache": True, "attention_dropout": 0.0, "rope_scaling": None,
        "harness_synthetic": True, "harness_synthetic_shape": shape.name,
        "harness_synthetic_source": shape.source,
    }
    if shape.arch == "llama":
        config.update(attention_bias=False, mlp_bias=False, pretraining_tp=1)
    else:
        config.update(use_sliding_window=False, sliding_window=shape.context,
                      max_window_layers=shape.layers)
    return config


def write_hf(shape: Shape, out: Path, quant: str = "bf16") -> Path:
    """Write the folder `out` (atomically: built beside it, then renamed)."""
    config = hf_config(shape, quant)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"--out {out} exists and is not an empty folder; choose a new path")
    tmp = out.with_name(f".{out.name}.partial-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        files = {
            "config.json": config,
            "generation_config.json": {"bos_token_id": BOS_ID, "eos_token_id": EOS_ID},
            "tokenizer.json": hf_tokenizer_json(shape.vocab),
            "tokenizer_config.json": {
                "tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<s>",
                "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<unk>",
                "add_bos_token": True,
                "add_eos_token": False, "model_max_length": shape.context,
                "clean_up_tokenization_spaces": False},
            "special_tokens_map.json": {"bos_token": "<s>", "eos_token": "</s>",
                                        "unk_token": "<unk>", "pad_token": "<unk>"},
            MARKER_FILE: {"synthetic": True, "shape": shape.name, "source": shape.source,
                          "weights": "random (vLLM --load-format dummy)"},
        }
        for name, data in files.items():
            (tmp / name).write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n",
                                    encoding="utf-8")
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out
