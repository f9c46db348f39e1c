"""Token counting on the client: a GGUF vocabulary (llama.cpp) or a Hugging Face
tokenizer, for servers that send no usage."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from backends.openai.errors import short
from harness.errors import UserError


@contextlib.contextmanager
def quiet_stderr() -> Iterator[None]:
    """Silence file descriptor 2 (native libraries' own prints) for the block."""
    sys.stderr.flush()
    saved = os.dup(2)
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


class Tokenizer:
    """Counts tokens with a GGUF vocabulary (llama.cpp) or a Hugging Face tokenizer."""

    def __init__(self, spec: str) -> None:
        self.spec = spec
        self.metadata: dict[str, str] = {}
        path = Path(spec).expanduser()
        if path.suffix == ".gguf":
            if not path.is_file():
                raise UserError(f"tokenizer file not found: {path} ([engine] tokenizer)")
            try:
                import llama_cpp
            except ImportError:
                raise UserError("counting with a GGUF tokenizer needs llama-cpp-python: "
                                "pip install -e '.[llamacpp]'") from None
            try:
                with quiet_stderr():  # llama.cpp warns about the context of a vocab-only load
                    self._llama = llama_cpp.Llama(model_path=str(path), vocab_only=True,
                                                  verbose=False)
            except (ValueError, RuntimeError, OSError) as exc:
                raise UserError(f"cannot read the tokenizer of {path}: {exc}") from None
            self.metadata = dict(self._llama.metadata)
            self._hf = None
            return
        self._llama = None
        try:
            from transformers import AutoTokenizer
        except ImportError:
            raise UserError(f"tokenizer {spec!r}: give a .gguf file, or install transformers "
                            "to use a Hugging Face tokenizer") from None
        try:
            self._hf = AutoTokenizer.from_pretrained(spec)
        except Exception as exc:  # noqa: BLE001 - offline, missing: one line
            raise UserError(f"cannot load tokenizer {spec!r}: {short(str(exc), 200)}") from None

    def count(self, text: str, prompt: bool) -> int:
        if self._llama is not None:
            return len(self._llama.tokenize(text.encode("utf-8"), add_bos=prompt,
                                            special=False))
        return len(self._hf.encode(text, add_special_tokens=prompt))

    def close(self) -> None:
        if self._llama is not None:
            self._llama.close()
            self._llama = None


__all__ = ["Tokenizer", "quiet_stderr"]
