"""The one fake OpenAI-compatible SSE server: a fixed timing for measuring the client's
own overhead and testing the `openai` backend without a model, and fault modes for the
reliability tests.

It streams `/v1/completions` and `/v1/chat/completions` answers of `max_tokens` tokens:
the first chunk `ttft_ms` after the request arrived, then one chunk every
`itl_ms × tokens_per_chunk` (so every token is `itl_ms` apart on average), each chunk
holding `tokens_per_chunk` tokens; `GET /v1/models` lists its one model. It is a raw
asyncio HTTP/1.1 server (keep-alive, chunked transfer), so it costs little CPU next to the
client it measures.

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

Fault modes (`FAULTS`: mode -> the error class the `openai` backend must record): chosen
by the URL, `http://127.0.0.1:PORT/f/MODE/v1` (`fault_url(MODE)`), where
`/f/healthy+hang+http500/v1` cycles through the listed modes request by request; requests
under plain `/v1` behave as `mode` (`--mode`, default healthy). healthy (none), hang (no
byte ever), stall (`stall_after_chunks` chunks then silence), http500 and http429 with and
without Retry-After, http401, reset (the connection closes before any answer), cut (the
connection closes mid-chunk), malformed_sse (events not separated, so the payloads run
together), invalid_json (a data line that is not JSON), sse_error (an error object inside
the stream), trickle (a valid answer, one byte per second). The error bodies of the http
modes echo the request's Authorization header, and `log_requests` (`--log-requests`)
prints every request with it, as careless servers do: the secrets tests rely on this.
`state.served` counts requests per mode, `state.authorization_seen` keeps the headers.

Run: `python -m harness.servers.fake --port 0 --ttft-ms 50 --itl-ms 10 --tokens-per-chunk 1`
(prints `listening on http://127.0.0.1:PORT/v1` once ready); add `--mode http500+healthy`
or `--log-requests` for faults. In a test: `with ThreadedFakeServer(timing) as server:`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

WORDS = (" the", " cat", " sat", " on", " a", " mat", " and", " it", " was", " warm")

# fault mode -> the error kind the runner must record (None: the request succeeds)
FAULTS: dict[str, str | None] = {
    "healthy": None,
    "hang": "timeout",
    "stall": "stall",
    "http500": "http_5xx",
    "http500_retry_after": "http_5xx",
    "http429": "http_429",
    "http429_retry_after": "http_429",
    "http401": "http_401",
    "reset": "connection",
    "cut": "stream_cut",
    "malformed_sse": "bad_response",
    "invalid_json": "bad_response",
    "sse_error": "stream_error",
    "trickle": "timeout",
}


@dataclass
class FakeTiming:
    """The fixed timing and shape of every answer, and the fault mode of plain /v1."""

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
    mode: str = "healthy"  # fault mode(s) of requests under plain /v1 ("a+b" cycles)
    stall_after_chunks: int = 2  # the stall mode goes silent after this many chunks
    log_requests: bool = False  # print each request with its Authorization header


@dataclass
class FakeServerState:
    """What the server saw: per-request stamps, counts, modes served, credentials."""

    timing: FakeTiming
    stamps: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: int = 0
    done: int = 0
    served: Counter[str] = field(default_factory=Counter)  # completion requests per mode
    authorization_seen: list[str] = field(default_factory=list)


def _chunk(data: bytes) -> bytes:
    """One HTTP/1.1 chunk of a chunked body."""
    return b"%x\r\n%s\r\n" % (len(data), data)


def _payload(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _sse(obj: Any) -> bytes:
    return _chunk(b"data: " + _payload(obj) + b"\n\n")


def _raw_sse(text: bytes) -> bytes:
    return _chunk(b"data: " + text + b"\n\n")


def _response_head(status: int, content_type: str, length: int | None = None,
                   extra: dict[str, str] | None = None) -> bytes:
    reason = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found",
              429: "Too Many Requests", 500: "Internal Server Error",
              503: "Service Unavailable"}.get(status, "Error")
    head = f"HTTP/1.1 {status} {reason}\r\ncontent-type: {content_type}\r\n"
    if length is None:
        head += "transfer-encoding: chunked\r\n"
    else:
        head += f"content-length: {length}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in (extra or {}).items())
    return (head + "connection: keep-alive\r\n\r\n").encode()


def _json_response(status: int, obj: Any, extra: dict[str, str] | None = None) -> bytes:
    body = json.dumps(obj).encode()
    return _response_head(status, "application/json", len(body), extra) + body


def check_modes(modes: str) -> list[str]:
    """The modes of a `a+b+c` spec; ValueError naming the known ones on an unknown mode."""
    listed = [m for m in modes.split("+") if m] or ["healthy"]
    for m in listed:
        if m not in FAULTS:
            raise ValueError(f"unknown fault mode {m!r}; known: {', '.join(FAULTS)}")
    return listed


class FakeOpenAIServer:
    """The server; `await start()` binds 127.0.0.1:`port` (0: any free port)."""

    def __init__(self, timing: FakeTiming | None = None, host: str = "127.0.0.1",
                 port: int = 0) -> None:
        self.state = FakeServerState(timing or FakeTiming())
        check_modes(self.state.timing.mode)
        self.host, self.port = host, port
        self._frames: dict[tuple, bytes] = {}
        self._server: asyncio.base_events.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._cycle: Counter[str] = Counter()
        self._dying = False  # exit_after reached: nothing more is answered
        slots = self.state.timing.max_streams
        self._slots = asyncio.Semaphore(slots) if slots else None

    @property
    def url(self) -> str:
        """The server's root, without /v1."""
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """The OpenAI base URL of requests in the default mode."""
        return f"{self.url}/v1"

    def fault_url(self, *modes: str) -> str:
        """The base URL under which requests behave as `modes`, cycled request by request."""
        return f"{self.url}/f/{'+'.join(check_modes('+'.join(modes)))}/v1"

    async def start(self) -> FakeOpenAIServer:
        self._server = await asyncio.start_server(self._handle, self.host, self.port,
                                                  backlog=1024)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        """Stop listening and drop open connections (a hanging answer ends with them)."""
        if self._server is not None:
            self._server.close()
            for writer in list(self._writers):
                writer.transport.abort()
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> FakeOpenAIServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _handle(self, reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                        ConnectionError):
                    return
                recv_ns = time.perf_counter_ns()
                if self._dying:  # a dead server answers nothing more
                    writer.transport.abort()
                    return
                lines = head.decode("latin-1").split("\r\n")
                method, path = (lines[0].split(" ") + ["", ""])[:2]
                headers = {}
                for line in lines[1:]:
                    if ":" in line:
                        k, _, v = line.partition(":")
                        headers[k.strip().lower()] = v.strip()
                length = int(headers.get("content-length", "0") or 0)
                body = await reader.readexactly(length) if length else b""
                if self.state.timing.log_requests:  # as a careless server logs: headers too
                    print(f"{method} {path} authorization={headers.get('authorization')}",
                          flush=True)
                keep = await self._route(method, path.split("?")[0], headers, body, writer,
                                         recv_ns, reader)
                if not keep:
                    return
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            return  # the client went away, or the server is shutting down
        finally:
            self._writers.discard(writer)
            try:
                writer.close()
            except Exception:  # noqa: BLE001
                pass

    def _mode_for(self, spec: str) -> str:
        """The next mode of a `a+b` spec (cycled per spec); unknown names are healthy."""
        modes = spec.split("+")
        mode = modes[self._cycle[spec] % len(modes)]
        self._cycle[spec] += 1
        return mode if mode in FAULTS else "healthy"

    async def _route(self, method: str, path: str, headers: dict[str, str], body: bytes,
                     writer: asyncio.StreamWriter, recv_ns: int,
                     reader: asyncio.StreamReader | None = None) -> bool:
        timing = self.state.timing
        spec = timing.mode
        if path.startswith("/f/"):
            spec, _, rest = path[3:].partition("/")
            path = "/" + rest
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
            mode = self._mode_for(spec)
            self.state.served[mode] += 1
            auth = headers.get("authorization", "")
            self.state.authorization_seen.append(auth)
            if mode != "healthy" and not await self._early_fault(mode, auth, reader, writer):
                return False
            if mode in ("hang", "reset") or mode.startswith("http"):
                return True
            try:
                req = json.loads(body or b"{}")
            except ValueError:
                writer.write(_json_response(400, {"error": {"message": "body is not JSON"}}))
                await writer.drain()
                return True
            chat = path.endswith("chat/completions")
            if self._slots is None:
                return await self._stream(req, chat, writer, recv_ns, mode=mode,
                                          reader=reader)
            async with self._slots:  # a request waits for a free slot, as on a server
                return await self._stream(req, chat, writer, time.perf_counter_ns(),
                                          mode=mode, reader=reader)
        writer.write(_json_response(404, {"error": {"message": f"no route {path}"}}))
        await writer.drain()
        return True

    async def _early_fault(self, mode: str, auth: str, reader: asyncio.StreamReader | None,
                           writer: asyncio.StreamWriter) -> bool:
        """The faults that come before any answer: hang, reset, the HTTP errors. False
        when the connection is gone; True otherwise (streaming faults come later)."""
        if mode == "hang":  # until the client gives up and closes
            if reader is not None:
                await reader.read()
            return False
        if mode == "reset":
            writer.transport.abort()
            return False
        if mode.startswith("http"):
            status = int(mode[4:7])
            extra = {"retry-after": "30"} if mode.endswith("retry_after") else None
            # Echo the credentials back, as careless proxies and some servers do.
            writer.write(_json_response(status, {"error": {
                "message": f"fault {status}: request had Authorization: {auth}",
                "type": "fault_injection", "code": status}}, extra))
            await writer.drain()
        return True

    async def _stream(self, req: dict[str, Any], chat: bool, writer: asyncio.StreamWriter,
                      recv_ns: int, mode: str = "healthy",
                      reader: asyncio.StreamReader | None = None) -> bool:
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
        bad_json = bool(req.get("fake_bad_json")) or mode == "invalid_json"
        malformed = mode == "malformed_sse"  # data lines with no blank line between events
        trickled = bytearray() if mode == "trickle" else None  # sent one byte a second
        tag = req.get("fake_tag")
        stamps: list[int] = []
        if tag is not None:
            self.state.stamps[str(tag)] = {"recv_ns": recv_ns, "write_ns": stamps}
        usage_wanted = timing.send_usage and bool(
            (req.get("stream_options") or {}).get("include_usage"))
        prompt = req.get("prompt") if not chat else " ".join(
            str(m.get("content", "")) for m in req.get("messages", []))
        kind = "chat.completion.chunk" if chat else "text_completion"

        def emit(data: bytes) -> None:
            if trickled is not None:
                trickled.extend(data)
            else:
                writer.write(data)

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
            if mode == "stall" and i == timing.stall_after_chunks:
                await writer.drain()
                if reader is not None:
                    await reader.read()  # silence until the client gives up and closes
                return False
            if mode == "cut" and i == 2:
                writer.write(b"40\r\ndata: {\"choi")  # half a chunk, then the line drops
                await writer.drain()
                writer.transport.abort()
                return False
            if mode == "sse_error" and i == 1:
                writer.write(_sse({"error": {"message": "engine overloaded",
                                             "type": "server_error"}}) + b"0\r\n\r\n")
                await writer.drain()
                return True
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
            obj = {"id": "fake-1", "object": kind, "created": 0, "model": timing.model,
                   "choices": [choice]}
            if bad_json and i == 1:
                emit(_raw_sse(b'{"choices": [{"text": " broken"'))
            elif malformed:
                emit(_chunk(b"data: " + _payload(obj) + b"\n"))
            else:
                key = (kind, text, finish, bool(logprobs), i == 0)
                frame = self._frames.get(key)
                if frame is None:  # the same few frames repeat: encode each once
                    frame = self._frames[key] = _sse(obj)
                emit(frame)
            if tag is not None:
                stamps.append(time.perf_counter_ns())
            if writer.transport.get_write_buffer_size() > 65536:
                await writer.drain()
        if usage_wanted:
            n_in = len(str(prompt or "").split())
            usage = {"id": "fake-1", "object": kind, "created": 0, "model": timing.model,
                     "choices": [], "usage": {"prompt_tokens": n_in,
                                              "completion_tokens": sent,
                                              "total_tokens": n_in + sent}}
            emit(_chunk(b"data: " + _payload(usage) + b"\n") if malformed else _sse(usage))
        emit((_chunk(b"\n\n") if malformed else _raw_sse(b"[DONE]")) + b"0\r\n\r\n")
        if trickled is not None:
            for i in range(len(trickled)):
                writer.write(trickled[i:i + 1])
                await writer.drain()
                await asyncio.sleep(1.0)
            return True
        await writer.drain()
        self.state.done += 1
        if timing.exit_after is not None and self.state.done >= timing.exit_after:
            # A server that dies: what it wrote goes out, later requests find it gone
            # (new connections refused, requests on open ones dropped while it flushes).
            self._dying = True
            if self._server is not None:
                self._server.close()
            while writer.transport.get_write_buffer_size():
                await asyncio.sleep(0.001)
            await asyncio.sleep(0.05)
            os._exit(0)
        return True


