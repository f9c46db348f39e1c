"""The `openai` backend against the project's local SSE server (loopback, no model):
usage and its fallbacks, multi-token chunks, error classes, bad input, SSE parsing."""

from __future__ import annotations

import asyncio

import pytest

from backends.base import Endpoint, Request, RequestError
from backends.openai.backend import (
    ChunkParser,
    OpenAIBackend,
    config_from_settings,
    is_loopback,
    public_url,
)
from harness.analysis.prices import api_price
from harness.config.settings import bench_settings
from harness.errors import UserError
from harness.metrics import cost_usd, scenario_summary
from harness.models.resolve import default_model
from harness.runner.load import measure_request
from harness.servers.fake import FakeOpenAIServer, FakeTiming


def run(coro):
    return asyncio.run(coro)


async def _measure(timing: FakeTiming, request: Request, **config):
    async with FakeOpenAIServer(timing) as server:
        backend = OpenAIBackend(model=timing.model, base_url=server.base_url, **config)
        await backend.open()
        try:
            return await measure_request(backend, request, "s", 0, 10.0)
        finally:
            await backend.close()


def _req(n_out: int = 6, **extra) -> Request:
    return Request("r0", "one two three", 3, n_out, extra=extra)


# --- usage and its fallbacks -------------------------------------------------------------

def test_usage_from_the_stream_is_used_and_priced():
    timing = FakeTiming(ttft_ms=1, itl_ms=0, model="gpt-4o-mini")
    record = run(_measure(timing, _req(6)))
    assert record.ok and record.token_count_source == "engine"
    assert record.output_tokens == 6 and record.input_tokens == 3
    # gpt-4o-mini is in the catalog at $0.15 in / $0.60 out per million tokens; the
    # bench command looks the price up once and the metrics price the tokens.
    price = api_price("gpt-4o-mini")
    assert price == (0.15, 0.60)
    summary = scenario_summary([record], price_usd_per_mtok=price)
    assert summary["api_cost_usd"] == pytest.approx((3 * 0.15 + 6 * 0.60) / 1e6)
    assert scenario_summary([record])["api_cost_usd"] is None


def test_no_usage_and_no_tokenizer_counts_events():
    timing = FakeTiming(ttft_ms=1, itl_ms=0, send_usage=False, tokens_per_chunk=2)
    record = run(_measure(timing, _req(7)))
    assert record.ok and record.token_count_source == "events"
    assert record.output_tokens == 4  # four chunks; without a tokenizer one token each


@pytest.mark.slow  # loads the default model's vocabulary (assembled on first use)
def test_no_usage_with_a_tokenizer_counts_the_text():
    timing = FakeTiming(ttft_ms=1, itl_ms=0, send_usage=False, tokens_per_chunk=2)
    record = run(_measure(timing, _req(7), tokenizer=str(default_model())))
    assert record.ok and record.token_count_source == "tokenizer"
    assert record.output_tokens == 7  # " the cat sat on a mat and": 7 Gemma tokens
    assert record.event_tokens == [2, 2, 2, 1]


def test_usage_not_requested_when_disabled():
    timing = FakeTiming(ttft_ms=1, itl_ms=0)
    record = run(_measure(timing, _req(3), include_usage=False))
    assert record.token_count_source == "events"


# --- chunks carrying several tokens ------------------------------------------------------

def test_multi_token_chunks_spread_their_gap_over_their_tokens():
    # 3 tokens per chunk every 3 x 20 ms: every token gap is ~20 ms, not 60 ms and zeros.
    timing = FakeTiming(ttft_ms=5, itl_ms=20, tokens_per_chunk=3)
    record = run(_measure(timing, _req(9, fake_logprobs=True)))
    assert record.ok and record.event_tokens == [3, 3, 3]
    assert record.output_tokens == 9  # usage
    itl = record.itl_ms
    assert len(itl) == 8  # N_out - 1
    assert itl[:2] == [0.0, 0.0]  # the first chunk's extra tokens arrived with it
    assert all(15 <= g <= 60 for g in itl[2:])
    assert sum(itl) == pytest.approx(record.e2e_ms - record.ttft_ms, rel=1e-6)
    assert record.tpot_ms == pytest.approx((record.e2e_ms - record.ttft_ms) / 8)


def test_chat_endpoint_streams_deltas():
    timing = FakeTiming(ttft_ms=1, itl_ms=0, tokens_per_chunk=2)
    async def go():
        async with FakeOpenAIServer(timing) as server:
            backend = OpenAIBackend(model="fake-model", base_url=server.base_url)
            await backend.open()
            events = [e async for e in backend.stream(
                Request("c", "hi", 1, 4, chat=True, extra={"fake_logprobs": True}))]
            await backend.close()
            return events
    events = run(go())
    assert "".join(e.text for e in events) == " the cat sat on"
    assert [e.n_tokens for e in events] == [2, 2, 0]
    assert events[-1].usage is not None and events[-1].usage.output_tokens == 4


