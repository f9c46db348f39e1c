"""Output length: every request records the stream's finish_reason and whether it fell
short of its target; for endpoints the harness did not start the `openai` backend
probes once at open() whether `ignore_eos` / `min_tokens` are honoured and uses what
works. Against the project's fake SSE server (loopback), in its length modes."""

from __future__ import annotations

import asyncio
import json

import pytest

from backends.base import Request
from backends.openai.backend import PROBE_TOKENS, OpenAIBackend, config_from_settings
from harness.config.settings import bench_settings
from harness.runner.load import measure_request
from harness.servers.fake import FakeOpenAIServer, FakeTiming


async def _open_and_measure(timing: FakeTiming, n_out: int = 12, **config):
    async with FakeOpenAIServer(timing) as server:
        cfg = config_from_settings(bench_settings({"model": timing.model,
                                                   "base_url": server.base_url, **config}))
        backend = OpenAIBackend(**cfg)
        info = await backend.open()
        try:
            record = await measure_request(backend, Request("r", "one two", 2, n_out), "s",
                                           0, 10.0)
        finally:
            await backend.close()
        return info, record, server.state.requests


def run(timing: FakeTiming, **kw):
    return asyncio.run(_open_and_measure(timing, **kw))


def test_a_server_that_honours_both_fields_is_asked_with_both():
    info, record, served = run(FakeTiming(ttft_ms=1, itl_ms=0, stop_after=3))
    assert info.settings["force_length"] == "both"
    probe = info.settings["force_length_probe"]
    assert f"ignore_eos: {PROBE_TOKENS}/{PROBE_TOKENS} tokens" in probe
    assert f"min_tokens: {PROBE_TOKENS}/{PROBE_TOKENS} tokens" in probe
    assert served == 3  # two probes, then the request
    assert record.output_tokens == 12 and record.finish_reason == "length"
    assert record.short_output is False


def test_a_server_that_ignores_the_fields_is_flagged_short():
    info, record, _ = run(FakeTiming(ttft_ms=1, itl_ms=0, stop_after=3, honours=()))
    assert info.settings["force_length"] == "none"
    assert info.settings["output_length_forced"] is False
    assert "ignore_eos: 3/16 tokens (finish_reason stop): not honoured" in \
        info.settings["force_length_probe"]
    assert record.ok and record.output_tokens == 3 and record.finish_reason == "stop"
    assert record.target_output_tokens == 12 and record.short_output is True
    line = json.loads(json.dumps(record.to_json()))
    assert line["finish_reason"] == "stop" and line["short_output"] is True


def test_only_the_honoured_field_is_used():
    info, record, _ = run(FakeTiming(ttft_ms=1, itl_ms=0, stop_after=3,
                                     honours=("min_tokens",)))
    assert info.settings["force_length"] == "min_tokens"
    assert record.output_tokens == 12 and not record.short_output


def test_a_rejected_field_is_not_honoured_and_never_sent():
    # A hosted API answers unknown fields with HTTP 400.
    timing = FakeTiming(ttft_ms=1, itl_ms=0, stop_after=3, rejects=("ignore_eos",))
    info, record, _ = run(timing)
    assert info.settings["force_length"] == "min_tokens"
    assert "ignore_eos: http_400" in info.settings["force_length_probe"]
    assert record.ok and record.output_tokens == 12


def test_a_setting_skips_the_probe():
    info, record, served = run(FakeTiming(ttft_ms=1, itl_ms=0, stop_after=3),
                               force_length="none")
    assert info.settings["force_length"] == "none"
    assert info.settings["force_length_probe"].startswith("not probed")
    assert served == 1 and record.short_output is True


@pytest.mark.parametrize("chat", [False, True])
def test_finish_reason_comes_from_the_final_chunk(chat: bool):
    async def go():
        async with FakeOpenAIServer(FakeTiming(ttft_ms=1, itl_ms=0)) as server:
            backend = OpenAIBackend(model="fake-model", base_url=server.base_url,
                                    include_usage=False)
            await backend.open()
            try:
                return await measure_request(backend, Request("c", "hi", 1, 4, chat=chat),
                                             "s", 0, 10.0)
            finally:
                await backend.close()
    record = asyncio.run(go())
    # No usage requested: N_out from the events, the finish reason still recorded.
    assert record.finish_reason == "length" and record.token_count_source == "events"
    assert record.end_ns is not None and record.end_ns >= record.completed_ns
