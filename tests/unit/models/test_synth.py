"""Synthetic models: preset dimensions, spec parsing, vocabularies, ggml quantization
validity, the HF config, and every kind of bad input (one line, exit 2, no file left)."""

from __future__ import annotations

import json
import struct
from collections import namedtuple
from pathlib import Path

import numpy as np
import pytest

from harness.cli.main import main
from harness.errors import UserError
from harness.models.synth import parse_spec
from harness.models.synth.shapes import custom_shape, get_preset, load_presets, preset_names
from harness.models.synth.vocab import hf_tokenizer_json, spm_vocab

# Published total parameter counts (model cards / HF "Model size"), in billions.
PUBLISHED_PARAMS_B = {
    "llama2-7b": 6.74, "llama3-8b": 8.03, "llama3.1-8b": 8.03, "llama3.1-70b": 70.55,
    "llama3.2-1b": 1.24, "llama3.2-3b": 3.21, "mistral-7b": 7.25, "qwen2.5-0.5b": 0.494,
    "qwen2.5-1.5b": 1.54, "qwen2.5-7b": 7.62, "qwen2.5-14b": 14.77, "qwen2.5-72b": 72.7,
}


def test_presets_have_the_published_dimensions() -> None:
    s = get_preset("llama3-8b")
    assert (s.arch, s.hidden, s.ffn, s.layers, s.heads, s.kv_heads, s.vocab) == (
        "llama", 4096, 14336, 32, 32, 8, 128256)
    assert s.head_size == 128 and not s.tied
    assert s.source == "meta-llama/Meta-Llama-3-8B/config.json"
    q = get_preset("qwen2.5-72b")
    assert (q.arch, q.hidden, q.ffn, q.layers, q.heads, q.kv_heads, q.vocab) == (
        "qwen2", 8192, 29568, 80, 64, 8, 152064)
    one = get_preset("llama3-1b")  # alias
    assert one.name == "llama3.2-1b" and one.tied and one.head_size == 64


@pytest.mark.parametrize("name", sorted(PUBLISHED_PARAMS_B))
def test_preset_parameter_counts_match_published_sizes(name: str) -> None:
    assert get_preset(name).n_params / 1e9 == pytest.approx(PUBLISHED_PARAMS_B[name], rel=0.01)


def test_every_preset_cites_its_config_and_is_a_named_size() -> None:
    names = preset_names()
    assert {"llama3.2-1b", "llama3-8b", "llama3.1-70b", "mistral-7b", "qwen2.5-7b",
            "qwen2.5-32b", "qwen2.5-72b"} <= set(names)
    for shape in {s.name: s for s in load_presets().values()}.values():
        assert shape.source.endswith("/config.json") and shape.source.count("/") == 2


def test_unknown_shape_suggests_the_nearest_and_lists_presets() -> None:
    with pytest.raises(UserError) as err:
        get_preset("llama3-8bb")
    text = str(err.value)
    assert "Did you mean 'llama3-8b'" in text and "qwen2.5-72b" in text and "\n" not in text


@pytest.mark.parametrize("spec,expected", [
    ("llama3-8b-q4_k_m", ("llama3-8b", "q4_k_m")), ("llama3.2-1b", ("llama3.2-1b", "q4_k_m")),
    ("Qwen2.5-7B-Q8_0", ("qwen2.5-7b", "q8_0")), ("mistral-7b-f16", ("mistral-7b", "f16")),
    ("llama3-8b-q4_k_s", ("llama3-8b", "q4_k_s")),
])
def test_parse_spec(spec: str, expected: tuple[str, str]) -> None:
    assert parse_spec(spec) == expected


def test_custom_shape_validation() -> None:
    s = custom_shape("llama", 256, 512, 2, 4, 2, 1000)
    assert s.head_size == 64 and s.name == "custom-llama-h256-f512-l2-a4-kv2-v1000"
    with pytest.raises(UserError, match="multiple of --kv-heads"):
        custom_shape("llama", 256, 512, 2, 4, 3, 1000)
    with pytest.raises(UserError, match="not supported"):
        custom_shape("gpt5", 256, 512, 2, 4, 2, 1000)
    with pytest.raises(UserError, match="too small"):
        custom_shape("llama", 256, 512, 2, 4, 2, 100)


def test_spm_vocab_has_the_exact_size_byte_tokens_and_unique_pieces() -> None:
    v = spm_vocab(128256)
    assert len(v.tokens) == len(v.scores) == len(v.types) == 128256
    assert len(set(v.tokens)) == 128256
    assert v.tokens[:3] == ["<unk>", "<s>", "</s>"] and v.types[1:3] == [3, 3]
    assert v.tokens[3] == "<0x00>" and v.tokens[258] == "<0xFF>" and set(v.types[3:259]) == {6}
    small = spm_vocab(300)
    assert len(small.tokens) == 300 and len(set(small.tokens)) == 300


def test_hf_tokenizer_json_has_the_exact_vocab_and_valid_merges() -> None:
    for size in (300, 32768):
        tok = hf_tokenizer_json(size)
        vocab = tok["model"]["vocab"]
        assert len(vocab) == size and sorted(vocab.values()) == list(range(size))
        for a, b in tok["model"]["merges"]:
            assert a in vocab and b in vocab and a + b in vocab


