"""A fast local OpenAI-compatible SSE server with a fixed timing, for measuring the
client's own overhead and for testing the `openai` backend without a model.

It streams `/v1/completions` and `/v1/chat/completions` answers of `max_tokens` tokens:
the first chunk `ttft_ms` after the request arrived, then one chunk every
`itl_ms × tokens_per_chunk` (so every token is `itl_ms` apart on average), each chunk
holding `tokens_per_chunk` tokens. It is a raw asyncio HTTP/1.1 server (keep-alive,
chunked transfer), so it costs little CPU next to the client it measures.

Each request may steer the answer with extra body fields (used by the tests):
`fake_status` (answer with this HTTP status), `fake_cut_after` (close the connection
after this many chunks), `fake_bad_json` (send a chunk that is not JSON),
`fake_no_finish` (end the stream cleanly but without a finish_reason),
`fake_logprobs` (list the tokens of each chunk in `logprobs`), `fake_tag` (a name under
which the server keeps the perf_counter_ns at which each chunk was written; GET /stats
returns them, so a client on the same machine can subtract the server's own lateness).

Output length: by default every answer has `max_tokens` tokens (finish_reason
`length`). With `stop_after` N (`--stop-after N`) an answer ends early after N tokens
(finish_reason `stop`), as a model that reaches its end-of-sequence token does, unless the
request forces its length with a field the server honours (`honours`, `--honour`:
`ignore_eos` lets it run to max_tokens, `min_tokens` to at least that many); a field in
`rejects` (`--reject`) is answered with HTTP 400, as hosted APIs answer unknown fields.
`max_streams` (`--max-streams K`) answers at most K requests at once, the others wait for
a slot (their TTFT runs from the moment one is free), as a server with K slots does.

Run: `python -m harness.servers.fake --port 0 --ttft-ms 50 --itl-ms 10 --tokens-per-chunk 1`
(prints `listening on http://127.0.0.1:PORT/v1` once ready).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any

WORDS = (" the", " cat", " sat", " on", " a", " mat", " and", " it", " was", " warm")


@dataclass
class FakeTiming:
    """The fixed timing and shape of every answer."""

    ttft_ms: float = 50.0
    itl_ms: float = 10.0
    tokens_per_chunk: int = 1
    send_usage: bool = True  # honour stream_options.include_usage
    model: str = "fake-model"
    api_key: str | None = None  # when set, other keys get HTTP 401
    exit_after: int | None = None  # the process exits after answering this many streams
    stop_after: int | None = None  # answers end early (finish_reason stop) after N tokens
    honours: tuple[str, ...] = ("ignore_eos", "min_tokens")  # length fields obeyed
    rejects: tuple[str, ...] = ()  # request fields answered with HTTP 400
    max_streams: int | None = None  # answers streamed at once; others wait (server slots)


@dataclass
class FakeServerState:
    timing: FakeTiming
    stamps: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: int = 0
    done: int = 0


def _sse(obj: Any) -> bytes:
    data = b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"
    return b"%x\r\n%s\r\n" % (len(data), data)


def _raw_sse(text: bytes) -> bytes:
    data = b"data: " + text + b"\n\n"
    return b"%x\r\n%s\r\n" % (len(data), data)


def _response_head(status: int, content_type: str, length: int | None = None) -> bytes:
    reason = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found",
              429: "Too Many Requests", 500: "Internal Server Error",
              503: "Service Unavailable"}.get(status, "Error")
    head = f"HTTP/1.1 {status} {reason}\r\ncontent-type: {content_type}\r\n"
    if length is None:
        head += "transfer-encoding: chunked\r\n"
    else:
        head += f"content-length: {length}\r\n"
    return (head + "connection: keep-alive\r\n\r\n").encode()


def _json_response(status: int, obj: Any) -> bytes:
    body = json.dumps(obj).encode()
    return _response_head(status, "application/json", len(body)) + body


class FakeOpenAIServer:
    """The server; `await start()` binds 127.0.0.1:`port` (0: any free port)."""

    def __init__(self, timing: FakeTiming | None = None, host: str = "127.0.0.1",
                 port: int = 0) -> None:
        self.state = FakeServerState(timing or FakeTiming())
        self.host, self.port = host, port
        self._frames: dict[tuple, bytes] = {}
        self._server: asyncio.base_events.Server | None = None
        slots = self.state.timing.max_streams
        self._slots = asyncio.Semaphore(slots) if slots else None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    async def start(self) -> FakeOpenAIServer:
        self._server = await asyncio.start_server(self._handle, self.host, self.port,
                                                  backlog=1024)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> FakeOpenAIServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _handle(self, reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                recv_ns = time.perf_counter_ns()
                lines = head.decode("latin-1").split("\r\n")
                method, path = lines[0].split(" ")[:2]
                headers = {}
                for line in lines[1:]:
                    if ":" in line:
                        k, _, v = line.partition(":")
                        headers[k.strip().lower()] = v.strip()
                length = int(headers.get("content-length", "0") or 0)
                body = await reader.readexactly(length) if length else b""
                keep = await self._route(method, path.split("?")[0], headers, body, writer,
                                         recv_ns)
                if not keep:
                    return
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            return  # the client went away, or the server is shutting down
        finally:
            try:
                writer.close()
            except Exception:  # noqa: BLE001
                pass

    async def _route(self, method: str, path: str, headers: dict[str, str], body: bytes,
                     writer: asyncio.StreamWriter, recv_ns: int) -> bool:
        timing = self.state.timing
        if timing.api_key is not None and headers.get("authorization") != (
                f"Bearer {timing.api_key}"):
            writer.write(_json_response(401, {"error": {"message": "Incorrect API key",
                                                        "type": "invalid_request_error"}}))
            await writer.drain()
            return True
        if method == "GET" and path == "/v1/models":
            writer.write(_json_response(200, {"object": "list", "data": [
                {"id": timing.model, "object": "model", "owned_by": "fake"}]}))
            await writer.drain()
            return True
        if method == "GET" and path == "/stats":
            writer.write(_json_response(200, self.state.stamps))
            self.state.stamps = {}
            await writer.drain()
            return True
        if method == "POST" and path in ("/v1/completions", "/v1/chat/completions"):
            try:
                req = json.loads(body or b"{}")
            except ValueError:
                writer.write(_json_response(400, {"error": {"message": "body is not JSON"}}))
                await writer.drain()
                return True
            if self._slots is None:
                return await self._stream(req, path.endswith("chat/completions"), writer,
                                          recv_ns)
            async with self._slots:  # a request waits for a free slot, as on a server
                return await self._stream(req, path.endswith("chat/completions"), writer,
                                          time.perf_counter_ns())
        writer.write(_json_response(404, {"error": {"message": f"no route {path}"}}))
        await writer.drain()
        return True

    async def _stream(self, req: dict[str, Any], chat: bool, writer: asyncio.StreamWriter,
                      recv_ns: int) -> bool:
        timing = self.state.timing
        self.state.requests += 1
        status = int(req.get("fake_status") or 200)
        if status != 200:
            writer.write(_json_response(status, {"error": {"message": f"fake {status}",
                                                           "type": "fake_error"}}))
            await writer.drain()
            return True
        if req.get("model") not in (None, timing.model):
            writer.write(_json_response(404, {"error": {
                "message": f"model {req.get('model')} not found"}}))
            await writer.drain()
            return True
        rejected = [f for f in timing.rejects if f in req]
        if rejected:
            writer.write(_json_response(400, {"error": {
                "message": f"Unrecognized request argument supplied: {rejected[0]}",
                "type": "invalid_request_error"}}))
            await writer.drain()
            return True
        n_tokens = int(req.get("max_tokens") or req.get("max_completion_tokens") or 16)
        stop_reason = "length"
        if timing.stop_after is not None and n_tokens > timing.stop_after and not (
                "ignore_eos" in timing.honours and req.get("ignore_eos")):
            floor = int(req.get("min_tokens") or 0) if "min_tokens" in timing.honours else 0
            natural = max(timing.stop_after, min(floor, n_tokens))
            if natural < n_tokens:
                n_tokens, stop_reason = natural, "stop"
        k = max(1, timing.tokens_per_chunk)
        n_chunks = -(-n_tokens // k)
        cut_after = req.get("fake_cut_after")
        tag = req.get("fake_tag")
        stamps: list[int] = []
        if tag is not None:
            self.state.stamps[str(tag)] = {"recv_ns": recv_ns, "write_ns": stamps}
        usage_wanted = timing.send_usage and bool(
            (req.get("stream_options") or {}).get("include_usage"))
        prompt = req.get("prompt") if not chat else " ".join(
            str(m.get("content", "")) for m in req.get("messages", []))
        kind = "chat.completion.chunk" if chat else "text_completion"
        writer.write(_response_head(200, "text/event-stream"))
        gap_ns = int(timing.itl_ms * 1e6 * k)
        first_ns = recv_ns + int(timing.ttft_ms * 1e6)
        sent = 0
        for i in range(n_chunks):
            target_ns = first_ns + i * gap_ns
            wait_s = (target_ns - time.perf_counter_ns()) / 1e9
            if wait_s > 0:
                await asyncio.sleep(wait_s)
            elif i % 16 == 15:
                await asyncio.sleep(0)  # let other streams run when there is no gap
            if cut_after is not None and i >= int(cut_after):
                writer.transport.abort()  # the connection drops mid-stream
                return False
            count = min(k, n_tokens - sent)
            words = [WORDS[(sent + j) % len(WORDS)] for j in range(count)]
            sent += count
            last = i == n_chunks - 1
            finish = stop_reason if last and not req.get("fake_no_finish") else None
            logprobs = None
            if req.get("fake_logprobs"):
                logprobs = ({"content": [{"token": w, "logprob": 0.0, "top_logprobs": []}
                                         for w in words]} if chat else
                            {"tokens": words, "token_logprobs": [0.0] * count,
                             "top_logprobs": None, "text_offset": [0] * count})
            text = "".join(words)
            choice: dict[str, Any] = {"index": 0, "logprobs": logprobs,
                                      "finish_reason": finish}
            if chat:
                choice["delta"] = {"content": text} if i else {"role": "assistant",
                                                               "content": text}
            else:
                choice["text"] = text
            if req.get("fake_bad_json") and i == 1:
                writer.write(_raw_sse(b"{not json"))
            else:
                key = (kind, text, finish, bool(logprobs), i == 0)
                frame = self._frames.get(key)
                if frame is None:  # the same few frames repeat: encode each once
                    frame = self._frames[key] = _sse({"id": "fake-1", "object": kind,
                                                      "created": 0, "model": timing.model,
                                                      "choices": [choice]})
                writer.write(frame)
            if tag is not None:
                stamps.append(time.perf_counter_ns())
            if writer.transport.get_write_buffer_size() > 65536:
                await writer.drain()
        if usage_wanted:
            n_in = len(str(prompt or "").split())
            writer.write(_sse({"id": "fake-1", "object": kind, "created": 0,
                               "model": timing.model, "choices": [],
                               "usage": {"prompt_tokens": n_in, "completion_tokens": sent,
                                         "total_tokens": n_in + sent}}))
        writer.write(_raw_sse(b"[DONE]") + b"0\r\n\r\n")
        await writer.drain()
        self.state.done += 1
        if timing.exit_after is not None and self.state.done >= timing.exit_after:
            # A server that dies: what it wrote goes out, later requests find it gone.
            while writer.transport.get_write_buffer_size():
                await asyncio.sleep(0.001)
            await asyncio.sleep(0.05)
            os._exit(0)
        return True


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--ttft-ms", type=float, default=50.0)
    p.add_argument("--itl-ms", type=float, default=10.0)
    p.add_argument("--tokens-per-chunk", type=int, default=1)
    p.add_argument("--model", default="fake-model")
    p.add_argument("--no-usage", action="store_true", help="ignore include_usage")
    p.add_argument("--exit-after", type=int, default=None,
                   help="exit after answering this many streams (to test a dying server)")
    p.add_argument("--stop-after", type=int, default=None,
                   help="answers end early (finish_reason stop) after this many tokens")
    p.add_argument("--honour", default="ignore_eos,min_tokens",
                   help="length fields obeyed: ignore_eos,min_tokens (default), one, or none")
    p.add_argument("--max-streams", type=int, default=None,
                   help="answer at most this many requests at once; the others wait")
    p.add_argument("--reject", default="",
                   help="request fields answered with HTTP 400, e.g. ignore_eos,min_tokens")
    args = p.parse_args(argv)
    timing = FakeTiming(ttft_ms=args.ttft_ms, itl_ms=args.itl_ms,
                        tokens_per_chunk=args.tokens_per_chunk, model=args.model,
                        send_usage=not args.no_usage, exit_after=args.exit_after,
                        stop_after=args.stop_after,
                        honours=tuple(f for f in args.honour.split(",") if f and f != "none"),
                        rejects=tuple(f for f in args.reject.split(",") if f),
                        max_streams=args.max_streams)

    async def serve() -> None:
        server = await FakeOpenAIServer(timing, port=args.port).start()
        print(f"listening on {server.base_url}", flush=True)
        await asyncio.Event().wait()

    try:
        asyncio.run(serve())
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
