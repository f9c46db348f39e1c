"""Workload TOML → typed `Workload`, validated at the edge with file:line messages.

A workload file has top-level `description` and `seed`, an optional `[defaults]`
table, and one `[[scenarios]]` table per scenario. Any scenario key may appear in
`[defaults]`. See README.md ("Workloads") for every key.
"""

from __future__ import annotations

import math
import random
import re
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from harness.errors import UserError, did_you_mean, one_line
from workloads.datasets import HF_PREFIX, SAMPLES, load_dataset, resolve_source

BUILTIN_DIR = Path(__file__).resolve().parent
DEFAULT_REQUESTS_PER_STREAM = 2


@dataclass(frozen=True)
class TokenDist:
    """A prompt length: fixed, or drawn from uniform / normal / lognormal (clipped)."""

    kind: str = "fixed"  # fixed | uniform | normal | lognormal
    mean: float = 0
    std: float = 0
    min: int = 1
    max: int = 1_000_000

    def sample(self, rng: random.Random, n: int) -> list[int]:
        """`n` lengths drawn with `rng` (deterministic for a seeded rng)."""
        out: list[int] = []
        for _ in range(n):
            if self.kind == "fixed":
                v = self.mean
            elif self.kind == "uniform":
                v = rng.randint(self.min, self.max)
            elif self.kind == "normal":
                v = rng.gauss(self.mean, self.std)
            else:  # lognormal with the given arithmetic mean and std
                import math

                sigma2 = math.log(1 + (self.std / self.mean) ** 2)
                v = rng.lognormvariate(math.log(self.mean) - sigma2 / 2, math.sqrt(sigma2))
            out.append(int(min(max(round(v), self.min), self.max)))
        return out

    @property
    def nominal(self) -> int:
        """The mean length (for labels and the result row)."""
        if self.kind == "uniform":
            return (self.min + self.max) // 2
        return int(self.mean)


@dataclass(frozen=True)
class Scenario:
    """One scenario: prompt/output sizes, how much load, how many repetitions."""

    name: str
    input_tokens: TokenDist
    output_tokens: int
    requests: int | None = 8
    duration_s: float | None = None
    concurrency: tuple[int, ...] = (1,)
    rate_rps: tuple[float, ...] = ()  # open loop when non-empty
    arrival: str = "poisson"  # poisson | gamma | constant
    burstiness: float = 1.0  # gamma shape; 1.0 = Poisson
    max_in_flight: int | None = None  # open loop cap
    warmup_requests: int = 1
    repetitions: int = 1
    chat: bool = False
    slo_ttft_ms: float | None = None
    slo_tpot_ms: float | None = None
    long_answer: bool = False  # ask for a long answer (hosted APIs cannot force length)
    # Closed loop: at least this many requests per stream and repetition, so that all N
    # streams stay busy (0: exactly `requests`, however many streams).
    requests_per_stream: int = DEFAULT_REQUESTS_PER_STREAM
    shared_prefix_tokens: int = 0  # a common prefix of every prompt (caching on purpose)
    # Prompts from a dataset (workloads.datasets) instead of synthetic ones: its source
    # (an absolute path or hf:id), how entries are drawn, and the seed of the draw
    # (None: the workload's seed).
    dataset: str | None = None
    dataset_sample: str = "random"
    dataset_seed: int | None = None

    def requests_at(self, concurrency: int) -> int | None:
        """Requests per closed-loop repetition at `concurrency` streams: `requests`, raised
        to concurrency x requests_per_stream when there are several streams (one stream is
        busy with any count); None when bound by duration_s only."""
        if self.requests is None:
            return None
        if concurrency <= 1:
            return self.requests
        return max(self.requests, concurrency * self.requests_per_stream)


@dataclass(frozen=True)
class Workload:
    """A named set of scenarios with the seed its prompts are drawn from."""

    name: str
    path: Path
    description: str
    seed: int
    scenarios: tuple[Scenario, ...] = field(default_factory=tuple)

    def with_overrides(self, **overrides: Any) -> Workload:
        """A copy with scenario fields replaced (from command-line flags); None = keep."""
        clean = {k: v for k, v in overrides.items() if v is not None}
        if not clean:
            return self
        return replace(self, scenarios=tuple(replace(s, **clean) for s in self.scenarios))


_TOP_KEYS = {"description", "seed", "defaults", "scenarios"}
_SCENARIO_KEYS: dict[str, tuple[type, ...]] = {
    "name": (str,),
    "input_tokens": (int, dict),
    "output_tokens": (int,),
    "requests": (int,),
    "duration_s": (int, float),
    "concurrency": (int, list),
    "rate_rps": (int, float, list),
    "arrival": (str,),
    "burstiness": (int, float),
    "max_in_flight": (int,),
    "warmup_requests": (int,),
    "repetitions": (int,),
    "chat": (bool,),
    "slo_ttft_ms": (int, float),
    "slo_tpot_ms": (int, float),
    "long_answer": (bool,),
    "requests_per_stream": (int,),
    "shared_prefix_tokens": (int,),
    "dataset": (str,),
    "dataset_sample": (str,),
    "dataset_seed": (int,),
}
_DIST_KEYS = {"dist", "mean", "std", "min", "max"}


