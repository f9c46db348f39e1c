"""Prompt synthesis: deterministic, unique per request, exact token counts."""

import random

from workloads.prompts import synthesize_prompt, unique_prefix


def word_counter(text: str) -> int:
    """A stand-in tokenizer: one token per whitespace-separated piece, plus BOS."""
    return len(text.split()) + 1


def test_exact_length_and_deterministic():
    for target in (5, 17, 128, 1000):
        a = synthesize_prompt(word_counter, target, random.Random(7), "[x] ")
        b = synthesize_prompt(word_counter, target, random.Random(7), "[x] ")
        assert a == b
        assert a[1] == target == word_counter(a[0])


def test_unique_prefix_differs_per_request_and_is_stable():
    p = {unique_prefix(1, "w", "s", rep, i) for rep in range(3) for i in range(50)}
    assert len(p) == 150
    assert unique_prefix(1, "w", "s", 0, 0) == unique_prefix(1, "w", "s", 0, 0)
    assert unique_prefix(1, "w", "s", 0, 0) != unique_prefix(2, "w", "s", 0, 0)
