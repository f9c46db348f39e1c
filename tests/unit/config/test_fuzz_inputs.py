"""Property-based tests of the input readers: workload TOML, the --config file and result
CSVs. Whatever the input, each gives a valid object or one UserError line, never another
exception. Examples per test: HARNESS_FUZZ_EXAMPLES (default 200)."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import random
import string
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from harness.cli.main import build_parser
from harness.config.settings import TOML_KEYS, merge_args
from harness.errors import UserError
from harness.results.files import load_frame, read_rows
from harness.results.schema import COLUMNS, TYPES
from workloads.spec import Workload, load_workload, parse_workload

EXAMPLES = int(os.environ.get("HARNESS_FUZZ_EXAMPLES", "200"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                       HealthCheck.function_scoped_fixture])

# -- TOML text from generated values -------------------------------------------------------


def toml_value(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(v)


def toml_table(d: dict[str, object]) -> str:
    return "".join(f"{json.dumps(k)} = {toml_value(v)}\n" for k, v in d.items())


names = st.text(string.ascii_letters + "_-", min_size=1, max_size=12)
scalars = st.one_of(st.integers(-2**63, 2**63 - 1), st.integers(-3, 64),
                    st.floats(allow_nan=True, allow_infinity=True), st.booleans(),
                    st.text(max_size=12))
anything = st.recursive(scalars, lambda c: st.one_of(st.lists(c, max_size=4),
                                                     st.dictionaries(names, c, max_size=3)),
                        max_leaves=8)
small_ints = st.integers(-2, 300)
numbers = st.one_of(small_ints, st.floats(-1, 1e4), st.sampled_from([math.inf, -math.inf, math.nan,
                                                                    1e308, 5e-324]))
dists = st.fixed_dictionaries({}, optional={
    "dist": st.sampled_from(["fixed", "uniform", "normal", "lognormal", "zipf"]),
    "mean": numbers, "std": numbers, "min": numbers, "max": numbers, "p99": numbers})
SCENARIO_VALUES = {
    "name": st.one_of(st.sampled_from(["a", "b"]), st.text(max_size=8)),
    "input_tokens": st.one_of(small_ints, dists),
    "output_tokens": small_ints,
    "requests": small_ints,
    "duration_s": numbers,
    "concurrency": st.one_of(small_ints, st.lists(small_ints, max_size=4)),
    "rate_rps": st.one_of(numbers, st.lists(numbers, max_size=3)),
    "arrival": st.sampled_from(["poisson", "gamma", "constant", "burst"]),
    "burstiness": numbers,
    "max_in_flight": small_ints,
    "warmup_requests": small_ints,
    "repetitions": small_ints,
    "chat": st.booleans(),
    "slo_ttft_ms": numbers,
    "slo_tpot_ms": numbers,
    "long_answer": st.booleans(),
}


@st.composite
def mostly(draw: st.DrawFn, good: st.SearchStrategy, edge: st.SearchStrategy) -> object:
    """A value from `good` nine times in ten, else from `edge`."""
    return draw(edge if draw(st.integers(0, 9)) == 0 else good)


pos_ints = st.integers(1, 300)
pos_nums = st.one_of(pos_ints, st.floats(0.001, 1e4))
GOOD_VALUES = {
    "name": st.text(min_size=1, max_size=8), "output_tokens": pos_ints, "requests": pos_ints,
    "input_tokens": st.one_of(pos_ints, st.fixed_dictionaries(
        {"dist": st.sampled_from(["normal", "lognormal"]), "mean": pos_nums},
        optional={"std": pos_nums, "min": st.integers(1, 10), "max": st.integers(10, 500)}),
        st.fixed_dictionaries({"dist": st.just("uniform"), "min": st.integers(1, 10),
                               "max": st.integers(10, 500)})),
    "duration_s": pos_nums, "concurrency": st.lists(pos_ints, min_size=1, max_size=3),
    "rate_rps": st.lists(pos_nums, min_size=1, max_size=3), "burstiness": pos_nums,
    "max_in_flight": pos_ints, "warmup_requests": st.integers(0, 5), "repetitions": pos_ints,
    "slo_ttft_ms": pos_nums, "slo_tpot_ms": pos_nums,
    "arrival": st.sampled_from(["poisson", "gamma", "constant"]),
}


def scenario_tables(required: bool, wild: bool) -> st.SearchStrategy[dict[str, object]]:
    """Scenario tables; `wild`: any value may be of any type and unknown keys appear;
    otherwise values are mostly in range and now and then at an edge."""
    known = {k: st.one_of(v, anything) if wild else mostly(GOOD_VALUES.get(k, v), v)
             for k, v in SCENARIO_VALUES.items()}
    if wild:
        known["bogus"] = anything
    base = {k: known[k] for k in ("name", "input_tokens", "output_tokens")} if required else {}
    return st.fixed_dictionaries(base, optional={k: v for k, v in known.items()
                                                 if k not in base})


@st.composite
def workload_texts(draw: st.DrawFn) -> str:
    text = ""
    wild = draw(st.booleans())
    top = draw(st.fixed_dictionaries({}, optional={
        "description": st.one_of(st.text(max_size=20), anything) if wild else st.text(),
        "seed": st.one_of(st.integers(-5, 2**63 - 1), anything) if wild else st.integers(),
        **({"extra": anything} if wild else {})}))
    text += toml_table(top)
    if draw(st.booleans()):
        text += "[defaults]\n" + toml_table(draw(scenario_tables(False, wild)))
    for _ in range(draw(st.integers(0 if wild else 1, 3))):
        required = not wild or draw(st.booleans())
        text += "[[scenarios]]\n" + toml_table(draw(scenario_tables(required, wild)))
    if draw(st.integers(0, 9)) == 0:  # now and then, damage the text
        i = draw(st.integers(0, len(text)))
        text = text[:i] + draw(st.text(max_size=5)) + text[i:]
    return text


def assert_one_line(exc: UserError) -> None:
    message = str(exc)
    event("error: " + message.split(":")[0 if not message.startswith(("fuzz", "any", "/")) else
                                        -1].strip()[:40])
    assert message and "\n" not in message and "Traceback" not in message


def check_workload(w: Workload) -> None:
    """Invariants of a workload that parsed: every number usable by the runner."""
    assert w.scenarios
    rng = random.Random(0)
    for s in w.scenarios:
        assert isinstance(s.name, str)
        assert isinstance(s.output_tokens, int) and s.output_tokens >= 1
        assert s.concurrency and all(isinstance(c, int) and c >= 1 for c in s.concurrency)
        assert all(math.isfinite(r) and r > 0 for r in s.rate_rps)
        assert s.requests is None or s.requests >= 1
        assert s.duration_s is None or (math.isfinite(s.duration_s) and s.duration_s > 0)
        assert s.requests is not None or s.duration_s is not None
        assert s.repetitions >= 1 and s.warmup_requests >= 0
        lengths = s.input_tokens.sample(rng, 3)
        assert all(s.input_tokens.min <= n <= s.input_tokens.max for n in lengths)
        assert isinstance(s.input_tokens.nominal, int)
        for slo in (s.slo_ttft_ms, s.slo_tpot_ms):
            assert slo is None or (math.isfinite(slo) and slo > 0)


@FUZZ
@given(workload_texts())
def test_workload_toml_gives_a_workload_or_one_error_line(text: str) -> None:
    try:
        w = parse_workload(text, Path("fuzz.toml"))
    except UserError as exc:
        assert_one_line(exc)
        assert str(exc).startswith("fuzz.toml")
        return
    check_workload(w)
    event("valid workload")


@FUZZ
@given(st.text(max_size=200))
def test_workload_from_arbitrary_text(text: str) -> None:
    try:
        check_workload(parse_workload(text, Path("any.toml")))
    except UserError as exc:
        assert_one_line(exc)


@FUZZ
@given(st.binary(max_size=200))
def test_workload_file_of_arbitrary_bytes(tmp_path_factory: pytest.TempPathFactory,
                                          data: bytes) -> None:
    path = tmp_path_factory.mktemp("w") / "bytes.toml"
    path.write_bytes(data)
    try:
        check_workload(load_workload(str(path)))
    except UserError as exc:
        assert_one_line(exc)


# -- the --config file -------------------------------------------------------------------

CONFIG_VALUES = {
    "backend": st.sampled_from(["llamacpp", "openai", "vllm", "x"]),
    "concurrency": st.one_of(small_ints, st.lists(small_ints, max_size=3)),
    "rate": st.one_of(numbers, st.lists(numbers, max_size=3)),
    "requests": small_ints, "repetitions": small_ints, "warmup": small_ints,
    "timeout": numbers, "stall_timeout": numbers, "slo_ttft_ms": numbers,
    "idle_power_s": numbers, "power": st.sampled_from(["auto", "none", "rapl", "x"]),
    "output": st.text(max_size=10), "n_ctx": small_ints, "flash_attn": st.booleans(),
    "engine": st.dictionaries(st.sampled_from(["n_batch", "api_key", "temperature",
                                               "force_length", "token"]), anything,
                              max_size=2),
    "gpu_memory_utilization": numbers, "api_key": st.text(min_size=1, max_size=20),
}


@st.composite
def config_texts(draw: st.DrawFn) -> str:
    keys = sorted(set(TOML_KEYS) | set(CONFIG_VALUES) | {"bogus", "api-key-env", "base-url"})
    chosen = draw(st.lists(st.sampled_from(keys), max_size=5, unique=True))
    table = {}
    for key in chosen:
        norm = key.replace("-", "_")
        good = CONFIG_VALUES.get(norm, st.text(max_size=10))
        table[key] = draw(st.one_of(good, good, good, anything))
    text = toml_table({k: v for k, v in table.items() if k != "engine"})
    if "engine" in table and isinstance(table["engine"], dict):
        text += "[engine]\n" + toml_table(table["engine"])
    if draw(st.integers(0, 9)) == 0:
        i = draw(st.integers(0, len(text)))
        text = text[:i] + draw(st.text(max_size=5)) + text[i:]
    return text


PARSER, _ = build_parser()


def merge(path: Path) -> dict[str, object]:
    return merge_args(PARSER.parse_args(["bench", "--config", str(path)]))


def check_config(values: dict[str, object]) -> None:
    """Invariants of merged settings: types the runner and backends can use as is."""
    for key in ("requests", "repetitions", "n_ctx"):
        if key in values:
            assert isinstance(values[key], int) and values[key] >= 1
    if "concurrency" in values:
        assert all(isinstance(c, int) and c >= 1 for c in values["concurrency"])
    if "rate" in values:
        assert all(math.isfinite(r) and r > 0 for r in values["rate"])
    for key in ("timeout", "stall_timeout", "slo_ttft_ms"):
        if key in values:
            assert math.isfinite(values[key]) and values[key] > 0
    if "engine" in values:
        assert isinstance(values["engine"], dict) and "api_key" not in values["engine"]
    assert "api_key" not in values


@FUZZ
@given(config_texts())
def test_config_file_gives_settings_or_one_error_line(
        tmp_path_factory: pytest.TempPathFactory, text: str) -> None:
    path = tmp_path_factory.mktemp("c") / "bench.toml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        values = merge(path)
    except UserError as exc:
        assert_one_line(exc)
        return
    check_config(values)
    event("valid settings")


@FUZZ
@given(st.binary(max_size=120))
def test_config_file_of_arbitrary_bytes(tmp_path_factory: pytest.TempPathFactory,
                                        data: bytes) -> None:
    path = tmp_path_factory.mktemp("c") / "bench.toml"
    path.write_bytes(data)
    try:
        check_config(merge(path))
    except UserError as exc:
        assert_one_line(exc)


def test_a_key_in_the_config_file_is_refused_without_echoing_it(tmp_path: Path) -> None:
    for text in ('api_key = "sk-fuzz-0123456789"\n', 'openai_api_key = "sk-fuzz-0123456789"\n',
                 '[engine]\napi_key = "sk-fuzz-0123456789"\n'):
        path = tmp_path / "bench.toml"
        path.write_text(text)
        with pytest.raises(UserError) as info:
            merge(path)
        assert "environment" in str(info.value) and "0123456789" not in str(info.value)


# -- result CSVs ---------------------------------------------------------------------------

numeric_cells = st.sampled_from(["", "0", "1", "-3", "2.5", "1e400", "inf", "-inf", "nan", "99"])
cells = st.one_of(numeric_cells, numeric_cells, numeric_cells,
                  st.sampled_from(["abc", "1,2", '"', "complete", "partial"]),
                  st.text(max_size=12))


@st.composite
def result_csvs(draw: st.DrawFn) -> str:
    core = ["schema_version", "scenario"] if draw(st.integers(0, 4)) else []
    header = core + draw(st.lists(st.sampled_from(COLUMNS[:40] + ["synthetic", "extra_col"]),
                                  max_size=8, unique=True))
    header = list(dict.fromkeys(header))
    width = st.sampled_from([len(header)] * 6 + [max(0, len(header) - 1), len(header) + 1])
    rows = [draw(st.lists(cells, min_size=n, max_size=n))
            for n in draw(st.lists(width, max_size=4))]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        if "schema_version" in header and draw(st.integers(0, 3)) and len(row) > 0:
            row[0] = draw(st.sampled_from(["0", "1", "2", ""]))
        writer.writerow(row)
    text = buf.getvalue()
    if draw(st.integers(0, 5)) == 0:
        i = draw(st.integers(0, len(text)))
        text = text[:i] + draw(st.text(max_size=4)) + text[i:]
    return text


def check_frame(frame: object) -> None:
    for name in COLUMNS:
        assert name in frame.columns  # type: ignore[attr-defined]
    for name, typ in TYPES.items():
        if typ in ("int", "float"):
            for v in frame[name]:  # type: ignore[index]
                assert v is None or isinstance(v, (int, float)), (name, v)


@FUZZ
@given(result_csvs())
def test_result_csv_gives_rows_or_one_error_line(tmp_path_factory: pytest.TempPathFactory,
                                                 text: str) -> None:
    path = tmp_path_factory.mktemp("r") / "run.csv"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        rows = read_rows(path)
    except UserError as exc:
        assert_one_line(exc)
    else:
        for row in rows:
            assert row["schema_version"] == 1
    try:
        frame = load_frame([path])
    except UserError as exc:
        assert_one_line(exc)
        return
    check_frame(frame)
    event("valid frame")


@FUZZ
@given(st.binary(max_size=300))
def test_result_file_of_arbitrary_bytes(tmp_path_factory: pytest.TempPathFactory,
                                        data: bytes) -> None:
    path = tmp_path_factory.mktemp("r") / "run.csv"
    path.write_bytes(b"schema_version,scenario\n" + data if data[:1] == b"\x00" else data)
    try:
        check_frame(load_frame([path]))
    except UserError as exc:
        assert_one_line(exc)
