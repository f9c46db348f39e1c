"""The result-row schema, defined once: one ordered list of (column, type, meaning).

Units are suffixes: _ms, _s, _tok_s, _rps, _w, _j, _mb, _gb, _usd. Every downstream
reader (compare, breakeven, report) goes through `migrate()` so older files still load.
"""

from __future__ import annotations

from typing import Any

SCHEMA_VERSION = 1

# (name, type, description). Type is one of: str, int, float.
FIELDS: list[tuple[str, str, str]] = [
    # context
    ("schema_version", "int", "version of this column list"),
    ("run_id", "str", "one id per `harness bench` invocation"),
    ("started_at_utc", "str", "ISO-8601 UTC time the scenario started"),
    ("finished_at_utc", "str", "ISO-8601 UTC time the scenario ended"),
    ("status", "str", "complete | partial (interrupted or failed before the end)"),
    ("machine_id", "str", "stable id of this machine (hash of its fingerprint)"),
    ("hostname", "str", "host name"),
    ("cpu_model", "str", "CPU model name"),
    ("cpu_cores", "int", "physical cores"),
    ("cpu_threads", "int", "logical CPUs"),
    ("ram_gb", "float", "total RAM"),
    ("gpu_name", "str", "GPU model (first GPU), empty if none"),
    ("gpu_count", "int", "number of GPUs"),
    ("gpu_driver", "str", "GPU driver version"),
    ("os", "str", "operating system and kernel"),
    ("python_version", "str", "Python version"),
    ("harness_version", "str", "this package's version"),
    ("harness_commit", "str", "git commit of the harness (+dirty)"),
    ("source_tool", "str", "tool that measured the row: empty for harness bench; "
     "vllm-bench-serve | guidellm | llama-bench for imported files (harness.results.imports)"),
    ("backend", "str", "backend name (llamacpp, openai, vllm)"),
    ("engine", "str", "engine name"),
    ("engine_version", "str", "engine version"),
    ("engine_build", "str", "engine build / system info"),
    ("device", "str", "device the model ran on"),
    ("model", "str", "model name or id"),
    ("model_path", "str", "local model path, if any"),
    ("model_sha256", "str", "sha256 of the local model file"),
    ("model_size_mb", "float", "size of the model file"),
    ("model_params", "int", "parameter count"),
    ("model_arch", "str", "architecture from model metadata"),
    ("quant", "str", "quantization"),
    ("weights", "str", "real | synthetic"),
    ("settings_json", "str", "every engine setting that affects speed, as JSON"),
    ("labels", "str", "the run's --label KEY=VALUE pairs, as a JSON object; empty if none"),
    ("workload", "str", "workload name"),
    ("scenario", "str", "scenario name"),
    ("load_mode", "str", "closed (concurrency) | open (arrival rate) | batch (offline engine)"),
    ("concurrency", "int", "requests in flight (closed loop) or cap (open loop)"),
    ("request_rate_rps", "float", "open-loop arrival rate; empty for closed loop"),
    ("concurrency_achieved_mean", "float", "requests in flight, time-weighted mean over "
     "each repetition's window (first send to last end), mean over repetitions"),
    ("concurrency_achieved_peak", "int", "most requests in flight at once"),
    ("capacity_ok", "int", "1 when the achieved mean is >= 90% of the target concurrency "
     "(closed loop, batch), 0 when not (or serialized in process): not a capacity; empty "
     "for open loop"),
    ("knee", "int", "--concurrency auto: 1 on the knee row of the sweep, 0 on the others; "
     "empty otherwise"),
    ("requests_per_stream", "int", "closed loop: each repetition sends at least this many "
     "requests per stream (requests = max(requests, concurrency x this))"),
    ("shared_prefix_tokens", "int", "tokens of a common prefix every prompt of the "
     "scenario starts with (0: none; each prompt is fresh per run)"),
    ("dataset", "str", "prompts from a dataset: its file or hf:id, kind, size, sampling "
     "and seed; empty for synthetic prompts"),
    ("input_tokens_target", "int", "mean requested prompt length (empty for a dataset: "
     "the real lengths are in input_tokens and the requests JSONL)"),
    ("output_tokens_target", "int", "requested output length (empty when a dataset gives "
     "the lengths)"),
    ("repetitions", "int", "measured repetitions"),
    ("warmup_requests", "int", "requests sent before measuring"),
    ("load_avg_1m", "float", "1-minute load average when the scenario started"),
    ("load_avg_1m_end", "float", "1-minute load average when the scenario ended"),
    ("noisy", "int", "1 when the machine was busy (load average above free cores)"),
    ("token_count_source", "str", "engine | tokenizer | events (worst used)"),
    # counts
    ("requests", "int", "measured requests (all repetitions)"),
    ("errors", "int", "failed measured requests"),
    ("error_kinds", "str", "kind=count;... of failed requests"),
    ("input_tokens", "int", "sum of prompt tokens of measured requests"),
    ("output_tokens", "int", "sum of output tokens of measured requests"),
    ("short_outputs", "int", "successful requests that produced fewer output tokens than "
     "asked for"),
    ("duration_s", "float", "mean measured window per repetition"),
    # throughput
    ("request_throughput_rps", "float", "completed requests / window"),
    ("output_throughput_tok_s", "float", "sum N_out / (last completion - first send)"),
    ("output_throughput_tok_s_std", "float", "std over repetitions"),
    ("output_throughput_steady_tok_s", "float", "output tokens / time while all N streams "
     "were busy (ramp-up and drain excluded); mean over repetitions"),
    ("steady_duration_s", "float", "mean time per repetition that all N streams were busy"),
    ("total_throughput_tok_s", "float", "(input + output tokens) / window"),
    ("total_throughput_tok_s_std", "float", "std over repetitions"),
    ("prefill_tok_s", "float", "mean per-request input tokens / TTFT"),
    ("decode_tok_s", "float", "mean per-request 1 / TPOT"),
    ("engine_prefill_tok_s", "float", "engine's own prompt-eval rate (mean)"),
    ("engine_decode_tok_s", "float", "engine's own generation rate (mean)"),
    ("goodput_rps", "float", "requests/s meeting every SLO"),
    ("slo_ttft_ms", "float", "TTFT SLO used for goodput"),
    ("slo_tpot_ms", "float", "TPOT SLO used for goodput"),
    # latency
    ("ttft_ms_mean", "float", ""), ("ttft_ms_std", "float", ""),
    ("ttft_ms_p50", "float", ""), ("ttft_ms_p90", "float", ""), ("ttft_ms_p95", "float", ""),
    ("ttft_ms_p99", "float", ""),
    ("tpot_ms_mean", "float", ""), ("tpot_ms_std", "float", ""),
    ("tpot_ms_p50", "float", ""), ("tpot_ms_p90", "float", ""), ("tpot_ms_p95", "float", ""),
    ("tpot_ms_p99", "float", ""),
    ("itl_ms_p50", "float", ""), ("itl_ms_p90", "float", ""), ("itl_ms_p95", "float", ""),
    ("itl_ms_p99", "float", ""),
    ("e2e_ms_mean", "float", ""), ("e2e_ms_std", "float", ""),
    ("e2e_ms_p50", "float", ""), ("e2e_ms_p90", "float", ""), ("e2e_ms_p95", "float", ""),
    ("e2e_ms_p99", "float", ""),
    ("send_lag_ms_p99", "float", "open loop: how late requests were sent vs schedule"),
    # energy and memory
    ("energy_j", "float", "hardware energy counter delta over the measured window"),
    ("energy_above_idle_j", "float", "energy minus idle power x window"),
    ("avg_power_w", "float", "energy / window"),
    ("peak_power_w", "float", "highest sampled power"),
    ("idle_power_w", "float", "power measured before the run"),
    ("j_per_output_token", "float", "energy / output tokens"),
    ("j_per_token", "float", "energy / (input + output tokens)"),
    ("tokens_per_kwh", "float", "(input + output tokens) per kWh"),
    ("power_method", "str", "measured | estimated | unavailable"),
    ("power_source", "str", "nvml | rapl | apple | estimate | none, per domain"),
    ("power_note", "str", "how each domain was read, what was left out, or why unavailable"),
    ("power_window_s", "float", "seconds the meters ran (all repetitions of the row)"),
    ("peak_rss_mb", "float", "peak resident memory of the engine process(es)"),
    ("gpu_mem_peak_mb", "float", "peak GPU memory used"),
    ("api_cost_usd", "float", "API price x usage of measured requests, where known"),
    # engine-side figures over the measured window (vLLM Prometheus metrics)
    ("server_prompt_tokens", "int", "prompt tokens the engine counted in the window"),
    ("server_generation_tokens", "int", "output tokens the engine counted in the window"),
    ("server_ttft_ms_mean", "float", "engine's mean time to first token"),
    ("server_itl_ms_mean", "float", "engine's mean inter-token latency"),
    ("server_e2e_ms_mean", "float", "engine's mean request latency"),
    ("server_queue_ms_mean", "float", "engine's mean time requests waited in its queue"),
    ("server_preemptions", "int", "requests the engine preempted in the window"),
    ("server_kv_cache_usage_peak_pct", "float", "highest KV-cache usage sampled (serve)"),
    ("server_requests_running_peak", "int", "most requests running at once, sampled"),
    ("notes", "str", "warnings raised during the scenario"),
]

