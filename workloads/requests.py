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
    """Deterministic requests for a scenario: length and text depend only on the run id,
    the seed, the workload, the scenario, the repetition (or 'warmup') and the request
    index. Target lengths do not depend on the run id (the same workload asks for the
    same sizes on every run and machine); the bytes do, so a second run is never served
    from a cache the first one filled. A scenario's `shared_prefix_tokens` puts one common
    prefix of that many tokens (fresh per run) before every prompt of the scenario."""

    def __init__(self, workload: Workload, scenario: Scenario,
                 count_prompt_tokens: Callable[[str], int], run_id: str = "") -> None:
        self.workload, self.scenario = workload, scenario
        self.count = count_prompt_tokens
        self.run_id = run_id
        self._shared: str | None = None

    def shared_prefix(self) -> str:
        """The scenario's common prefix ('' when it has none), made once."""
        s = self.scenario
        if self._shared is None:
            self._shared = ""
            if s.shared_prefix_tokens > 0:
                rng = random.Random(_seed_for(self.run_id, self.workload.seed,
                                              self.workload.name, s.name, "shared"))
                nonce = unique_prefix(self.workload.seed, self.workload.name,
                                      f"{s.name} shared", 0, 0, self.run_id)
                text, _ = synthesize_prompt(self.count, s.shared_prefix_tokens, rng, nonce)
                self._shared = text + "\n\n"
        return self._shared


    def make(self, repetition: int | str, index: int, point: Any) -> Request:
        s = self.scenario
        rng = random.Random(_seed_for(self.workload.seed, self.workload.name, s.name,
                                      repetition, index))
        target = s.input_tokens.sample(rng, 1)[0]
        tag = f"{point.label} {repetition}"
        prefix = unique_prefix(self.workload.seed, self.workload.name, f"{s.name} {tag}",
                               0, index, self.run_id)
        if s.long_answer:
            prefix = LONG_ANSWER_INSTRUCTION + prefix
        prefix = self.shared_prefix() + prefix
        prompt, actual = synthesize_prompt(self.count, target, rng, prefix)
        return Request(
            request_id=f"{s.name}/{point.label}/{repetition}/{index}",
            prompt=prompt,
            input_tokens=actual,
            max_output_tokens=s.output_tokens,
            force_output_length=not s.long_answer,
            chat=s.chat,
        )
