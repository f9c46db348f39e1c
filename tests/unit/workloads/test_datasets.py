"""Prompts from datasets: JSONL, ShareGPT JSON and Hugging Face datasets read through the
real loaders (files made here), sampling, lengths, and one-line errors naming the file,
the line and the fix."""

from __future__ import annotations

import json
from pathlib import Path

import datasets as hf
import pytest

from harness.errors import UserError
from harness.runner.options import SweepPoint
from workloads.datasets import load_dataset, resolve_source
from workloads.requests import PromptFactory
from workloads.spec import Scenario, TokenDist, Workload, context_tokens, parse_workload


def word_counter(text: str) -> int:
    """A stand-in tokenizer: one token per whitespace-separated piece, plus BOS."""
    return len(text.split()) + 1


def write_jsonl(path: Path, objs: list[object]) -> Path:
    path.write_text("".join(json.dumps(o) + "\n" for o in objs), encoding="utf-8")
    return path


CHAT = {"messages": [{"role": "system", "content": "Be brief."},
                     {"role": "user", "content": "What is a KV cache?"},
                     {"role": "assistant", "content": "A cache of keys and values per layer."}]}


def test_jsonl_prompts_chats_and_lengths(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "p.jsonl", [
        {"prompt": "Explain prefill.", "output_tokens": 64, "id": 7},
        CHAT,
        {"prompt": "What is TTFT?"},
    ])
    data = load_dataset(str(path))
    assert data.kind == "jsonl" and len(data.prompts) == 3
    first, chat, plain = data.prompts
    assert (first.prompt, first.output_tokens, first.where) == ("Explain prefill.", 64,
                                                                 f"{path}:1")
    # The assistant's last turn is the reference reply, not sent.
    assert chat.messages == (("system", "Be brief."), ("user", "What is a KV cache?"))
    assert chat.reply == "A cache of keys and values per layer."
    assert chat.prompt == "Be brief.\n\nWhat is a KV cache?"
    assert plain.output_tokens is None and not plain.gives_output_length


