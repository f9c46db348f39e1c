"""Requests for a scenario: deterministic prompts sized in tokens (`PromptFactory`)."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from typing import Any

from backends.base import Request
from workloads.prompts import LONG_ANSWER_INSTRUCTION, synthesize_prompt, unique_prefix
from workloads.spec import Scenario, Workload


def _seed_for(*parts: Any) -> int:
    return int.from_bytes(hashlib.sha256(":".join(map(str, parts)).encode()).digest()[:8], "big")


class PromptFactory:
    """Deterministic requests for a scenario: length and text depend only on the seed,
    the workload, the scenario, the repetition (or 'warmup') and the request index."""

    def __init__(self, workload: Workload, scenario: Scenario,
                 count_prompt_tokens: Callable[[str], int]) -> None:
        self.workload, self.scenario = workload, scenario
        self.count = count_prompt_tokens

    def make(self, repetition: int | str, index: int, point: Any) -> Request:
        s = self.scenario
        rng = random.Random(_seed_for(self.workload.seed, self.workload.name, s.name,
                                      repetition, index))
        target = s.input_tokens.sample(rng, 1)[0]
        tag = f"{point.label} {repetition}"
        prefix = unique_prefix(self.workload.seed, self.workload.name, f"{s.name} {tag}",
                               0, index)
        if s.long_answer:
            prefix = LONG_ANSWER_INSTRUCTION + prefix
        prompt, actual = synthesize_prompt(self.count, target, rng, prefix)
        return Request(
            request_id=f"{s.name}/{point.label}/{repetition}/{index}",
            prompt=prompt,
            input_tokens=actual,
            max_output_tokens=s.output_tokens,
            force_output_length=not s.long_answer,
            chat=s.chat,
        )
