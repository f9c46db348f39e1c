"""Deterministic prompt synthesis sized in tokens with the model's own tokenizer.

Each prompt starts with a unique prefix (a nonce hashed from the run id, seed, workload,
scenario, repetition and index), so no prefix cache in any engine, and no cache a server
or API kept from an earlier run, can skip its prefill; it continues with seeded
English-like filler grown or trimmed until the tokenizer counts exactly the requested
number of tokens (or the nearest it can reach). A scenario may put a deliberate common
prefix before the nonce (`shared_prefix_tokens`: a system prompt, a RAG document) to
measure caching on purpose; that prefix too is fresh per run.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable

from harness.models.words import WORDS

TokenCounter = Callable[[str], int]


LONG_ANSWER_INSTRUCTION = (
    "Write a very long, detailed essay that continues the following notes. Do not stop "
    "early; keep writing until you run out of space.\n\n"
)


def unique_prefix(seed: int, workload: str, scenario: str, repetition: int, index: int,
                  run_id: str = "") -> str:
    """A short tag that differs for every request and every run (`run_id`), and is stable
    for a given run id and seed."""
    key = f"{seed}:{workload}:{scenario}:{repetition}:{index}".encode()
    if run_id:
        key = f"{run_id}:".encode() + key
    digest = hashlib.sha256(key).digest()
    # Eight letters: short in any tokenizer, 26^8 values, so collisions are negligible.
    nonce = "".join(chr(ord("a") + b % 26) for b in digest[:8])
    return f"{nonce}: "


def synthesize_prompt(
    count_tokens: TokenCounter, target_tokens: int, rng: random.Random, prefix: str = ""
) -> tuple[str, int]:
    """A prompt of `target_tokens` tokens as counted by `count_tokens`.

    Returns (prompt, actual_tokens). The count is exact unless the prefix alone is
    longer than the target or the tokenizer cannot make a one-token step.
    """
    words: list[str] = []

    def text_of(ws: list[str]) -> str:
        return prefix + " ".join(ws)

    count = count_tokens(text_of(words))
    # Grow in batches sized from the remaining deficit: few tokenizer calls even for 8k.
    while count < target_tokens:
        deficit = target_tokens - count
        words.extend(rng.choice(WORDS) for _ in range(max(1, int(deficit * 0.7))))
        count = count_tokens(text_of(words))
    while count > target_tokens and words:
        words.pop()
        count = count_tokens(text_of(words))
    text = text_of(words)
    # Fill the last few tokens with short words; each usually adds exactly one token.
    for _ in range(64):
        if count >= target_tokens:
            break
        for filler in (" a", " I", ".", ","):
            trial = text + filler
            trial_count = count_tokens(trial)
            if trial_count <= target_tokens and trial_count > count:
                text, count = trial, trial_count
                break
        else:
            break
    return text, count
