"""Synthetic models in real llama.cpp: a tiny custom shape generates and benches with rows
marked synthetic; the `--like` twin of the default model copies metadata, tokenizer and
per-tensor types with valid quantized data; writing streams with bounded memory."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
TINY = ("--hidden", "256", "--ffn", "512", "--layers", "2", "--heads", "4", "--kv-heads",
        "2", "--vocab", "1000")


def harness(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness", *args], cwd=ROOT, check=False,
                          capture_output=True, text=True, timeout=600)


def tensor_table(path: Path) -> dict[str, tuple[int, tuple[int, ...], int]]:
    from gguf import GGUFReader

    return {t.name: (int(t.tensor_type), tuple(int(x) for x in t.shape), int(t.n_bytes))
            for t in GGUFReader(path).tensors}


@pytest.mark.parametrize("arch,quant", [("llama", "q4_k_m"), ("qwen2", "f16"),
                                        ("llama", "q8_0")])
def test_tiny_custom_shape_loads_and_generates(tmp_path: Path, arch: str, quant: str) -> None:
    import llama_cpp

    out = tmp_path / f"tiny-{arch}.gguf"
    proc = harness("model", "synth", "--arch", arch, *TINY, "--quant", quant, "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    llm = llama_cpp.Llama(str(out), n_ctx=256, verbose=False)
    try:
        meta = llm.metadata
        assert meta["harness.synthetic"] == "true"
        assert meta["harness.synthetic_shape"] == f"custom-{arch}-h256-f512-l2-a4-kv2-v1000"
        assert llm.n_vocab() == 1000 and llm.n_embd() == 256
        tokens = llm.tokenize(b"the quick brown fox")
        assert tokens[0] == 1 and 4 < len(tokens) < 20  # BOS, then pieces of a few chars
        result = llm("the quick brown fox", max_tokens=6)
        assert result["usage"]["prompt_tokens"] == len(tokens)
        assert result["usage"]["completion_tokens"] >= 1
    finally:
        llm.close()
    types = {t for t, _, _ in tensor_table(out).values()}
    if quant == "q4_k_m":
        assert {12, 14} <= types  # Q4_K and (for some tensors, as llama.cpp picks) Q6_K
    if quant == "f16":
        assert types == {0, 1}


def test_bench_rows_say_synthetic_with_the_shape(tmp_path: Path) -> None:
    model = tmp_path / "tiny.gguf"
    assert harness("model", "synth", "--arch", "llama", *TINY, "--quant", "q4_k_m", "--out",
                   str(model)).returncode == 0
    out = tmp_path / "results"
    proc = harness("bench", "--model", str(model), "--workload", "smoke", "--output",
                   str(out), "--quiet", "--power", "none")
    assert proc.returncode == 0, proc.stderr
    assert "synthetic" in proc.stderr  # the banner says so before measuring
    (csv_path,) = out.glob("*/*.csv")
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows and all(r["weights"] == "synthetic" for r in rows)
    shape = "custom-llama-h256-f512-l2-a4-kv2-v1000"
    assert all(r["model"] == f"synthetic:{shape}" for r in rows)
    settings = json.loads(rows[0]["settings_json"])
    assert settings["synthetic_shape"] == shape
    assert settings["synthetic_source"] == "custom dimensions"
    assert rows[0]["quant"] == "Q4_K_M"
    by_name = {r["scenario"]: r for r in rows}
    # forced output length holds on random weights too
    assert int(by_name["decode"]["output_tokens"]) == 32 * int(by_name["decode"]["requests"])


def test_like_twin_of_the_default_model(tmp_path: Path) -> None:
    import llama_cpp
    from gguf import GGUFReader

    from harness.models.resolve import default_model
    from harness.models.synth.ggml import validate_rows

    real = default_model()
    twin = tmp_path / "twin.gguf"
    proc = harness("model", "synth", "--like", str(real), "--out", str(twin))
    assert proc.returncode == 0, proc.stderr
    assert tensor_table(twin) == tensor_table(real)  # names, types, shapes, bytes
    r, t = GGUFReader(real), GGUFReader(twin)
    copied = {k for k in r.fields if not k.startswith("GGUF.")}
    assert copied <= set(t.fields)
    for key in copied - {"general.name"}:
        assert r.fields[key].contents() == t.fields[key].contents(), key
    assert t.fields["harness.synthetic"].contents() == "true"
    assert t.fields["harness.synthetic_shape"].contents() == f"like:{real.stem}"
    assert "Gemma 3" in t.fields["harness.synthetic_source"].contents()
    assert "synthetic" in t.fields["general.name"].contents()
    # new weights, properly quantized: every row block of every tensor has finite scales
    real_by_name = {x.name: x for x in r.tensors}
    differs = 0
    for x in t.tensors:
        data = np.asarray(x.data).tobytes()
        assert validate_rows(int(x.tensor_type), data), x.name
        if x.n_elements > 1024:
            differs += data[:4096] != np.asarray(real_by_name[x.name].data).tobytes()[:4096]
    assert differs > 100
    llm = llama_cpp.Llama(str(twin), n_ctx=256, verbose=False)
    ref = llama_cpp.Llama(str(real), n_ctx=256, verbose=False, vocab_only=True)
    try:
        text = b"The capital of France is Paris."
        assert llm.tokenize(text) == ref.tokenize(text)  # the real tokenizer
        assert llm("The capital of France is", max_tokens=4)["usage"]["completion_tokens"] >= 1
    finally:
        llm.close()
        ref.close()


def test_writing_streams_with_bounded_memory(tmp_path: Path) -> None:
    """A 0.27 GB F16 file whose largest tensor is 131 MB is written with a few MB of
    Python memory: random blocks are made once and repeated."""
    from harness.models.synth import make_synth
    from harness.models.synth.from_shape import shape_tensors
    from harness.models.synth.shapes import custom_shape

    shape = custom_shape("llama", 2048, 8192, 2, 16, 4, 32000)
    largest = max(t.nbytes for t in shape_tensors(shape, 1))
    assert largest > 100e6
    out = tmp_path / "mid.gguf"
    tracemalloc.start()
    try:
        make_synth(out, shape=shape, quant="f16", progress=None)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert out.stat().st_size > 250e6
    assert peak < 40e6, f"peak Python memory {peak / 1e6:.0f} MB"
    assert peak < largest / 3


def test_synth_reference_is_generated_once_and_reused(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.models import synth
    from harness.models.resolve import resolve_gguf
    from harness.models.synth.shapes import custom_shape

    tiny = custom_shape("llama", 256, 512, 2, 4, 2, 1000, name="tiny-test")
    monkeypatch.setattr(synth, "get_preset", lambda name: tiny)
    first = resolve_gguf("synth:tiny-test-q8_0", tmp_path)
    assert first == tmp_path / "synth-tiny-test-q8_0.gguf" and first.is_file()
    stamp = first.stat().st_mtime_ns
    second = resolve_gguf("synth:tiny-test-q8_0", tmp_path)
    assert second == first and second.stat().st_mtime_ns == stamp
    assert [p.name for p in tmp_path.iterdir()] == [first.name]  # no temporaries left


def test_interrupted_generation_leaves_no_file(tmp_path: Path) -> None:
    """Ctrl-C while a 2.5 GB F16 file is being written: exit 130, nothing left behind."""
    import signal
    import time

    out = tmp_path / "m" / "llama1b.gguf"
    proc = subprocess.Popen([sys.executable, "-m", "harness", "model", "synth", "--shape",
                             "llama3.2-1b", "--quant", "f16", "--out", str(out)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        partial = list(out.parent.glob(".*partial*")) if out.parent.exists() else []
        if partial and partial[0].stat().st_size > 50e6:
            break
        time.sleep(0.2)
    assert proc.poll() is None, "finished before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    assert list(out.parent.iterdir()) == []
