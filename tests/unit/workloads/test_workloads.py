"""Workload TOML parsing: built-ins load, bad keys and types name file, key and line."""

import random
from pathlib import Path

import pytest

from harness.errors import UserError
from workloads.spec import builtin_names, load_workload, parse_workload


def test_builtins_load():
    names = builtin_names()
    assert {"smoke", "default", "chat", "rag", "long-context"} <= set(names)
    for name in names:
        w = load_workload(name)
        assert w.scenarios, name
    default = load_workload("default")
    assert [s.name for s in default.scenarios] == ["pp512", "tg128", "chat-short"]
    assert default.scenarios[0].input_tokens.nominal == 512


def test_defaults_merge_and_distribution():
    w = parse_workload("""
seed = 3
[defaults]
repetitions = 2
concurrency = [1, 4]
[[scenarios]]
name = "a"
input_tokens = { dist = "uniform", min = 10, max = 20 }
output_tokens = 8
""", Path("w.toml"))
    s = w.scenarios[0]
    assert s.repetitions == 2 and s.concurrency == (1, 4)
    lengths = s.input_tokens.sample(random.Random(1), 200)
    assert min(lengths) >= 10 and max(lengths) <= 20
    assert s.input_tokens.sample(random.Random(1), 5) == s.input_tokens.sample(
        random.Random(1), 5)


BAD = [
    ("[[scenarios]]\nname='a'\ninput_tokens=10\noutput_tokens=5\nconcurency=2\n",
     "w.toml:5: unknown key 'concurency'. Did you mean 'concurrency'?"),
    ("[[scenarios]]\nname='a'\ninput_tokens='ten'\noutput_tokens=5\n",
     "w.toml:3: 'input_tokens' must be int or table, got str 'ten'"),
    ("[[scenarios]]\nname='a'\ninput_tokens=10\noutput_tokens=0\n",
     "w.toml:4: 'output_tokens' must be an integer >= 1, got 0"),
    ("seeds = 1\n[[scenarios]]\nname='a'\ninput_tokens=1\noutput_tokens=1\n",
     "w.toml:1: unknown top-level key 'seeds'. Did you mean 'seed'?"),
    ("[[scenarios]]\nname='a'\ninput_tokens=10\n", "scenario 'a' needs 'output_tokens'"),
    ("x = [\n", "w.toml: not valid TOML"),
    ("description = 'no scenarios'\n", "needs at least one [[scenarios]]"),
    ("[[scenarios]]\nname='a'\ninput_tokens=1\noutput_tokens=1\nchat=1\n",
     "w.toml:5: 'chat' must be bool, got int 1"),
]


@pytest.mark.parametrize("text,message", BAD)
def test_bad_workloads_give_one_clear_line(text, message):
    with pytest.raises(UserError) as err:
        parse_workload(text, Path("w.toml"))
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_unknown_workload_name_suggests_nearest():
    with pytest.raises(UserError, match="Did you mean 'smoke'"):
        load_workload("smok")