def test_chunk_parser_handles_split_events_crlf_comments_and_done():
    parser = ChunkParser(chat=False)
    data = (b': ping\r\n\r\ndata: {"choices":[{"text":"ab","finish_reason":null}]}\r\n\r\n'
            b'data: {"choices":[{"text":"c","logprobs":{"tokens":["c"]},'
            b'"finish_reason":"length"}]}\n\ndata: {"choices":[],"usage":'
            b'{"prompt_tokens":2,"completion_tokens":3}}\n\ndata: [DONE]\n\n')
    out = []
    for i in range(0, len(data), 7):  # arrives in 7-byte pieces
        out += parser.feed(data[i:i + 7])
    assert out == [("ab", 1), ("c", 1)]
    assert parser.finished and parser.done
    assert parser.usage == {"prompt_tokens": 2, "completion_tokens": 3}


def test_chunk_parser_rejects_bad_chunks():
    with pytest.raises(RequestError) as err:
        ChunkParser(chat=True).feed(b"data: [1, 2]\n\n")
    assert err.value.kind == "bad_response"
    with pytest.raises(RequestError) as err:
        ChunkParser(chat=True).feed(b'data: {"error": {"message": "overloaded"}}\n\n')
    assert err.value.kind == "stream_error" and "overloaded" in str(err.value)


# --- errors per request: classified, recorded, the run goes on --------------------------

@pytest.mark.parametrize("extra,kind", [
    ({"fake_status": 401}, "http_401"),
    ({"fake_status": 429}, "http_429"),
    ({"fake_status": 500}, "http_5xx"),
    ({"fake_status": 503}, "http_5xx"),
    ({"fake_cut_after": 2}, "stream_cut"),
    ({"fake_no_finish": True}, "stream_cut"),
    ({"fake_bad_json": True}, "bad_response"),
])
def test_request_errors_are_recorded_with_their_class(extra, kind):
    record = run(_measure(FakeTiming(ttft_ms=1, itl_ms=1), _req(5, **extra)))
    assert not record.ok and record.error == kind, record.error_message


def test_timeout_is_recorded():
    timing = FakeTiming(ttft_ms=3000, itl_ms=0)
    async def go():
        async with FakeOpenAIServer(timing) as server:
            backend = OpenAIBackend(model="fake-model", base_url=server.base_url)
            await backend.open()
            record = await measure_request(backend, _req(2), "s", 0, 0.3)
            await backend.close()
            return record
    record = run(go())
    assert record.error == "timeout"


def test_connection_refused_after_the_server_went_away():
    async def go():
        server = await FakeOpenAIServer(FakeTiming(ttft_ms=1, itl_ms=0)).start()
        backend = OpenAIBackend(model="fake-model", base_url=server.base_url)
        await backend.open()
        ok = await measure_request(backend, _req(2), "s", 0, 5.0)
        await backend.close()  # drop the kept-alive connection
        await server.stop()
        backend = OpenAIBackend(model="fake-model", base_url=server.base_url,
                                check_model=False)
        await backend.open()
        failed = await measure_request(backend, _req(2), "s", 0, 5.0)
        await backend.close()
        return ok, failed
    ok, failed = run(go())
    assert ok.ok
    assert failed.error == "connection"


# --- bad input: one line each ------------------------------------------------------------

def test_missing_key_variable_is_named_and_no_key_is_shown(monkeypatch):
    monkeypatch.delenv("HARNESS_TEST_MISSING_KEY", raising=False)
    with pytest.raises(UserError) as err:
        OpenAIBackend(model="m", base_url="https://api.example.com/v1",
                      api_key_env="HARNESS_TEST_MISSING_KEY")
    assert "HARNESS_TEST_MISSING_KEY" in str(err.value) and "\n" not in str(err.value)


