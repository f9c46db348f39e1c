"""Deprecated: `python -m harness.tiny_llama` is now `python -m harness.models.tiny_llama` (the tiny random-weight test model).
Kept so existing commands keep working; it says so and runs the new module."""

from __future__ import annotations

import sys

from harness.models.tiny_llama import main

if __name__ == "__main__":
    print("note: `python -m harness.tiny_llama` is deprecated; use `python -m harness.models.tiny_llama`",
          file=sys.stderr)
    sys.exit(main())
