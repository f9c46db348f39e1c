"""Fresh prompt bytes per run (the run id in each prompt's unique prefix), a deliberate
shared prefix (`shared_prefix_tokens`), and closed-loop requests scaled with the
number of streams (`requests_per_stream`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.errors import UserError
from harness.runner.options import SweepPoint
from harness.runner.runner import new_run_id
from workloads.requests import PromptFactory
from workloads.spec import load_workload, parse_workload


def words(text: str) -> int:
    """A stand-in tokenizer: one token per whitespace-separated piece."""
    return max(1, len(text.split()))


def prompts(run_id: str, workload: str = "default") -> list[str]:
    w = load_workload(workload)
    out = []
    for scenario in w.scenarios:
        factory = PromptFactory(w, scenario, words, run_id)
        point = SweepPoint(concurrency=4)
        out += [factory.make(rep, i, point).prompt for rep in (0, 1) for i in range(3)]
        out.append(factory.make("warmup", 0, point).prompt)
    return out


def test_two_runs_of_the_same_workload_send_different_prompt_bytes():
    first, second = new_run_id(), new_run_id()
    assert first != second
    a, b = prompts(first), prompts(second)
    assert len(a) == len(b) and all(x != y for x, y in zip(a, b))
    # ... yet the same sizes: only the bytes depend on the run.
    assert [words(x) for x in a] == [words(y) for y in b]


def test_the_same_run_id_gives_the_same_bytes():
    run_id = new_run_id()
    assert prompts(run_id) == prompts(run_id)
    assert prompts(run_id, "chat") == prompts(run_id, "chat")


def test_every_request_of_a_run_has_its_own_prefix():
    got = prompts(new_run_id())
    firsts = [p.split()[0] for p in got]
    assert len(set(firsts)) == len(firsts)


SHARED = """
seed = 3
[[scenarios]]
name = "rag"
input_tokens = 120
output_tokens = 8
requests = 4
shared_prefix_tokens = 80
"""


def test_a_shared_prefix_is_common_to_the_scenario_and_fresh_per_run(tmp_path: Path):
    w = parse_workload(SHARED, tmp_path / "w.toml", "w")
    (scenario,) = w.scenarios
    assert scenario.shared_prefix_tokens == 80
    point = SweepPoint(concurrency=1)
    run_a = PromptFactory(w, scenario, words, "run-a")
    made = [run_a.make(0, i, point) for i in range(4)] + [run_a.make("warmup", 0, point)]
    shared = run_a.shared_prefix()
    assert words(shared) == 80
    for request in made:
        assert request.prompt.startswith(shared)
        assert request.input_tokens == 120 == words(request.prompt)
    assert len({r.prompt[len(shared):].split()[0] for r in made}) == len(made)
    run_b = PromptFactory(w, scenario, words, "run-b")
    assert run_b.shared_prefix() != shared  # no cache of run a serves run b
    assert PromptFactory(w, scenario, words, "run-a").shared_prefix() == shared


def test_without_a_shared_prefix_prompts_share_nothing_at_their_start(tmp_path: Path):
    w = parse_workload(SHARED.replace("shared_prefix_tokens = 80", ""), tmp_path / "w.toml")
    factory = PromptFactory(w, w.scenarios[0], words, "r")
    assert factory.shared_prefix() == ""
    a, b = (factory.make(0, i, SweepPoint(1)).prompt for i in range(2))
    assert a.split()[0] != b.split()[0]


@pytest.mark.parametrize("text, message", [
    (SHARED.replace("= 80", "= 120"), "must be below the shortest prompt (120"),
    (SHARED.replace("= 80", "= -1"), "'shared_prefix_tokens' must be an integer >= 0"),
    (SHARED + "requests_per_stream = -2\n", "'requests_per_stream' must be an integer >= 0"),
])
def test_bad_keys_name_the_file_and_line(tmp_path: Path, text: str, message: str):
    with pytest.raises(UserError) as err:
        parse_workload(text, tmp_path / "w.toml")
    assert message in str(err.value) and "w.toml:" in str(err.value)


def test_closed_loop_requests_scale_with_the_streams(tmp_path: Path):
    w = parse_workload(SHARED, tmp_path / "w.toml")
    s = w.scenarios[0]  # requests = 4, requests_per_stream default 2
    assert [s.requests_at(c) for c in (1, 2, 4, 8, 64)] == [4, 4, 8, 16, 128]
    one = parse_workload(SHARED.replace("requests = 4", "requests = 1"), tmp_path / "one.toml")
    assert [one.scenarios[0].requests_at(c) for c in (1, 2, 3)] == [1, 4, 6]  # one stream: as given
    exact = parse_workload(SHARED + "requests_per_stream = 0\n", tmp_path / "w.toml")
    assert exact.scenarios[0].requests_at(8) == 4
    timed = parse_workload(SHARED.replace("requests = 4", "duration_s = 5"),
                           tmp_path / "w.toml")
    assert timed.scenarios[0].requests_at(8) is None


def test_every_built_in_workload_gives_each_stream_two_requests():
    for name in ("smoke", "default", "chat", "rag", "long-context"):
        for s in load_workload(name).scenarios:
            for c in (1, 4, 8, 32):
                assert s.requests_at(c) >= 2 * c
