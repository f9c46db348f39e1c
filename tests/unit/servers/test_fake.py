"""The fake OpenAI server's fault modes, each through the real `openai` backend on
loopback: every request ends as the error class `FAULTS` names; modes under
`/f/a+b/v1` cycle request by request; what the server counts and logs. (The same modes
through the `harness bench` command line: tests/integration/test_faults.py.)"""

from __future__ import annotations

import asyncio

import pytest

from backends.base import Request
from backends.openai.backend import OpenAIBackend
from harness.runner.load import measure_request
from harness.servers.fake import FAULTS, FakeOpenAIServer, FakeTiming, main

TIMING = FakeTiming(model="m", ttft_ms=1, itl_ms=1)
TIMEOUT_S = 1.0  # hang and trickle end as timeouts after this; nothing else comes near it
STALL_S = 0.5  # stall: silence after the first chunks


async def _measure(server: FakeOpenAIServer, base_url: str, mode: str, i: int):
    backend = OpenAIBackend(model="m", base_url=base_url)
    await backend.open()
    try:
        slow = mode in ("hang", "trickle")
        return await measure_request(
            backend, Request(f"r{i}", "one two three", 3, 6), "s", 0,
            TIMEOUT_S if slow else 30.0, stall_timeout_s=STALL_S if mode == "stall" else None)
    finally:
        await backend.close()


def test_every_fault_mode_ends_as_its_error_class() -> None:
    async def go():
        async with FakeOpenAIServer(TIMING) as server:
            records = await asyncio.gather(*(
                _measure(server, server.fault_url(mode), mode, i)
                for i, mode in enumerate(FAULTS)))
            return records, dict(server.state.served)

    records, served = asyncio.run(go())
    got = {mode: r.error for mode, r in zip(FAULTS, records)}
    assert got == FAULTS, [(m, r.error_message) for m, r in zip(FAULTS, records)]
    assert served == {mode: 1 for mode in FAULTS}
    by_mode = dict(zip(FAULTS, records))
    assert by_mode["healthy"].ok and by_mode["healthy"].output_tokens == 6
    assert by_mode["stall"].event_ns, "a stall comes after the first tokens"
    assert "request had Authorization: Bearer" in by_mode["http401"].error_message


def test_modes_cycle_request_by_request_and_plain_v1_uses_the_default_mode() -> None:
    async def go():
        timing = FakeTiming(model="m", ttft_ms=1, itl_ms=1, mode="http500")
        async with FakeOpenAIServer(timing) as server:
            url = server.fault_url("http500", "healthy")
            cycled = [await _measure(server, url, "", i) for i in range(4)]
            plain = await _measure(server, server.base_url, "", 9)
            return cycled, plain, dict(server.state.served)

    cycled, plain, served = asyncio.run(go())
    assert [r.error for r in cycled] == ["http_5xx", None, "http_5xx", None]
    assert plain.error == "http_5xx"
    assert served == {"http500": 3, "healthy": 2}


def test_requests_are_logged_with_their_authorization_when_asked(capsys) -> None:
    async def go():
        async with FakeOpenAIServer(FakeTiming(model="m", ttft_ms=1, itl_ms=1,
                                               log_requests=True)) as server:
            record = await _measure(server, server.base_url, "healthy", 0)
            return record, server.state.authorization_seen

    record, seen = asyncio.run(go())
    assert record.ok and len(seen) == 1 and seen[0].startswith("Bearer ")
    assert f"POST /v1/completions authorization={seen[0]}" in capsys.readouterr().out


def test_unknown_modes_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown fault mode 'nope'; known: healthy, hang"):
        FakeOpenAIServer(TIMING).fault_url("healthy", "nope")
    with pytest.raises(ValueError, match="unknown fault mode 'nope'"):
        FakeOpenAIServer(FakeTiming(mode="nope"))
    with pytest.raises(SystemExit) as exc:
        main(["--mode", "healthy+nope"])
    assert exc.value.code == 2
