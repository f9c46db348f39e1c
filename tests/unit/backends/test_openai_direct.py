"""The `openai` backend's direct request path (`DirectPost`: the request sent on the
client's own aiohttp session) against the real local SSE server: it records exactly what
the official client's path records, with the same error classes, key and timeouts."""

from __future__ import annotations

import asyncio
import gzip
import json

import pytest

from backends.base import Request
from backends.openai.backend import OpenAIBackend
from backends.openai.direct import DirectPost, status_error
from harness.runner.load import measure_request
from harness.servers.fake import FakeOpenAIServer, FakeTiming


def _req(n_out: int = 6, chat: bool = False, **extra) -> Request:
    return Request("r0", "one two three", 3, n_out, chat=chat, extra=extra)


async def _both(timing: FakeTiming, request: Request, timeout_s: float = 10.0, **config):
    """The same request measured through the direct path (aiohttp) and the client's path
    (httpx): (direct record, client record)."""
    records = []
    async with FakeOpenAIServer(timing) as server:
        for transport in ("aiohttp", "httpx"):
            backend = OpenAIBackend(model=timing.model, base_url=server.base_url,
                                    http_client=transport, **config)
            await backend.open()
            try:
                assert isinstance(backend._direct, DirectPost) == (transport == "aiohttp")
                records.append(await measure_request(backend, request, "s", 0, timeout_s))
            finally:
                await backend.close()
    return records


@pytest.mark.parametrize("tokens_per_chunk,logprobs,chat", [
    (1, False, False), (4, True, False), (3, True, True), (1, False, True)])
def test_direct_path_records_what_the_client_path_records(tokens_per_chunk, logprobs, chat):
    timing = FakeTiming(ttft_ms=2, itl_ms=1, tokens_per_chunk=tokens_per_chunk)
    extra = {"fake_logprobs": True} if logprobs else {}
    direct, client = asyncio.run(_both(timing, _req(10, chat=chat, **extra)))
    assert direct.ok and client.ok, (direct.error_message, client.error_message)
    for r in (direct, client):
        assert r.output_tokens == 10 and r.token_count_source == "engine"
        assert r.input_tokens == 3 and r.finish_reason == "length"
    assert direct.event_tokens == client.event_tokens
    assert sum(direct.event_tokens) == 10
    assert len(direct.event_tokens) == -(-10 // tokens_per_chunk)


@pytest.mark.parametrize("extra,kind", [
    ({"fake_status": 401}, "http_401"),
    ({"fake_status": 429}, "http_429"),
    ({"fake_status": 503}, "http_5xx"),
    ({"fake_cut_after": 2}, "stream_cut"),
    ({"fake_no_finish": True}, "stream_cut"),
    ({"fake_bad_json": True}, "bad_response"),
])
def test_direct_path_classifies_failures_as_the_client_does(extra, kind):
    direct, client = asyncio.run(_both(FakeTiming(ttft_ms=1, itl_ms=1), _req(5, **extra)))
    assert (direct.error, client.error) == (kind, kind), (direct.error_message,
                                                         client.error_message)


def test_direct_path_sends_the_key_and_a_wrong_one_is_refused(monkeypatch):
    timing = FakeTiming(ttft_ms=1, itl_ms=1, api_key="sk-right-key-0123456789")
    monkeypatch.setenv("HARNESS_TEST_KEY", "sk-right-key-0123456789")
    ok, _ = asyncio.run(_both(timing, _req(4), api_key_env="HARNESS_TEST_KEY",
                              check_model=False))
    assert ok.ok and ok.output_tokens == 4
    monkeypatch.setenv("HARNESS_TEST_KEY", "sk-wrong-key-0123456789")
    bad, client_bad = asyncio.run(_both(timing, _req(4), api_key_env="HARNESS_TEST_KEY",
                                        check_model=False))
    assert bad.error == client_bad.error == "http_401"
    assert "Incorrect API key" in bad.error_message


def test_direct_path_read_timeout_is_a_timeout():
    """The backend's timeout_s is the socket read timeout on both paths: a server that
    says nothing for longer ends the request as `timeout`, well before the runner's own
    per-request limit."""
    direct, client = asyncio.run(_timeouts())
    assert direct.error == client.error == "timeout"


async def _timeouts():
    timing = FakeTiming(ttft_ms=3000, itl_ms=0)
    records = []
    async with FakeOpenAIServer(timing) as server:
        for transport in ("aiohttp", "httpx"):
            backend = OpenAIBackend(model=timing.model, base_url=server.base_url,
                                    http_client=transport, timeout_s=0.3)
            await backend.open()
            try:
                records.append(await measure_request(backend, _req(2), "s", 0, 20.0))
            finally:
                await backend.close()
    return records


def test_status_error_takes_the_servers_message():
    err = status_error(503, json.dumps({"error": {"message": "overloaded", "code": 503}}))
    assert err.kind == "http_5xx" and str(err) == "HTTP 503: overloaded"
    err = status_error(404, "no such route")
    assert err.kind == "http_404" and "no such route" in str(err)
    assert status_error(400, json.dumps({"error": "bad field"})).kind == "http_400"
    assert "bad field" in str(status_error(400, json.dumps({"error": "bad field"})))


def test_a_gzipped_stream_is_decoded_on_the_direct_path():
    """A proxy that gzips the event stream: aiohttp decodes it before the parser."""
    events = b"".join(
        b"data: " + json.dumps({"choices": [{"index": 0, "text": w, "finish_reason":
                                             "length" if i == 2 else None}]}).encode()
        + b"\n\n" for i, w in enumerate((" a", " b", " c")))
    events += b'data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":3}}\n\n'
    events += b"data: [DONE]\n\n"
    body = gzip.compress(events)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = [int(line.split(b":")[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:")]
        await reader.readexactly(length[0] if length else 0)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                     b"content-encoding: gzip\r\ncontent-length: %d\r\n"
                     b"connection: close\r\n\r\n" % len(body) + body)
        await writer.drain()
        writer.close()

    async def go():
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        backend = OpenAIBackend(model="m", base_url=f"http://127.0.0.1:{port}/v1",
                                http_client="aiohttp", check_model=False)
        await backend.open()
        try:
            assert isinstance(backend._direct, DirectPost)
            return await measure_request(backend, _req(3), "s", 0, 10.0)
        finally:
            await backend.close()
            server.close()

    record = asyncio.run(go())
    assert record.ok, record.error_message
    assert record.output_tokens == 3 and len(record.event_ns) == 3


def test_with_a_proxy_in_the_environment_the_client_path_is_used(monkeypatch):
    """The official client routes through HTTP(S)_PROXY (and honours NO_PROXY); the direct
    path would not, so it is not used."""
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")

    async def go():
        async with FakeOpenAIServer(FakeTiming(ttft_ms=1, itl_ms=1)) as server:
            backend = OpenAIBackend(model="fake-model", base_url=server.base_url,
                                    http_client="aiohttp")
            await backend.open()
            try:
                assert backend._direct is None
                return await measure_request(backend, _req(4), "s", 0, 10.0)
            finally:
                await backend.close()

    record = asyncio.run(go())
    assert record.ok and record.output_tokens == 4, record.error_message
