"""Deprecated: `python -m harness.sse_server` is now `python -m harness.servers.fake` (the fake OpenAI-compatible SSE server).
Kept so existing commands keep working; it says so and runs the new module."""

from __future__ import annotations

import sys

from harness.servers.fake import main

if __name__ == "__main__":
    print("note: `python -m harness.sse_server` is deprecated; use `python -m harness.servers.fake`",
          file=sys.stderr)
    sys.exit(main())