def builtin_names() -> list[str]:
    """Names of the workloads shipped in this folder."""
    return sorted(p.stem for p in BUILTIN_DIR.glob("*.toml"))


def resolve_workload_path(name_or_file: str) -> Path:
    """A built-in name or a path to a TOML file → the file's path."""
    path = Path(name_or_file)
    if path.suffix == ".toml" or path.exists():
        if not path.is_file():
            raise UserError(f"workload file not found: {path} (--workload)")
        return path
    candidate = BUILTIN_DIR / f"{name_or_file}.toml"
    if candidate.is_file():
        return candidate
    names = builtin_names()
    raise UserError(
        f"unknown workload '{name_or_file}' (--workload); built in: {', '.join(names)}, "
        "or give a path to a .toml file." + did_you_mean(name_or_file, names)
    )


def _line_of(text: str, key: str, block: int | None) -> int | None:
    """1-based line of `key =` inside the given [[scenarios]] block (or anywhere)."""
    lines = text.splitlines()
    start, seen = 0, -1
    if block is not None:
        for i, line in enumerate(lines):
            if re.match(r"^\s*\[\[\s*scenarios\s*\]\]", line):
                seen += 1
                if seen == block:
                    start = i
                    break
    pattern = re.compile(rf"^\s*{re.escape(key)}\s*=|[{{,]\s*{re.escape(key)}\s*=")
    for i in range(start, len(lines)):
        if pattern.search(lines[i]):
            return i + 1
    return None


class _Ctx:
    def __init__(self, path: Path, text: str) -> None:
        self.path, self.text = path, text

    def fail(self, key: str, message: str, block: int | None = None) -> UserError:
        line = _line_of(self.text, key, block)
        where = f"{self.path}:{line}" if line else str(self.path)
        return UserError(one_line(f"{where}: {message}"))


def _check_scenario_table(ctx: _Ctx, table: dict[str, Any], block: int | None) -> None:
    for key, value in table.items():
        if key not in _SCENARIO_KEYS:
            raise ctx.fail(key, f"unknown key '{key}'." + did_you_mean(key, list(_SCENARIO_KEYS))
                           + f" Known keys: {', '.join(_SCENARIO_KEYS)}", block)
        types = _SCENARIO_KEYS[key]
        if isinstance(value, bool) and bool not in types:
            ok = False
        else:
            ok = isinstance(value, types)
        if not ok:
            names = " or ".join("table" if t is dict else "list" if t is list else t.__name__
                                for t in types)
            raise ctx.fail(key, f"'{key}' must be {names}, got {type(value).__name__} "
                           f"{value!r}", block)
        if not _finite(value):
            raise ctx.fail(key, f"'{key}' must hold finite numbers (no inf or nan), got "
                           f"{value!r}", block)