def test_blank_lines_are_skipped_and_lines_keep_their_numbers(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text('\n{"prompt": "a"}\n\n{"prompt": "b"}\n', encoding="utf-8")
    assert [p.where for p in load_dataset(str(path)).prompts] == [f"{path}:2", f"{path}:4"]


@pytest.mark.parametrize("text,line,words", [
    ('{"prompt": "ok"}\n{"prompt": "x",}\n', 2, "not valid JSON"),
    ('{"prompt": "ok"}\n["not", "an object"]\n', 2, "expected a JSON object"),
    ('{"text": "no prompt key"}\n', 1, "no 'prompt' or 'messages' (keys: text)"),
    ('{"prompt": ""}\n', 1, "'prompt' must be non-empty text"),
    ('{"prompt": "a", "output_tokens": 0}\n', 1, "'output_tokens' must be an integer >= 1"),
    ('{"prompt": "a", "output_tokens": "64"}\n', 1, "'output_tokens' must be an integer"),
    ('{"messages": [{"role": "system", "content": "x"}]}\n', 1, "has no user turn"),
    ('{"messages": [{"role": "user"}]}\n', 1, "messages[1] needs 'role' and 'content'"),
    ('{"messages": []}\n', 1, "'messages' must be a non-empty list"),
])
def test_malformed_jsonl_names_file_and_line(tmp_path: Path, text: str, line: int,
                                             words: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(UserError) as err:
        load_dataset(str(path))
    message = str(err.value)
    assert message.startswith(f"{path}:{line}: ") and words in message
    assert "\n" not in message


@pytest.mark.parametrize("text", ["", "\n  \n"])
def test_empty_jsonl_says_what_to_write(tmp_path: Path, text: str) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(UserError, match=r"holds no prompts; write one JSON object per line"):
        load_dataset(str(path))


def test_missing_file_names_the_flag(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"dataset not found: .*nope.jsonl \(--dataset"):
        load_dataset(str(tmp_path / "nope.jsonl"))


def test_sharegpt_first_human_turn_and_its_reply(tmp_path: Path) -> None:
    path = tmp_path / "sg.json"
    path.write_text(
        "[\n"
        '  {"id": "a", "conversations": [{"from": "human", "value": "Tell a joke"},\n'
        '                                {"from": "gpt", "value": "Why did the chicken"}]},\n'
        '  {"id": "b", "conversations": [{"from": "gpt", "value": "orphan reply"}]},\n'
        '  {"id": "c",\n'
        '   "conversations": [{"from": "human", "value": "Summarize"},\n'
        '                     {"from": "gpt", "value": "Done."},\n'
        '                     {"from": "human", "value": "Again"}]}\n'
        "]\n", encoding="utf-8")
    data = load_dataset(str(path))
    assert data.kind == "sharegpt" and data.skipped == 1
    assert [(p.prompt, p.reply, p.where) for p in data.prompts] == [
        ("Tell a joke", "Why did the chicken", f"{path}:2"),
        ("Summarize", "Done.", f"{path}:5")]
    assert "1 skipped" in data.label("random", 0)


def test_json_array_of_prompt_records(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    path.write_text(json.dumps([{"prompt": "a b", "output_tokens": 3}, CHAT], indent=1),
                    encoding="utf-8")
    data = load_dataset(str(path))
    assert data.kind == "json" and data.prompts[0].output_tokens == 3
    assert data.prompts[1].messages[1] == ("user", "What is a KV cache?")


@pytest.mark.parametrize("text,words", [
    ('{"prompt": "a"}', ":1: a JSON dataset must be an array"),
    ('[\n {"prompt": "a"},\n {"prompt": }\n]', ":3: not valid JSON"),
    ('[\n {"conversations": []},\n {"x": 1}\n]', ":3: a ShareGPT item needs 'conversations'"),
    ('[\n {"prompt": "a"}\n', ": the JSON array is not closed"),
    ("[]", "holds no prompts (an empty array)"),
])
def test_malformed_json_names_file_and_line(tmp_path: Path, text: str, words: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(UserError) as err:
        load_dataset(str(path))
    assert str(err.value).startswith(str(path)) and words in str(err.value)


def test_hugging_face_saved_folder_and_parquet(tmp_path: Path) -> None:
    table = hf.Dataset.from_dict({"prompt": ["one two three", "four five"],
                                  "output_tokens": [5, 7], "source": ["x", "y"]})
    table.save_to_disk(str(tmp_path / "saved"))
    table.to_parquet(str(tmp_path / "p.parquet"))
    for source in (tmp_path / "saved", tmp_path / "p.parquet"):
        data = load_dataset(str(source))
        assert data.kind == "hf"
        assert [(p.prompt, p.output_tokens) for p in data.prompts] == [
            ("one two three", 5), ("four five", 7)]
        assert data.prompts[1].where == f"{source} row 2"


def test_hugging_face_dataset_dict_and_sharegpt_columns(tmp_path: Path) -> None:
    conv = [[{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello there"}],
            [{"from": "gpt", "value": "no question"}]]
    hf.DatasetDict({"train": hf.Dataset.from_dict({"conversations": conv})}).save_to_disk(
        str(tmp_path / "dd"))
    data = load_dataset(str(tmp_path / "dd"))
    assert [(p.prompt, p.reply) for p in data.prompts] == [("hi", "hello there")]
    assert data.skipped == 1


def test_hugging_face_missing_column_names_the_columns(tmp_path: Path) -> None:
    hf.Dataset.from_dict({"text": ["a"], "label": [1]}).to_parquet(str(tmp_path / "t.parquet"))
    with pytest.raises(UserError, match=r"no 'prompt', 'messages' or 'conversations' column "
                                        r"\(columns: text, label\); rename"):
        load_dataset(str(tmp_path / "t.parquet"))


def test_random_sample_is_seeded_first_is_file_order(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "p.jsonl", [{"prompt": f"p{i}"} for i in range(20)])
    data = load_dataset(str(path))
    first = [data.pick(i, "first", 0).prompt for i in range(5)]
    assert first == ["p0", "p1", "p2", "p3", "p4"]
    a = [data.pick(i, "random", 3).prompt for i in range(20)]
    assert a == [data.pick(i, "random", 3).prompt for i in range(20)]  # same seed
    assert sorted(a) == sorted(f"p{i}" for i in range(20))  # a permutation
    assert a != [data.pick(i, "random", 4).prompt for i in range(20)]  # another seed
    assert a != [f"p{i}" for i in range(20)]
    # More requests than entries: they wrap around.
    assert data.pick(20, "first", 0).prompt == "p0"


def _scenario(source: str, **kw: object) -> Scenario:
    fields = {"name": "s", "input_tokens": TokenDist("fixed", mean=0, min=0, max=0),
              "output_tokens": 32, "dataset": source, "requests": 4, **kw}
    return Scenario(**fields)  # type: ignore[arg-type]


def test_factory_sends_dataset_prompts_with_fresh_prefixes(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "p.jsonl", [
        {"prompt": "Explain prefill in detail.", "output_tokens": 64},
        CHAT,
        {"prompt": "What is TTFT?"},
    ])
    scenario = _scenario(str(path), dataset_sample="first")
    workload = Workload("w", path, "", 1, (scenario,))
    point = SweepPoint(concurrency=1)
    run1 = PromptFactory(workload, scenario, word_counter, run_id="run-1")
    run2 = PromptFactory(workload, scenario, word_counter, run_id="run-2")
    given, chat, plain = (run1.make(0, i, point) for i in range(3))
    # Output length from the dataset, forced; else the reply's tokens; else the scenario's.
    assert (given.max_output_tokens, given.force_output_length) == (64, True)
    assert chat.max_output_tokens == word_counter("A cache of keys and values per layer.")
    assert chat.force_output_length and chat.chat
    assert (plain.max_output_tokens, plain.chat) == (32, False)
    # The text is the dataset's after a unique prefix; its length is measured.
    assert given.prompt.endswith("Explain prefill in detail.")
    assert given.input_tokens == word_counter(given.prompt)
    assert chat.messages[0][1].endswith("Be brief.") and chat.messages[1:] == (
        ("user", "What is a KV cache?"),)
    assert chat.input_tokens == word_counter(chat.prompt)
    # Fresh bytes for every run and request; the same entries for every repetition.
    assert run2.make(0, 0, point).prompt != given.prompt
    assert run1.make(1, 0, point).prompt != given.prompt
    assert run1.make(1, 0, point).prompt.endswith("Explain prefill in detail.")
    assert run1.make(0, 0, point) == given  # deterministic
    cols = run1.row_columns()
    assert cols["input_tokens_target"] is None and cols["output_tokens_target"] is None
    assert cols["dataset"].startswith(f"{path} (jsonl, 3 prompts; first entries")
    assert run1.reuse_note(3) is None
    assert "the dataset has 3 prompts; the 8 requests" in run1.reuse_note(8)


def test_workload_key_dataset_relative_to_the_file(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    write_jsonl(tmp_path / "data" / "p.jsonl", [{"prompt": "x " * 300, "output_tokens": 700}])
    toml = tmp_path / "w.toml"
    text = ('seed = 5\n[[scenarios]]\nname = "real"\ndataset = "data/p.jsonl"\n'
            'output_tokens = 16\nrequests = 2\n')
    workload = parse_workload(text, toml)
    s = workload.scenarios[0]
    assert s.dataset == str((tmp_path / "data" / "p.jsonl").resolve())
    assert (s.dataset_sample, s.dataset_seed) == ("random", None)
    # The context fits the dataset's longest prompt (bytes bound) and output.
    assert context_tokens(workload) >= 600 + 700


@pytest.mark.parametrize("extra,words", [
    ('dataset = "missing.jsonl"\n', "w.toml:4: dataset not found"),
    ('dataset = "p.jsonl"\ndataset_sample = "all"\n', "w.toml:5: 'dataset_sample' must be "
                                                      "random or first"),
    ('', "needs 'input_tokens'"),  # without a dataset, input_tokens is still required
])
def test_workload_dataset_errors(tmp_path: Path, extra: str, words: str) -> None:
    write_jsonl(tmp_path / "p.jsonl", [{"prompt": "x"}])
    text = '[[scenarios]]\nname = "a"\noutput_tokens = 4\n' + extra
    with pytest.raises(UserError) as err:
        parse_workload(text, tmp_path / "w.toml")
    assert words in str(err.value)


def test_resolve_source_keeps_hub_ids(tmp_path: Path) -> None:
    assert resolve_source("hf:owner/name:test") == "hf:owner/name:test"
    assert resolve_source("p.jsonl", tmp_path) == str(tmp_path / "p.jsonl")