class ThreadedFakeServer:
    """A FakeOpenAIServer on its own event loop in a background thread, for tests that
    run the client elsewhere (a `harness bench` subprocess): `with ... as server:`."""

    def __init__(self, timing: FakeTiming | None = None, port: int = 0) -> None:
        self.server = FakeOpenAIServer(timing, port=port)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True,
                                        name="fake-openai-server")

    def __enter__(self) -> FakeOpenAIServer:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.server.start(), self._loop).result(10)
        return self.server

    def __exit__(self, *exc: object) -> None:
        async def stop_all() -> None:
            await self.server.stop()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(stop_all(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


def main(argv: list[str] | None = None) -> int:
    """Serve until interrupted; print `listening on URL` once ready."""
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
    p.add_argument("--mode", default="healthy",
                   help=f"the fault mode(s) of requests under /v1, cycled (e.g. "
                        f"healthy+http500); known: {', '.join(FAULTS)}")
    p.add_argument("--log-requests", action="store_true",
                   help="print every request with its Authorization header")
    args = p.parse_args(argv)
    try:
        check_modes(args.mode)
    except ValueError as exc:
        p.error(f"--mode: {exc}")
    timing = FakeTiming(ttft_ms=args.ttft_ms, itl_ms=args.itl_ms,
                        tokens_per_chunk=args.tokens_per_chunk, model=args.model,
                        send_usage=not args.no_usage, exit_after=args.exit_after,
                        stop_after=args.stop_after,
                        honours=tuple(f for f in args.honour.split(",") if f and f != "none"),
                        rejects=tuple(f for f in args.reject.split(",") if f),
                        max_streams=args.max_streams, mode=args.mode,
                        log_requests=args.log_requests)

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