COLUMNS: list[str] = [name for name, _, _ in FIELDS]
TYPES: dict[str, str] = {name: typ for name, typ, _ in FIELDS}

# Columns that identify a scenario for alignment across machines and runs.
KEY_COLUMNS = ["workload", "scenario", "model", "quant", "weights", "backend",
               "load_mode", "concurrency", "request_rate_rps"]


def empty_row() -> dict[str, Any]:
    """A row with every column present and unset."""
    row: dict[str, Any] = {name: None for name in COLUMNS}
    row["schema_version"] = SCHEMA_VERSION
    return row


# Migrations: version N → N+1, applied in order to rows read from older files.
def _noop(row: dict[str, Any]) -> dict[str, Any]:
    return row


# Schema version 0 is the pre-release layout used while the harness was developed, before
# version 1 shipped with the walking skeleton. It is defined here so that the migration
# path is real and tested: units came before percentiles (`ttft_p50_ms`), throughput had
# short names (`output_tok_s`), energy per token was `energy_per_token_j`, and a 0/1
# `synthetic` column stood where `weights` (real | synthetic) is now.
V0_RENAMES: dict[str, str] = {
    "output_tok_s": "output_throughput_tok_s",
    "output_tok_s_std": "output_throughput_tok_s_std",
    "total_tok_s": "total_throughput_tok_s",
    "total_tok_s_std": "total_throughput_tok_s_std",
    "request_rps": "request_throughput_rps",
    "energy_per_token_j": "j_per_output_token",
    "rate_rps": "request_rate_rps",
    **{f"{m}_{stat}_ms": f"{m}_ms_{stat}"
       for m in ("ttft", "tpot", "e2e") for stat in ("mean", "std", "p50", "p90", "p99")},
    **{f"itl_{stat}_ms": f"itl_ms_{stat}" for stat in ("p50", "p90", "p99")},
}