def test_loopback_needs_no_key(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    backend = OpenAIBackend(model="m", base_url="http://127.0.0.1:9/v1")
    assert backend._api_key  # a dummy, so the client can be built


def test_key_is_sent_and_a_wrong_key_is_one_line(monkeypatch):
    monkeypatch.setenv("HARNESS_TEST_KEY", "sk-right-key-123456")
    async def go(key):
        monkeypatch.setenv("HARNESS_TEST_KEY", key)
        async with FakeOpenAIServer(FakeTiming(api_key="sk-right-key-123456")) as server:
            backend = OpenAIBackend(model="fake-model", base_url=server.base_url,
                                    api_key_env="HARNESS_TEST_KEY")
            try:
                await backend.open()
            finally:
                await backend.close()
    run(go("sk-right-key-123456"))
    with pytest.raises(UserError) as err:
        run(go("sk-wrong-key-999999"))
    text = str(err.value)
    assert "HTTP 401" in text and "HARNESS_TEST_KEY" in text and "999999" not in text


def test_wrong_base_url_is_one_line():
    async def go(path):
        async with FakeOpenAIServer(FakeTiming()) as server:
            url = server.base_url.removesuffix("/v1") + path
            await OpenAIBackend(model="fake-model", base_url=url).open()
    with pytest.raises(UserError) as err:  # served under /v1, asked without it
        run(go(""))
    assert "404" in str(err.value) and "/v1" in str(err.value)
    with pytest.raises(UserError) as err:  # nothing listens there
        run(OpenAIBackend(model="m", base_url="http://127.0.0.1:9/v1").open())
    assert "cannot connect" in str(err.value) and "--base-url" in str(err.value)


def test_model_not_served_lists_what_is():
    async def go():
        async with FakeOpenAIServer(FakeTiming(model="fake-model")) as server:
            await OpenAIBackend(model="fake-modle", base_url=server.base_url).open()
    with pytest.raises(UserError) as err:
        run(go())
    assert "'fake-modle' is not served" in str(err.value)
    assert "fake-model" in str(err.value)


# --- configuration ------------------------------------------------------------------------

def test_config_passes_extra_fields_and_forces_length_per_server_kind():
    cfg = config_from_settings(
        bench_settings({"model": "m", "engine": {"top_k": 1, "chat_format": "gemma",
                                                  "tokenizer": "x.gguf"}}),
        Endpoint(base_url="http://localhost:8000/v1/", model="m", kind="llama-cpp-python",
                 force_length="min_tokens"))
    assert cfg["base_url"] == "http://localhost:8000/v1"
    assert cfg["extra_body"] == {"top_k": 1}  # chat_format configures the server
    assert cfg["force_length"] == "min_tokens" and cfg["tokenizer"] == "x.gguf"
    backend = OpenAIBackend(**cfg)
    endpoint, args, extra = backend.request_body(Request("r", "p", 1, 12))
    assert endpoint == "completions" and args["max_tokens"] == 12
    assert args["stream_options"] == {"include_usage": True}
    assert extra == {"top_k": 1, "min_tokens": 12}
    _, _, extra = backend.request_body(Request("r", "p", 1, 12, force_output_length=False))
    assert extra == {"top_k": 1}
    hosted = config_from_settings(bench_settings({"model": "gpt-4o-mini",
                                                  "engine": {"ignore_eos": True}}))
    # an endpoint the harness did not start is probed at open() (auto)
    assert hosted["force_length"] == "auto" and hosted["extra_body"] == {"ignore_eos": True}
    vllm = Endpoint(base_url="http://127.0.0.1:1/v1", model="m", kind="vllm",
                    force_length="ignore_eos")
    assert config_from_settings(bench_settings({}), vllm)["force_length"] == "ignore_eos"


def test_config_rejects_bad_values():
    with pytest.raises(UserError, match="--model"):
        config_from_settings(bench_settings({}))
    with pytest.raises(UserError, match="--base-url"):
        config_from_settings(bench_settings({"model": "m", "base_url": "localhost:8000"}))
    with pytest.raises(UserError, match="force_length"):
        config_from_settings(bench_settings({"model": "m",
                                             "engine": {"force_length": "always"}}))


def test_url_helpers_and_cost():
    assert is_loopback("http://localhost:1/v1") and is_loopback("http://127.0.0.5/v1")
    assert is_loopback("http://[::1]:8000/v1") and not is_loopback("https://api.openai.com")
    assert public_url("https://user:pw@host:8443/v1?key=x") == "https://host:8443/v1"
    assert cost_usd((2.0, 8.0), 1000, 500) == pytest.approx(0.006)
    assert cost_usd(None, 1, 1) is None and cost_usd((1.0, 1.0), None, 5) is None


def test_chat_messages_from_a_dataset_are_sent_as_messages():
    backend = OpenAIBackend(model="m", base_url="http://127.0.0.1:1/v1", endpoint="chat")
    req = Request("r", "flat text", 3, 4, chat=True,
                  messages=(("system", "be brief"), ("user", "hello")))
    _, args, _ = backend.request_body(req)
    assert args["messages"] == [{"role": "system", "content": "be brief"},
                                {"role": "user", "content": "hello"}]
    _, args, _ = backend.request_body(Request("r", "plain", 1, 4, chat=True))
    assert args["messages"] == [{"role": "user", "content": "plain"}]
