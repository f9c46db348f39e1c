"""Requests for a scenario: deterministic prompts sized in tokens (`PromptFactory`)."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from typing import Any

from backends.base import Request
from workloads.datasets import flatten, load_dataset
from workloads.prompts import LONG_ANSWER_INSTRUCTION, synthesize_prompt, unique_prefix
from workloads.spec import Scenario, Workload, dataset_seed


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
        # A dataset scenario draws its prompts from the dataset (loaded once, cached).
        self.dataset = load_dataset(scenario.dataset) if scenario.dataset else None
        self.dataset_seed = dataset_seed(workload, scenario)

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
        if self.dataset is not None:
            return self._from_dataset(repetition, index, point)
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

    def _from_dataset(self, repetition: int | str, index: int, point: Any) -> Request:
        """Request `index` from the scenario's dataset: the entry it draws, after the
        shared prefix and the unique prefix (fresh bytes per run, as synthetic prompts);
        its input length measured with the model's tokenizer; the output length the
        dataset gives (its `output_tokens`, else its reply's tokens), forced, else the
        scenario's. A repetition sends the same entries again (new prefixes)."""
        s, data = self.scenario, self.dataset
        assert data is not None
        entry = data.pick(index, s.dataset_sample, self.dataset_seed)
        prefix = self.shared_prefix() + unique_prefix(
            self.workload.seed, self.workload.name, f"{s.name} {point.label} {repetition}",
            0, index, self.run_id)
        messages = entry.messages
        if messages:
            (role, content), *rest = messages
            messages = ((role, prefix + content), *rest)
            prompt = flatten(messages)
        else:
            prompt = prefix + entry.prompt
        given = entry.output_tokens
        if given is None and entry.reply:
            given = max(1, self.count(entry.reply))
        return Request(
            request_id=f"{s.name}/{point.label}/{repetition}/{index}",
            prompt=prompt,
            input_tokens=self.count(prompt),
            max_output_tokens=given if given is not None else s.output_tokens,
            force_output_length=given is not None or not s.long_answer,
            chat=s.chat or bool(messages),
            messages=messages,
        )

    def row_columns(self) -> dict[str, Any]:
        """Columns a dataset scenario's rows carry instead of the synthetic targets: the
        `dataset` label; no input target; the output target only when every entry takes
        the scenario's. Empty for synthetic prompts."""
        data, s = self.dataset, self.scenario
        if data is None:
            return {}
        gives = any(p.gives_output_length for p in data.prompts)
        return {"dataset": data.label(s.dataset_sample, self.dataset_seed),
                "input_tokens_target": None,
                "output_tokens_target": None if gives else s.output_tokens}

    def reuse_note(self, per_repetition: int | None) -> str | None:
        """A note when a repetition sends more requests than the dataset has entries."""
        data = self.dataset
        if data is None or not per_repetition or per_repetition <= len(data.prompts):
            return None
        return (f"the dataset has {len(data.prompts)} prompts; the {per_repetition} requests "
                "of each repetition reuse them in turn (each with a fresh prefix)")