def _finite(value: Any) -> bool:
    """False when `value` is or holds (in a list or table) an infinite or NaN float."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, list):
        return all(_finite(v) for v in value)
    if isinstance(value, dict):
        return all(_finite(v) for v in value.values())
    return True


def _positive_int(ctx: _Ctx, key: str, value: Any, block: int | None, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ctx.fail(key, f"'{key}' must be an integer >= {minimum}, got {value!r}", block)
    return value


def _dist(ctx: _Ctx, value: Any, block: int | None) -> TokenDist:
    if isinstance(value, int):
        return TokenDist("fixed", mean=_positive_int(ctx, "input_tokens", value, block),
                         min=1, max=value)
    unknown = set(value) - _DIST_KEYS
    if unknown:
        key = sorted(unknown)[0]
        raise ctx.fail(key, f"unknown key '{key}' in input_tokens; known: "
                       f"{', '.join(sorted(_DIST_KEYS))}", block)
    kind = value.get("dist", "fixed")
    if kind not in ("fixed", "uniform", "normal", "lognormal"):
        raise ctx.fail("dist", f"input_tokens.dist must be fixed, uniform, normal or "
                       f"lognormal, got {kind!r}", block)
    nums = {}
    for k in ("mean", "std", "min", "max"):
        if k in value:
            v = value[k]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
                raise ctx.fail(k, f"input_tokens.{k} must be a number >= 0, got {v!r}", block)
            nums[k] = v
    lo, hi = int(nums.get("min", 1)), int(nums.get("max", 1_000_000))
    if kind == "uniform" and not ("min" in nums and "max" in nums):
        raise ctx.fail("dist", "input_tokens with dist='uniform' needs min and max", block)
    if kind in ("fixed", "normal", "lognormal") and not nums.get("mean"):
        raise ctx.fail("dist", f"input_tokens with dist='{kind}' needs mean > 0", block)
    if lo < 1 or hi < lo:
        raise ctx.fail("min", f"input_tokens needs 1 <= min <= max, got min={lo} max={hi}",
                       block)
    return TokenDist(kind, mean=float(nums.get("mean", 0)), std=float(nums.get("std", 0)),
                     min=lo, max=hi)


def _as_tuple(value: Any, cast: type) -> tuple:
    return tuple(cast(v) for v in (value if isinstance(value, list) else [value]))


def _scenario_name(ctx: _Ctx, name: str, block: int) -> str:
    if not name.strip() or not name.isprintable():
        raise ctx.fail("name", f"'name' must be a non-empty line of printable text, got "
                       f"{name!r}", block)
    return name


def _dataset_keys(ctx: _Ctx, table: dict[str, Any], block: int) -> dict[str, Any]:
    """`dataset` (a path relative to the workload file, or hf:id), `dataset_sample` and
    `dataset_seed`, checked."""
    text = table["dataset"]
    if not text.strip():
        raise ctx.fail("dataset", "'dataset' must name a file, a folder or hf:owner/name",
                       block)
    source = resolve_source(text, ctx.path.parent)
    if not source.startswith(HF_PREFIX) and not Path(source).exists():
        raise ctx.fail("dataset", f"dataset not found: {source} (paths are relative to "
                       "the workload file); fix the path or use hf:owner/name", block)
    out: dict[str, Any] = {"dataset": source}
    if "dataset_sample" in table:
        if table["dataset_sample"] not in SAMPLES:
            raise ctx.fail("dataset_sample", f"'dataset_sample' must be "
                           f"{' or '.join(SAMPLES)}, got {table['dataset_sample']!r}", block)
        out["dataset_sample"] = table["dataset_sample"]
    if "dataset_seed" in table:
        out["dataset_seed"] = table["dataset_seed"]
    return out


def _build_scenario(ctx: _Ctx, table: dict[str, Any], block: int) -> Scenario:
    if "name" not in table:
        raise ctx.fail("[[scenarios]]", f"scenario #{block + 1} has no 'name'", block)
    for key in ("input_tokens", "output_tokens"):
        if key not in table and not (key == "input_tokens" and "dataset" in table):
            raise ctx.fail("name", f"scenario '{table['name']}' needs '{key}'", block)
    kwargs: dict[str, Any] = {
        "name": _scenario_name(ctx, table["name"], block),
        "input_tokens": (_dist(ctx, table["input_tokens"], block) if "input_tokens" in table
                         else TokenDist("fixed", mean=0, min=0, max=0)),
        "output_tokens": _positive_int(ctx, "output_tokens", table["output_tokens"], block),
    }
    if "dataset" in table:
        kwargs.update(_dataset_keys(ctx, table, block))
    for key in ("requests", "max_in_flight", "repetitions"):
        if key in table:
            kwargs[key] = _positive_int(ctx, key, table[key], block)
    if "warmup_requests" in table:
        kwargs["warmup_requests"] = _positive_int(ctx, "warmup_requests",
                                                  table["warmup_requests"], block, minimum=0)
    for key in ("requests_per_stream", "shared_prefix_tokens"):
        if key in table:
            kwargs[key] = _positive_int(ctx, key, table[key], block, minimum=0)
    shortest = (int(kwargs["input_tokens"].mean) if kwargs["input_tokens"].kind == "fixed"
                else kwargs["input_tokens"].min)
    if kwargs.get("shared_prefix_tokens", 0) >= shortest and "dataset" not in kwargs:
        raise ctx.fail("shared_prefix_tokens", f"'shared_prefix_tokens' "
                       f"({kwargs['shared_prefix_tokens']}) must be below the shortest "
                       f"prompt ({shortest} tokens of input_tokens): the prefix is part "
                       "of each prompt", block)
    if "duration_s" in table:
        if table["duration_s"] <= 0:
            raise ctx.fail("duration_s", "'duration_s' must be > 0", block)
        kwargs["duration_s"] = float(table["duration_s"])
        if "requests" not in table:
            kwargs["requests"] = None
    if "concurrency" in table:
        values = table["concurrency"] if isinstance(table["concurrency"], list) else [
            table["concurrency"]]
        if not values:
            raise ctx.fail("concurrency", "'concurrency' needs at least one value, e.g. "
                           "[1, 4]", block)
        for v in values:
            _positive_int(ctx, "concurrency", v, block)
        kwargs["concurrency"] = tuple(values)
    if "rate_rps" in table:
        rates = _as_tuple(table["rate_rps"], float) if all(
            isinstance(v, (int, float)) and not isinstance(v, bool)
            for v in (table["rate_rps"] if isinstance(table["rate_rps"], list)
                      else [table["rate_rps"]])) else None
        if not rates or any(r <= 0 for r in rates):
            raise ctx.fail("rate_rps", f"'rate_rps' must be numbers > 0, got "
                           f"{table['rate_rps']!r}", block)
        kwargs["rate_rps"] = rates
    if "arrival" in table:
        if table["arrival"] not in ("poisson", "gamma", "constant"):
            raise ctx.fail("arrival", "'arrival' must be poisson, gamma or constant", block)
        kwargs["arrival"] = table["arrival"]
    if "burstiness" in table:
        if table["burstiness"] <= 0:
            raise ctx.fail("burstiness", "'burstiness' must be > 0", block)
        kwargs["burstiness"] = float(table["burstiness"])
    for key in ("slo_ttft_ms", "slo_tpot_ms"):
        if key in table:
            if table[key] <= 0:
                raise ctx.fail(key, f"'{key}' must be > 0", block)
            kwargs[key] = float(table[key])
    for key in ("chat", "long_answer"):
        if key in table:
            kwargs[key] = table[key]
    return Scenario(**kwargs)


def parse_workload(text: str, path: Path, name: str | None = None) -> Workload:
    """Parse and validate workload TOML text; raise UserError naming file, key and line."""
    ctx = _Ctx(path, text)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UserError(one_line(f"{path}: not valid TOML: {exc}")) from None
    for key in data:
        if key not in _TOP_KEYS:
            raise ctx.fail(key, f"unknown top-level key '{key}'." + did_you_mean(
                key, list(_TOP_KEYS)) + f" Known: {', '.join(sorted(_TOP_KEYS))}", None)
    description = data.get("description", "")
    if not isinstance(description, str):
        raise ctx.fail("description", "'description' must be a string", None)
    seed = data.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ctx.fail("seed", f"'seed' must be an integer, got {seed!r}", None)
    defaults = data.get("defaults", {})
    if not isinstance(defaults, dict):
        raise ctx.fail("defaults", "'defaults' must be a table ([defaults])", None)
    _check_scenario_table(ctx, defaults, None)
    scenarios_raw = data.get("scenarios")
    if not isinstance(scenarios_raw, list) or not scenarios_raw or not all(
            isinstance(s, dict) for s in scenarios_raw):
        raise UserError(one_line(f"{path}: needs at least one [[scenarios]] table with "
                                 "name, input_tokens and output_tokens"))
    scenarios = []
    names: set[str] = set()
    for i, raw in enumerate(scenarios_raw):
        _check_scenario_table(ctx, raw, i)
        merged = {**defaults, **raw}
        scenario = _build_scenario(ctx, merged, i)
        if scenario.name in names:
            raise ctx.fail("name", f"duplicate scenario name '{scenario.name}'", i)
        names.add(scenario.name)
        scenarios.append(scenario)
    return Workload(name=name or path.stem, path=path, description=description, seed=seed,
                    scenarios=tuple(scenarios))


def load_workload(name_or_file: str) -> Workload:
    """Load a built-in workload by name or a workload TOML file by path."""
    path = resolve_workload_path(name_or_file)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read workload file {path}: {exc}") from None
    return parse_workload(text, path)


def dataset_seed(workload: Workload, scenario: Scenario) -> int:
    """The seed a dataset scenario draws its prompts with (default: the workload's)."""
    return workload.seed if scenario.dataset_seed is None else scenario.dataset_seed


def _length_bounds(workload: Workload, s: Scenario) -> tuple[int, int]:
    """(longest prompt, longest output) a scenario may send, in tokens: its settings, or
    for a dataset an upper bound over the entries its requests draw (all of them when it
    runs for a duration; the shared prefix, the nonce and a chat template come on top)."""
    if s.dataset is None:
        return (s.input_tokens.max if s.input_tokens.kind != "fixed"
                else int(s.input_tokens.mean)), s.output_tokens
    count = None
    if s.requests is not None:
        count = max([s.requests, s.warmup_requests]
                    + [s.requests_at(c) or 0 for c in s.concurrency])
    data = load_dataset(s.dataset)
    longest, out = data.length_bounds(count, s.dataset_sample, dataset_seed(workload, s))
    return longest + s.shared_prefix_tokens + 16, max(out or 0, s.output_tokens)


def context_tokens(workload: Workload) -> int:
    """A context that fits the workload's longest prompt plus its output (and a margin)."""
    bounds = [_length_bounds(workload, s) for s in workload.scenarios]
    longest = max(b[0] for b in bounds)
    out = max(b[1] for b in bounds)
    need = longest + out + 64
    return max(512, -(-need // 256) * 256)
