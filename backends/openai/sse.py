"""Server-sent events of a completions or chat stream → (text, tokens) per chunk."""

from __future__ import annotations

import json
from typing import Any

from backends.base import RequestError
from backends.openai.errors import short

try:  # the openai client's own fast JSON parser (one of its dependencies)
    from jiter import from_json as _loads
except ImportError:  # pragma: no cover
    _loads = json.loads


class ChunkParser:
    """Server-sent events of a completions or chat stream → (text, tokens) per chunk.

    Feed it the bytes as they arrive; it keeps partial events for the next feed. A
    chunk's token count comes from its logprobs when it lists them, else from the
    tokenizer (`count`), else 1 per chunk with text. It remembers whether a
    finish_reason was seen (and which), whether `[DONE]` arrived, the last usage object,
    and the last `timings` object (llama-server's per-request engine timings, final
    chunk)."""

    def __init__(self, chat: bool, count: Any = None) -> None:
        self.chat, self.count = chat, count
        self.buffer = b""
        self.done = False
        self.finished = False
        self.finish_reason: str | None = None  # of the final chunk: length, stop, ...
        self.usage: dict[str, Any] | None = None
        self.timings: dict[str, Any] | None = None

    def feed(self, data: bytes) -> list[tuple[str, int]]:
        buf = self.buffer + data if self.buffer else data
        if b"\r" in buf:
            buf = buf.replace(b"\r\n", b"\n")  # a split CR LF joins up on the next feed
        out: list[tuple[str, int]] = []
        pos = 0
        while not self.done:
            end = buf.find(b"\n\n", pos)
            if end < 0:
                break
            event, pos = buf[pos:end], end + 2
            if event.startswith(b"data:") and b"\n" not in event:
                payload = event[5:].lstrip()
            else:
                payload = b"\n".join(line[5:].lstrip() for line in event.split(b"\n")
                                     if line.startswith(b"data:"))
            if not payload:
                continue  # a comment or keep-alive ping
            if payload == b"[DONE]":
                self.done = True
                break
            item = self.chunk(payload)
            if item is not None:
                out.append(item)
        self.buffer = buf[pos:]
        return out

    def chunk(self, payload: bytes) -> tuple[str, int] | None:
        try:
            obj = _loads(payload)
        except ValueError as exc:
            raise RequestError("bad_response", f"a stream chunk is not JSON ({exc}): "
                               f"{short(payload.decode(errors='replace'), 120)}") from None
        if not isinstance(obj, dict):
            raise RequestError("bad_response", f"a stream chunk is not an object: "
                               f"{short(payload.decode(errors='replace'), 120)}")
        if obj.get("error"):
            err = obj["error"]
            msg = err.get("message") if isinstance(err, dict) else err
            raise RequestError("stream_error", f"error inside the stream: {short(str(msg))}")
        if obj.get("usage"):
            self.usage = obj["usage"]
        if isinstance(obj.get("timings"), dict):
            self.timings = obj["timings"]
        choices = obj.get("choices") or []
        if not choices:
            return None
        choice = choices[0]
        logprobs = choice.get("logprobs") or {}
        if self.chat:
            delta = choice.get("delta") or {}
            text = (delta.get("content") or delta.get("reasoning_content")
                    or delta.get("reasoning") or "")
            listed = logprobs.get("content") if isinstance(logprobs, dict) else None
        else:
            text = choice.get("text") or ""
            listed = logprobs.get("tokens") if isinstance(logprobs, dict) else None
        if choice.get("finish_reason"):
            self.finished = True
            self.finish_reason = str(choice["finish_reason"])
        if listed:
            n = len(listed)
        elif not text:
            n = 0
        elif self.count is not None:
            n = max(1, self.count(text, False))
        else:
            n = 1
        return (text, n) if text or n else None


__all__ = ["ChunkParser"]
