"""A loopback OpenAI-compatible server that fails on purpose, for reliability tests.

It speaks the streaming protocol of `/v1/completions` and `/v1/chat/completions`
(HTTP/1.1, keep-alive, chunked SSE) and `/v1/models`. The fault is chosen by the URL:
a base URL `http://127.0.0.1:PORT/f/MODE/v1` makes every request there behave as MODE;
`/f/healthy+hang+http500/v1` cycles through the listed modes request by request.
`GET .../v1/models` always answers (so the client's model check passes).

Modes, and the error class the `openai` backend must record for each (`FAULTS`):
healthy (none), hang (no byte ever), stall (two chunks then silence), http500 and
http429 with and without Retry-After, http401, reset (the connection closes before any
answer), cut (the connection closes mid-stream), malformed_sse (events not separated,
so two payloads run together), invalid_json (a data line that is not JSON), sse_error
(an error object inside the stream), trickle (a valid answer, one byte per second).
Error bodies echo the request's Authorization header, so a harness that prints or
stores error bodies leaks its key: the secrets test relies on this.

Run: `python -m tests.faultserver --port 0` prints `listening on http://127.0.0.1:PORT`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import threading
from collections import Counter
from typing import Any

# mode -> the error kind the runner must record (None: the request succeeds)
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
WORDS = (" the", " cat", " sat", " on", " a", " mat")
REASONS = {200: "OK", 401: "Unauthorized", 404: "Not Found", 429: "Too Many Requests",
           500: "Internal Server Error"}


def _chunk(data: bytes) -> bytes:
    """One HTTP/1.1 chunk of a chunked body."""
    return b"%x\r\n%s\r\n" % (len(data), data)


def _event(obj: Any) -> bytes:
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"


def _head(status: int, content_type: str, length: int | None = None,
          extra: dict[str, str] | None = None) -> bytes:
    lines = [f"HTTP/1.1 {status} {REASONS.get(status, 'Error')}",
             f"content-type: {content_type}", "connection: keep-alive"]
    lines.append("transfer-encoding: chunked" if length is None else
                 f"content-length: {length}")
    lines += [f"{k}: {v}" for k, v in (extra or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


class FaultServer:
    """The server. `await start()` binds 127.0.0.1 (port 0: any free port)."""

    def __init__(self, model: str = "m", ttft_ms: float = 5.0, itl_ms: float = 2.0,
                 port: int = 0, stall_after_chunks: int = 2, log_requests: bool = False,
                 default_mode: str = "healthy") -> None:
        self.model, self.ttft_ms, self.itl_ms = model, ttft_ms, itl_ms
        self.log_requests, self.default_mode = log_requests, default_mode
        self.port, self.stall_after_chunks = port, stall_after_chunks
        self.served: Counter[str] = Counter()  # requests per mode
        self.authorization_seen: list[str] = []
        self._cycle: Counter[str] = Counter()
        self._server: asyncio.base_events.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def base_url(self, *modes: str) -> str:
        """The base URL under which requests behave as `modes` (cycled)."""
        for m in modes:
            if m not in FAULTS:
                raise ValueError(f"unknown fault mode {m!r}; known: {', '.join(FAULTS)}")
        return f"{self.url}/f/{'+'.join(modes or ('healthy',))}/v1"

    async def start(self) -> FaultServer:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port,
                                                  backlog=1024)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for w in list(self._writers):
                w.transport.abort()
            self._server = None

    # -- HTTP --------------------------------------------------------------------------
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
                lines = head.decode("latin-1").split("\r\n")
                method, target = (lines[0].split(" ") + ["", ""])[:2]
                headers = {}
                for line in lines[1:]:
                    key, sep, value = line.partition(":")
                    if sep:
                        headers[key.strip().lower()] = value.strip()
                length = int(headers.get("content-length") or 0)
                body = await reader.readexactly(length) if length else b""
                if self.log_requests:  # as a careless server logs: headers and all
                    print(f"{method} {target} authorization={headers.get('authorization')}",
                          flush=True)
                if not await self._route(method, target.split("?")[0], headers, body,
                                         reader, writer):
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            self._writers.discard(writer)
            writer.transport.abort() if writer.transport.is_closing() else writer.close()

    def _mode_for(self, spec: str) -> str:
        modes = spec.split("+")
        mode = modes[self._cycle[spec] % len(modes)]
        self._cycle[spec] += 1
        return mode if mode in FAULTS else "healthy"

    async def _route(self, method: str, path: str, headers: dict[str, str], body: bytes,
                     reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        spec, rest = self.default_mode, path
        if path.startswith("/f/"):
            spec, _, rest = path[3:].partition("/")
            rest = "/" + rest
        if method == "GET" and rest == "/v1/models":
            self._json(writer, 200, {"object": "list", "data": [
                {"id": self.model, "object": "model", "owned_by": "faultserver"}]})
            await writer.drain()
            return True
        if method != "POST" or rest not in ("/v1/completions", "/v1/chat/completions"):
            self._json(writer, 404, {"error": {"message": f"no route {method} {path}"}})
            await writer.drain()
            return True
        mode = self._mode_for(spec)
        self.served[mode] += 1
        auth = headers.get("authorization", "")
        self.authorization_seen.append(auth)
        try:
            req = json.loads(body or b"{}")
        except ValueError:
            req = {}
        return await self._answer(mode, req, rest.endswith("chat/completions"), auth,
                                  reader, writer)

    def _json(self, writer: asyncio.StreamWriter, status: int, obj: Any,
              extra: dict[str, str] | None = None) -> None:
        data = json.dumps(obj).encode()
        writer.write(_head(status, "application/json", len(data), extra) + data)

    def _error_body(self, status: int, auth: str) -> dict[str, Any]:
        # Echo the credentials back, as careless proxies and some servers do.
        return {"error": {"message": f"fault {status}: request had Authorization: {auth}",
                          "type": "fault_injection", "code": status}}

    def _chunks(self, req: dict[str, Any], chat: bool) -> list[bytes]:
        """The SSE events of a healthy answer (content chunks, usage, [DONE])."""
        n = int(req.get("max_tokens") or req.get("max_completion_tokens") or 16)
        kind = "chat.completion.chunk" if chat else "text_completion"
        out = []
        for i in range(n):
            choice: dict[str, Any] = {"index": 0, "logprobs": None,
                                      "finish_reason": "length" if i == n - 1 else None}
            word = WORDS[i % len(WORDS)]
            if chat:
                choice["delta"] = {"content": word}
            else:
                choice["text"] = word
            out.append(_event({"id": "f", "object": kind, "created": 0, "model": self.model,
                               "choices": [choice]}))
        if (req.get("stream_options") or {}).get("include_usage"):
            prompt = req.get("prompt") or " ".join(
                str(m.get("content", "")) for m in req.get("messages") or [])
            n_in = max(1, len(str(prompt).split()))
            out.append(_event({"id": "f", "object": kind, "created": 0, "model": self.model,
                               "choices": [], "usage": {"prompt_tokens": n_in,
                                                        "completion_tokens": n,
                                                        "total_tokens": n_in + n}}))
        out.append(b"data: [DONE]\n\n")
        return out

    async def _answer(self, mode: str, req: dict[str, Any], chat: bool, auth: str,
                      reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        if mode == "hang":  # until the client gives up and closes
            await reader.read()
            return False
        if mode == "reset":
            writer.transport.abort()
            return False
        if mode.startswith(("http500", "http429", "http401")):
            status = int(mode[4:7])
            extra = {"retry-after": "30"} if mode.endswith("retry_after") else None
            self._json(writer, status, self._error_body(status, auth), extra)
            await writer.drain()
            return True
        events = self._chunks(req, chat)
        writer.write(_head(200, "text/event-stream"))
        await asyncio.sleep(self.ttft_ms / 1000)
        if mode == "trickle":
            data = _chunk(b"".join(events)) + b"0\r\n\r\n"
            for i in range(len(data)):
                writer.write(data[i:i + 1])
                await writer.drain()
                await asyncio.sleep(1.0)
            return True
        if mode == "malformed_sse":  # no blank lines: the data lines run together
            events = [e.replace(b"\n\n", b"\n") for e in events[:-1]] + [b"\n\n"]
        elif mode == "invalid_json":
            events = events[:1] + [b'data: {"choices": [{"text": " broken"\n\n']
        elif mode == "sse_error":
            events = events[:1] + [_event({"error": {"message": "engine overloaded",
                                                      "type": "server_error"}})]
        for i, event in enumerate(events):
            if mode == "stall" and i == self.stall_after_chunks:
                await reader.read()  # until the client gives up and closes
                return False
            if mode == "cut" and i == 2:
                writer.write(b"%x\r\ndata: {\"choi" % len(event))  # half a chunk
                await writer.drain()
                writer.transport.abort()
                return False
            writer.write(_chunk(event))
            await writer.drain()
            if self.itl_ms:
                await asyncio.sleep(self.itl_ms / 1000)
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        return True


class ThreadedFaultServer:
    """A FaultServer running in a background thread (for tests): `with ... as server:`."""

    def __init__(self, **kwargs: Any) -> None:
        self.server = FaultServer(**kwargs)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def __enter__(self) -> FaultServer:
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
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--model", default="m")
    p.add_argument("--ttft-ms", type=float, default=5.0)
    p.add_argument("--itl-ms", type=float, default=2.0)
    p.add_argument("--mode", default="healthy",
                   help="the mode(s) of requests under /v1 (e.g. healthy+http500)")
    p.add_argument("--log-requests", action="store_true",
                   help="print every request with its Authorization header")
    args = p.parse_args(argv)

    async def serve() -> None:
        server = await FaultServer(args.model, args.ttft_ms, args.itl_ms, args.port,
                                   log_requests=args.log_requests,
                                   default_mode=args.mode).start()
        print(f"listening on {server.url}", flush=True)
        await asyncio.Event().wait()

    try:
        asyncio.run(serve())
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["FAULTS", "FaultServer", "ThreadedFaultServer"]
