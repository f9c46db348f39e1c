"""`--label KEY=VALUE` (repeatable, or a `label` table in --config), `--format` and the
dataset flags: settings made from the one table, checked at the edge."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from harness.config import settings as S
from harness.errors import UserError
from harness.format import render_md


def parse(argv: list[str]) -> S.BenchSettings:
    p = argparse.ArgumentParser()
    S.add_arguments(p)
    return S.from_args(p.parse_args(argv))


def test_repeated_labels_make_one_table() -> None:
    s = parse(["--label", "team=infra", "--label", "gpu = none", "--label", "note=a=b"])
    assert s.label == {"team": "infra", "gpu": "none", "note": "a=b"}
    assert s.given()["label"] == s.label


def test_config_labels_merge_with_flags_flags_win(tmp_path: Path) -> None:
    config = tmp_path / "bench.toml"
    config.write_text('label = { team = "infra", site = "lab" }\n', encoding="utf-8")
    s = parse(["--config", str(config), "--label", "team=ml"])
    assert s.label == {"team": "ml", "site": "lab"}


@pytest.mark.parametrize("value,words", [
    ("team", "--label takes KEY=VALUE"),
    ("=x", "label key '' must be"),
    ("my key=x", "label key 'my key' must be"),
    ("api_key=abc", "looks like a credential"),
])
def test_bad_labels_are_refused(value: str, words: str) -> None:
    with pytest.raises(UserError, match=words):
        parse(["--label", value])


def test_format_and_dataset_flags() -> None:
    s = parse(["--format", "md", "--dataset", "p.jsonl", "--dataset-sample", "first",
               "--dataset-seed", "7"])
    assert (s.format, s.dataset, s.dataset_sample, s.dataset_seed) == ("md", "p.jsonl",
                                                                       "first", 7)
    with pytest.raises(SystemExit):
        parse(["--format", "xml"])


def test_markdown_table() -> None:
    text = render_md(["scenario", "out tok/s", "note"], [["a|b", 1234.5, None], ["c", 2.25, "x"]])
    assert text.splitlines() == [
        "| scenario | out tok/s | note |",
        "|---|---:|---|",
        "| a\\|b | 1,234 | - |",
        "| c | 2.2 | x |",
    ]
