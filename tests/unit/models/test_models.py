"""Model references: clear one-line errors for missing, non-GGUF and unfetchable models."""

from pathlib import Path

import pytest

from harness.errors import UserError
from harness.models.resolve import check_gguf, file_sha256, resolve_gguf


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="model file not found"):
        resolve_gguf(str(tmp_path / "nope.gguf"))


def test_directory_and_non_gguf(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="is a directory"):
        check_gguf(tmp_path)
    f = tmp_path / "x.gguf"
    f.write_bytes(b"PK\x03\x04zip")
    with pytest.raises(UserError, match="is not a GGUF file"):
        check_gguf(f)


def test_hf_reference_needs_owner_repo_file() -> None:
    with pytest.raises(UserError, match="expected hf:owner/repo/file.gguf"):
        resolve_gguf("hf:owner/file.gguf")


def test_hf_offline_is_one_clear_line(monkeypatch: pytest.MonkeyPatch) -> None:
    hub_constants = pytest.importorskip("huggingface_hub.constants")
    # huggingface_hub reads HF_HUB_OFFLINE once, at import: when an earlier test imported
    # it, only its constant makes this run offline (else it waits on the network).
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(UserError) as err:
        resolve_gguf("hf:nobody/no-such-repo/model.gguf")
    assert "could not fetch model.gguf from nobody/no-such-repo" in str(err.value)
    assert "\n" not in str(err.value)


def test_sha256_is_cached_and_correct(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import hashlib

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    f = tmp_path / "m.gguf"
    f.write_bytes(b"GGUF" + b"x" * 1000)
    expected = hashlib.sha256(f.read_bytes()).hexdigest()
    assert file_sha256(f) == expected
    assert (tmp_path / "cache" / "llm-harness" / "sha256.json").exists()
    assert file_sha256(f) == expected
