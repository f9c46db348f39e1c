"""Reading a GGUF's string metadata from its header (no model load), and the synthetic
label it gives rows served by a managed server (the openai backend) as in process."""

from __future__ import annotations

from pathlib import Path

import pytest

from backends.openai.backend import OpenAIBackend
from harness.models.files import SYNTHETIC_KEYS, gguf_strings, is_synthetic_gguf
from harness.models.resolve import default_model
from harness.models.synth import make_synth
from harness.models.synth.shapes import custom_shape


@pytest.fixture(scope="module")
def synthetic_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "tiny.gguf"
    shape = custom_shape("llama", 256, 512, 2, 4, 2, 1000, name="tiny-strings")
    return make_synth(out, shape=shape, quant="q8_0", progress=None)


def test_a_synthetic_file_says_so_with_its_shape(synthetic_gguf: Path) -> None:
    marks = gguf_strings(synthetic_gguf, SYNTHETIC_KEYS)
    assert marks["harness.synthetic"] == "true"
    assert marks["harness.synthetic_shape"] == "tiny-strings"
    assert is_synthetic_gguf(marks)


def test_the_real_default_model_is_not_synthetic() -> None:
    marks = gguf_strings(default_model(), [*SYNTHETIC_KEYS, "general.architecture"])
    assert marks["general.architecture"] == "gemma3"  # found after the tokenizer arrays
    assert "harness.synthetic" not in marks and not is_synthetic_gguf(marks)


def test_not_gguf_or_cut_short_gives_nothing(tmp_path: Path, synthetic_gguf: Path) -> None:
    text = tmp_path / "x.gguf"
    text.write_text("not a model")
    assert gguf_strings(text, SYNTHETIC_KEYS) == {}
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(synthetic_gguf.read_bytes()[:40])
    assert gguf_strings(cut, SYNTHETIC_KEYS) == {}
    assert gguf_strings(tmp_path / "missing.gguf", SYNTHETIC_KEYS) == {}


def test_a_managed_server_of_a_synthetic_gguf_writes_synthetic_rows(
        synthetic_gguf: Path) -> None:
    backend = OpenAIBackend(model="tiny", base_url="http://127.0.0.1:9/v1",
                            server={"model_path": str(synthetic_gguf), "engine": "llama.cpp"})
    info = backend._info("test")
    assert info.weights == "synthetic"
    assert info.settings["synthetic_shape"] == "tiny-strings"
    real = OpenAIBackend(model="gemma", base_url="http://127.0.0.1:9/v1",
                         server={"model_path": str(default_model())})._info("test")
    assert real.weights == "real" and "synthetic_shape" not in real.settings