def test_hf_folder_config_and_tokenizer(tmp_path: Path) -> None:
    out = tmp_path / "qwen-shape"
    assert main(["model", "synth", "--shape", "qwen2.5-7b", "--format", "hf", "--out",
                 str(out)]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == ["Qwen2ForCausalLM"] and config["model_type"] == "qwen2"
    assert (config["hidden_size"], config["intermediate_size"], config["num_hidden_layers"],
            config["num_attention_heads"], config["num_key_value_heads"],
            config["vocab_size"]) == (3584, 18944, 28, 28, 4, 152064)
    assert config["torch_dtype"] == "bfloat16" and config["harness_synthetic"] is True
    marker = json.loads((out / "harness_synthetic.json").read_text())
    assert marker["shape"] == "qwen2.5-7b" and marker["source"].startswith("Qwen/")
    tok = json.loads((out / "tokenizer.json").read_text())
    assert len(tok["model"]["vocab"]) == 152064
    assert not list(tmp_path.glob(".*partial*"))


# ---- ggml quantization: real blocks, finite scales ---------------------------------------

Q = namedtuple("Q", "name type")
QUANT_TYPES = [Q("Q8_0", 8), Q("Q4_0", 2), Q("Q5_0", 6), Q("Q4_K", 12), Q("Q5_K", 13),
               Q("Q6_K", 14), Q("IQ4_XS", 23), Q("IQ2_XXS", 16)]  # IQ2_XXS needs an imatrix


@pytest.mark.parametrize("q", QUANT_TYPES, ids=[q.name for q in QUANT_TYPES])
def test_quantized_random_rows_have_finite_scales(q: Q) -> None:
    pytest.importorskip("llama_cpp")
    from harness.models.synth.ggml import quantize_rows, row_size, validate_rows

    values = np.random.default_rng(1).standard_normal((8, 512), dtype=np.float32) * 0.02
    data = quantize_rows(q.type, values)
    assert len(data) == 8 * row_size(q.type, 512)
    assert validate_rows(q.type, data)
    assert any(data)  # not an all-zero stand-in


def test_validation_catches_a_nan_scale() -> None:
    """The check used above can fail: a Q8_0 block whose fp16 scale is NaN."""
    pytest.importorskip("llama_cpp")
    from harness.models.synth.ggml import quantize_rows, validate_rows

    data = bytearray(quantize_rows(8, np.ones((1, 32), dtype=np.float32)))
    data[0:2] = struct.pack("<e", float("nan"))
    assert not validate_rows(8, bytes(data))


# ---- bad input: one line, exit 2, nothing left behind -----------------------------------

def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    rc = main(list(argv))
    err = capsys.readouterr().err
    return rc, err


def test_cli_unknown_shape(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "m.gguf"
    rc, err = _run(capsys, "model", "synth", "--shape", "qwen2.5-7", "--out", str(out))
    assert rc == 2 and "Did you mean 'qwen2.5-7b'" in err and "llama3-8b" in err
    assert err.count("\n") == 1 and not out.exists()


def test_cli_quant_the_engine_cannot_produce(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "m.gguf"
    rc, err = _run(capsys, "model", "synth", "--shape", "llama3-8b", "--quant", "iq1_s",
                   "--out", str(out))
    assert rc == 2 and "importance matrix" in err and "q4_k_m" in err and not out.exists()


def test_cli_like_a_file_that_is_not_gguf(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    fake = tmp_path / "model.gguf"
    fake.write_bytes(b"PK\x03\x04 not a gguf")
    out = tmp_path / "twin.gguf"
    rc, err = _run(capsys, "model", "synth", "--like", str(fake), "--out", str(out))
    assert rc == 2 and "is not a GGUF file" in err and not out.exists()
    rc, err = _run(capsys, "model", "synth", "--like", str(tmp_path / "nope.gguf"), "--out",
                   str(out))
    assert rc == 2 and "file not found" in err


def test_cli_like_with_quant_or_shape_is_refused(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    real = tmp_path / "r.gguf"
    real.write_bytes(b"GGUF")
    rc, err = _run(capsys, "model", "synth", "--like", str(real), "--quant", "q8_0", "--out",
                   str(tmp_path / "t.gguf"))
    assert rc == 2 and "drop --quant" in err
    rc, err = _run(capsys, "model", "synth", "--like", str(real), "--shape", "llama3-8b",
                   "--out", str(tmp_path / "t.gguf"))
    assert rc == 2 and "drop --shape" in err


def test_cli_incomplete_custom_shape(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, err = _run(capsys, "model", "synth", "--arch", "llama", "--hidden", "256", "--out",
                   str(tmp_path / "m.gguf"))
    assert rc == 2 and "missing --ffn, --layers, --heads, --vocab" in err


def test_cli_too_little_disk_says_how_much_and_writes_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(10**12, 10**12 - 10**9, 10**9))
    out = tmp_path / "big.gguf"
    rc, err = _run(capsys, "model", "synth", "--shape", "llama3-8b", "--quant", "q4_k_m",
                   "--out", str(out))
    assert rc == 2 and "not enough disk" in err and "1.0 GB free" in err
    needed_gb = float(err.split("needs ")[1].split(" GB")[0])
    assert 16 + 4.5 < needed_gb < 24  # F16 intermediate (16 GB) + Q4_K_M output (~5 GB)
    assert list(tmp_path.iterdir()) == []


def test_cli_existing_out_needs_force(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "m.gguf"
    out.write_bytes(b"keep me")
    rc, err = _run(capsys, "model", "synth", "--shape", "llama3-8b", "--out", str(out))
    assert rc == 2 and "--force" in err and out.read_bytes() == b"keep me"


def test_cli_out_must_be_gguf(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, err = _run(capsys, "model", "synth", "--shape", "llama3-8b", "--out",
                   str(tmp_path / "m.bin"))
    assert rc == 2 and "ending in .gguf" in err


def test_synth_model_reference_with_unknown_shape() -> None:
    from harness.models.resolve import resolve_gguf

    with pytest.raises(UserError, match="Did you mean 'llama3-8b'"):
        resolve_gguf("synth:lama3-8b-q4_k_m")
