"""How many parallel slots a managed llama-server gets: --concurrency auto sweeps up to its
cap, so the server is started with that many slots (not a crash on the word)."""

from __future__ import annotations

from harness.config.settings import bench_settings
from harness.servers.llama_server import parallel_slots


def test_concurrency_auto_gets_the_sweep_cap_as_slots():
    assert parallel_slots(bench_settings({"concurrency": "auto"}))[0] == 64
    n, why = parallel_slots(bench_settings({"concurrency": "auto", "max_concurrency": 16}))
    assert n == 16 and "--max-concurrency" in why


def test_a_concurrency_list_gets_its_largest():
    assert parallel_slots(bench_settings({"concurrency": (1, 4, 8)})) == (
        8, "largest --concurrency")