def _coerce(name: str, value: Any) -> Any:
    """A value read under an old column name, typed by its current column's type."""
    if value is None or value == "":
        return None
    try:
        if TYPES.get(name) == "int":
            return int(float(value))
        if TYPES.get(name) == "float":
            return float(value)
    except (TypeError, ValueError):
        return value
    return value


def _v0_to_v1(row: dict[str, Any]) -> dict[str, Any]:
    """Pre-release layout → version 1: renamed columns, `synthetic` 0/1 → `weights`."""
    out = {k: v for k, v in row.items() if k not in V0_RENAMES and k != "synthetic"}
    for old, new in V0_RENAMES.items():
        if old in row and out.get(new) is None:
            out[new] = _coerce(new, row[old])
    if "synthetic" in row and out.get("weights") is None:
        flag = str(row["synthetic"]).strip().lower()
        out["weights"] = "synthetic" if flag in ("1", "1.0", "true", "yes") else "real"
    return out


MIGRATIONS: dict[int, Any] = {0: _v0_to_v1}


def migrate(row: dict[str, Any]) -> dict[str, Any]:
    """Bring a row read from any schema version up to SCHEMA_VERSION.

    Raises ValueError for a version newer than this harness knows."""
    version = int(row.get("schema_version") or 0)
    if version > SCHEMA_VERSION:
        raise ValueError(f"schema_version {version} is newer than this harness's "
                         f"{SCHEMA_VERSION}; upgrade the harness to read it")
    while version < SCHEMA_VERSION:
        row = MIGRATIONS.get(version, _noop)(row)
        version += 1
        row["schema_version"] = version
    for name in COLUMNS:
        row.setdefault(name, None)
    return row
