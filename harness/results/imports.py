"""Result files of other benchmarking tools, read as harness result rows.

Users already hold result files from the tools of this field; `harness compare`, `report`
and `breakeven` read them beside our CSVs (through `harness.results.files.load_frame`):

- `vllm bench serve --save-result` JSON (one file per run: one load level),
- guidellm's JSON report (`guidellm run --output kind=json,...`: one row per benchmark),
- llama.cpp's `llama-bench -o json | jsonl | csv` (one row per test: pp, tg or pg).

Each is mapped onto our columns (`harness.results.schema`), with `source_tool` set and the
definitions that differ from ours named in the row's `notes`: the figures are the tool's
own, never recomputed. What a tool does not record stays empty. The machine is taken from
a `machine.json` in the file's folder or the folder above (as `harness bench` writes in
`results/<machine>/`), else from what the tool records (llama-bench: CPU and GPU names),
else it is unknown (`machine_id` "unknown", said in the notes).

`read_foreign(path)` returns None for a file that is none of these formats, so callers
decide whether that is an error (a file named by the user) or not (a folder's other files).
"""

from __future__ import annotations

import csv
import datetime as _dt
import json
import math
import re
from pathlib import Path
from typing import Any

from harness.errors import UserError
from harness.results.schema import empty_row

VLLM = "vllm-bench-serve"
GUIDELLM = "guidellm"
LLAMA_BENCH = "llama-bench"
TOOLS = (VLLM, GUIDELLM, LLAMA_BENCH)
WORKLOAD = "imported"  # imported rows of every tool share one workload name

FORMATS_HELP = ("a result CSV written by `harness bench`, `vllm bench serve --save-result` "
                "JSON, guidellm's JSON output, or llama-bench's -o json/jsonl/csv output")

# Files `harness bench` writes beside its CSVs: never another tool's results.
OWN_COMPANIONS = (".requests.jsonl", ".power.jsonl", ".server_metrics.json")
OWN_NAMES = ("machine.json",)

_MACHINE_KEYS = ("machine_id", "hostname", "cpu_model", "cpu_cores", "cpu_threads", "ram_gb",
                 "gpu_name", "gpu_count", "gpu_driver", "os", "python_version")

VLLM_NOTES = (
    "imported from vllm bench serve: ITL counts the gaps between streamed chunks (a chunk "
    "of k tokens is one gap, where the harness spreads it over k tokens); output throughput "
    "is output tokens over the whole benchmark duration, ramp-up and drain included; "
    "percentiles over all requests of one run (one repetition, no spread); the warmup, "
    "token targets and token-count source are not recorded")
GUIDELLM_NOTES = (
    "imported from guidellm: its time_per_output_token_ms (request latency / output "
    "tokens, TTFT included) is not our TPOT; our TPOT columns hold its "
    "inter_token_latency_ms ((latency - TTFT) / (output tokens - 1)); no token-gap ITL; "
    "throughputs are guidellm's time-weighted means over the benchmark; one repetition")
LLAMA_BENCH_NOTES = (
    "imported from llama-bench: the engine alone (no server, HTTP, tokenizer or sampler), "
    "one sequence; pp = prompt processing only, tg = generation from an empty context "
    "(or n_depth tokens), pg = both; tokens/s is tokens over each repetition's wall "
    "time, mean and std over repetitions; no TTFT or latency percentiles")


# ------------------------------------------------------------------ detection

def is_own_companion(path: Path) -> bool:
    """True for the files `harness bench` writes beside a CSV (requests, power, server
    metrics, machine.json): never results of another tool."""
    return path.name in OWN_NAMES or path.name.endswith(OWN_COMPANIONS)


def _is_llama_bench_record(obj: Any) -> bool:
    return isinstance(obj, dict) and "build_commit" in obj and "avg_ts" in obj \
        and "n_prompt" in obj and "n_gen" in obj


def detect(data: Any) -> str | None:
    """Which tool wrote this parsed JSON document (or list of JSONL records); None when
    it is none of the known formats."""
    if isinstance(data, dict):
        if "total_output_tokens" in data and "mean_ttft_ms" in data and "duration" in data:
            return VLLM
        benches = data.get("benchmarks")
        if isinstance(benches, list) and benches and isinstance(benches[0], dict) \
                and isinstance(benches[0].get("metrics"), dict) \
                and "time_to_first_token_ms" in benches[0]["metrics"]:
            return GUIDELLM
    if isinstance(data, list) and data and all(_is_llama_bench_record(r) for r in data):
        return LLAMA_BENCH
    return None


def _load_json_records(path: Path) -> Any:
    """The parsed document of a .json file, or the records of a .jsonl file; None when
    it does not parse (the caller treats it as an unknown format)."""
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".jsonl":
        records = []
        for line in text.splitlines():
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError:
                    return None
        return records
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return None


def llama_bench_csv_header(header: list[str]) -> bool:
    """True when a CSV header is llama-bench's (`-o csv`)."""
    return {"build_commit", "avg_ts", "n_prompt", "n_gen"} <= set(header)


def read_foreign(path: Path) -> list[dict[str, Any]] | None:
    """Rows (in our schema) of another tool's result file, or None when the file is not
    one of the known formats. Raises UserError naming the file when it is one of them but
    cannot be read (a field missing or of the wrong type)."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            with open(path, encoding="utf-8", newline="") as f:
                reader = csv.DictReader(f)
                if not llama_bench_csv_header(list(reader.fieldnames or [])):
                    return None
                records: Any = list(reader)
            tool = LLAMA_BENCH
        elif suffix in (".json", ".jsonl"):
            records = _load_json_records(path)
            tool = detect(records)
            if tool is None:
                return None
        else:
            return None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise UserError(f"{path}: cannot read ({exc})") from None
    machine = machine_context(path)
    try:
        if tool == VLLM:
            return [from_vllm(records, path, machine)]
        if tool == GUIDELLM:
            return from_guidellm(records, path, machine)
        return from_llama_bench(records, path, machine)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise UserError(f"{path}: looks like {tool} output but cannot be read "
                        f"({type(exc).__name__}: {exc}); give the file as the tool wrote "
                        "it") from None


# ------------------------------------------------------------------ helpers

def machine_context(path: Path) -> dict[str, Any]:
    """Machine columns from a machine.json in the file's folder or the one above, as
    `harness bench` writes in results/<machine>/; empty when there is none."""
    for folder in (path.parent, path.parent.parent):
        candidate = folder / "machine.json"
        if candidate.is_file():
            try:
                data = json.loads(candidate.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, json.JSONDecodeError):
                continue
            if isinstance(data, dict):
                return {k: data.get(k) for k in _MACHINE_KEYS if data.get(k) not in (None, "")}
    return {}


def _num(value: Any) -> float | None:
    """A finite float, or None (missing, null, text, inf, NaN)."""
    if value is None or isinstance(value, bool):
        return None
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _int(value: Any) -> int | None:
    f = _num(value)
    return int(f) if f is not None else None


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "x"


def _base_row(tool: str, path: Path, machine: dict[str, Any], run_id: str) -> dict[str, Any]:
    row = empty_row()
    row.update({"source_tool": tool, "run_id": run_id, "status": "complete",
                "workload": WORKLOAD, "machine_id": "unknown"})
    row.update(machine)
    return row


def _notes(base: str, machine: dict[str, Any], extra: list[str] | None = None) -> str:
    parts = [base]
    if not machine.get("machine_id") or machine.get("machine_id") == "unknown":
        parts.append("machine not recorded by the tool: keep the file in a results/<machine>/"
                     " folder beside that machine's machine.json to give it one")
    parts += extra or []
    return "; ".join(parts)


def _utc_from_epoch(seconds: Any) -> str | None:
    s = _num(seconds)
    if s is None:
        return None
    return _dt.datetime.fromtimestamp(s, _dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# ------------------------------------------------------------------ vllm bench serve

def _vllm_percentile(data: dict[str, Any], metric: str, p: int) -> float | None:
    value = _num(data.get(f"p{p}_{metric}_ms"))
    if value is None and p == 50:
        value = _num(data.get(f"median_{metric}_ms"))
    return value


def from_vllm(data: dict[str, Any], path: Path, machine: dict[str, Any]) -> dict[str, Any]:
    """One row from a `vllm bench serve --save-result` JSON file."""
    model = str(data.get("model_id") or data.get("model") or "?")
    run_id = f"{VLLM}:{_slug(path.parent.name)}:{_slug(model)}"
    row = _base_row(VLLM, path, machine, run_id)
    rate = _num(data.get("request_rate"))  # "inf" (as text) for all at once
    max_conc = _int(data.get("max_concurrency"))
    completed = _int(data.get("completed")) or 0
    failed = _int(data.get("failed")) or 0
    extra = []
    if rate is None:
        mode, concurrency = "closed", max_conc
        if data.get("max_concurrency") is None:
            concurrency = _int(data.get("num_prompts"))
            extra.append("no --max-concurrency: every prompt was sent at once "
                         "(concurrency = number of prompts)")
    else:
        mode, concurrency = "open", max_conc
    date = str(data.get("date") or "")
    m = re.fullmatch(r"(\d{4})(\d{2})(\d{2})-(\d{2})(\d{2})(\d{2})", date)
    started = (f"{m[1]}-{m[2]}-{m[3]}T{m[4]}:{m[5]}:{m[6]}" if m else None)
    if started:
        extra.append("started_at_utc is vllm's local time of day (it records no zone)")
    label = data.get("label")
    row.update({
        "started_at_utc": started, "backend": str(data.get("backend") or "openai"),
        "engine": None, "model": model, "scenario": "serve", "load_mode": mode,
        "concurrency": concurrency, "request_rate_rps": rate, "repetitions": 1,
        "requests": completed + failed, "errors": failed,
        "input_tokens": _int(data.get("total_input_tokens")),
        "output_tokens": _int(data.get("total_output_tokens")),
        "duration_s": _num(data.get("duration")),
        "request_throughput_rps": _num(data.get("request_throughput")),
        "output_throughput_tok_s": _num(data.get("output_throughput")),
        "total_throughput_tok_s": _num(data.get("total_token_throughput")),
        "goodput_rps": _num(data.get("request_goodput")),
    })
    for ours, theirs in (("ttft", "ttft"), ("tpot", "tpot"), ("e2e", "e2el")):
        row[f"{ours}_ms_mean"] = _num(data.get(f"mean_{theirs}_ms"))
        row[f"{ours}_ms_std"] = _num(data.get(f"std_{theirs}_ms"))
        for p in (50, 90, 99):
            row[f"{ours}_ms_p{p}"] = _vllm_percentile(data, theirs, p)
    for p in (50, 90, 99):
        row[f"itl_ms_p{p}"] = _vllm_percentile(data, "itl", p)
    if label:
        extra.append(f"vllm label: {label}")
    row["notes"] = _notes(VLLM_NOTES, machine, extra)
    return row


# ------------------------------------------------------------------ guidellm

def _stat(metrics: dict[str, Any], name: str, key: str = "mean") -> float | None:
    """A statistic of guidellm's successful requests for one metric; percentiles as
    'p50', 'p90', 'p99'."""
    entry = metrics.get(name)
    if not isinstance(entry, dict):
        return None
    ok = entry.get("successful", entry)
    if not isinstance(ok, dict):
        return None
    if key.startswith("p") and key[1:].isdigit():
        return _num((ok.get("percentiles") or {}).get(key))
    return _num(ok.get(key))


def _guidellm_load(strategy: dict[str, Any]) -> tuple[str, int | None, float | None, str]:
    """(load_mode, concurrency, rate, note) of a guidellm strategy."""
    kind = str(strategy.get("type_") or strategy.get("type") or "")
    if kind == "synchronous":
        return "closed", 1, None, ""
    if kind == "concurrent":
        return "closed", _int(strategy.get("streams")), None, ""
    if kind == "throughput":
        return "closed", _int(strategy.get("max_concurrency")), None, \
            "guidellm throughput strategy: as many requests in flight as it could send"
    if kind in ("constant", "poisson", "async"):
        return "open", _int(strategy.get("max_concurrency")), _num(strategy.get("rate")), \
            f"guidellm {kind} arrivals"
    return "closed", _int(strategy.get("max_concurrency")), None, f"guidellm strategy {kind}"


def from_guidellm(data: dict[str, Any], path: Path,
                  machine: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per benchmark of a guidellm JSON report."""
    spec = (data.get("config") or {}).get("spec") or {}
    backend = spec.get("backend") or {}
    model = str(backend.get("model") or "?")
    sources = spec.get("data") or []
    first = sources[0] if isinstance(sources, list) and sources else {}
    in_target = _int(first.get("prompt_tokens")) if isinstance(first, dict) else None
    out_target = _int(first.get("output_tokens")) if isinstance(first, dict) else None
    version = (data.get("metadata") or {}).get("guidellm_version")
    rows = []
    for bench in data["benchmarks"]:
        cfg = bench.get("config") or {}
        m = bench["metrics"]
        mode, concurrency, rate, load_note = _guidellm_load(cfg.get("strategy") or {})
        run_id = f"{GUIDELLM}:{cfg.get('run_id') or _slug(path.stem)}"
        row = _base_row(GUIDELLM, path, machine, run_id)
        totals = m.get("request_totals") or {}
        latency = {k: _stat(m, "request_latency", k) for k in ("mean", "std_dev", "p50",
                                                                  "p90", "p99")}
        row.update({
            "started_at_utc": _utc_from_epoch(bench.get("start_time")),
            "finished_at_utc": _utc_from_epoch(bench.get("end_time")),
            "backend": "openai" if str(backend.get("kind", "")).startswith("openai")
            else backend.get("kind"),
            "engine_version": None, "model": model, "scenario": "serve", "load_mode": mode,
            "concurrency": concurrency, "request_rate_rps": rate, "repetitions": 1,
            "input_tokens_target": in_target, "output_tokens_target": out_target,
            "requests": _int(totals.get("total")),
            "errors": (_int(totals.get("errored")) or 0),
            "input_tokens": _int(_stat(m, "prompt_token_count", "total_sum")),
            "output_tokens": _int(_stat(m, "output_token_count", "total_sum")),
            "duration_s": _num(bench.get("duration")),
            "request_throughput_rps": _stat(m, "requests_per_second"),
            "output_throughput_tok_s": _stat(m, "output_tokens_per_second"),
            "total_throughput_tok_s": _stat(m, "tokens_per_second"),
            "goodput_rps": _num(m.get("request_goodput")),
        })
        for ours, theirs in (("ttft", "time_to_first_token_ms"),
                             ("tpot", "inter_token_latency_ms")):
            row[f"{ours}_ms_mean"] = _stat(m, theirs)
            row[f"{ours}_ms_std"] = _stat(m, theirs, "std_dev")
            for p in ("p50", "p90", "p99"):
                row[f"{ours}_ms_{p}"] = _stat(m, theirs, p)
        for key, value in latency.items():  # request latency is in seconds
            col = {"mean": "e2e_ms_mean", "std_dev": "e2e_ms_std"}.get(key, f"e2e_ms_{key}")
            row[col] = value * 1000.0 if value is not None else None
        extra = [load_note] if load_note else []
        if version:
            extra.append(f"guidellm {version}")
        extra += [str(w.get("message")) for w in bench.get("warnings") or []
                  if isinstance(w, dict) and w.get("message")]
        incomplete = _int(totals.get("incomplete"))
        if incomplete:
            extra.append(f"{incomplete} request(s) cut off at the end of the benchmark")
        row["notes"] = _notes(GUIDELLM_NOTES, machine, extra)
        rows.append(row)
    if not rows:
        raise ValueError("the report holds no benchmarks")
    return rows


# ------------------------------------------------------------------ llama-bench

_QUANT_SIZE = {"Small": "S", "Medium": "M", "Large": "L"}


def llama_bench_quant(model_type: str) -> str | None:
    """'gemma3 270M Q4_K - Medium' -> 'Q4_K_M'; 'llama 7B F16' -> 'F16'."""
    m = re.search(r"\b((?:I?Q\d\w*|[BF]F?\d+|MXFP\d\w*))(?:\s*-\s*(Small|Medium|Large))?\s*$",
                  model_type.strip())
    if not m:
        return None
    return m[1] + (f"_{_QUANT_SIZE[m[2]]}" if m[2] else "")


def _bool(value: Any) -> bool:
    return str(value).strip().lower() in ("1", "true", "yes")


def from_llama_bench(records: list[dict[str, Any]], path: Path,
                     machine: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per llama-bench test (JSON list, JSONL records or CSV rows)."""
    if not records:
        raise ValueError("no tests in the file")
    first_time = str(records[0].get("test_time") or "")
    run_id = f"{LLAMA_BENCH}:{_slug(path.stem)}:{_slug(first_time)}"
    rows = []
    for rec in records:
        n_prompt, n_gen = _int(rec["n_prompt"]) or 0, _int(rec["n_gen"]) or 0
        depth = _int(rec.get("n_depth")) or 0
        avg_ns, avg_ts, std_ts = _num(rec["avg_ns"]), _num(rec["avg_ts"]), _num(rec["stddev_ts"])
        samples = rec.get("samples_ts")
        reps = len(samples) if isinstance(samples, list) else None
        if n_prompt and n_gen:
            scenario = f"pp{n_prompt}+tg{n_gen}"
        else:
            scenario = f"pp{n_prompt}" if n_prompt else f"tg{n_gen}"
        if depth:
            scenario += f"@d{depth}"
        gpus = [g.strip() for g in str(rec.get("gpu_info") or "").split(",") if g.strip()]
        own = {"cpu_model": str(rec.get("cpu_info") or "") or None,
               "gpu_name": gpus[0] if gpus else None, "gpu_count": len(gpus)}
        # a machine.json beside the file describes the machine better than llama-bench
        context = {**own, **machine}
        if not machine:
            hw = own["gpu_name"] or own["cpu_model"] or "unknown"
            context["machine_id"] = f"llama-bench-{_slug(hw).lower()}"
        row = _base_row(LLAMA_BENCH, path, context, run_id)
        settings = {k: rec.get(k) for k in ("n_batch", "n_ubatch", "n_threads", "type_k",
                                            "type_v", "n_gpu_layers", "split_mode",
                                            "flash_attn", "devices", "n_depth")
                    if k in rec}
        reps_n = reps or 1
        seconds = avg_ns / 1e9 if avg_ns else None
        row.update({
            "started_at_utc": str(rec.get("test_time") or "") or None,
            "backend": LLAMA_BENCH, "engine": "llama.cpp",
            "engine_version": f"build {rec.get('build_number')} ({rec.get('build_commit')})",
            "engine_build": str(rec.get("backends") or "") or None,
            "device": ", ".join(gpus) if gpus else "CPU",
            "model": str(rec.get("model_filename") or "?"),
            "model_size_mb": round(_num(rec.get("model_size")) / 2**20, 1)
            if _num(rec.get("model_size")) else None,
            "model_params": _int(rec.get("model_n_params")),
            "model_arch": str(rec.get("model_type") or "").split(" ")[0] or None,
            "quant": llama_bench_quant(str(rec.get("model_type") or "")),
            "settings_json": json.dumps(settings, sort_keys=True),
            "scenario": scenario, "load_mode": "closed", "concurrency": 1,
            "input_tokens_target": n_prompt, "output_tokens_target": n_gen,
            "repetitions": reps, "requests": reps, "errors": 0,
            "input_tokens": n_prompt * reps_n, "output_tokens": n_gen * reps_n,
            "duration_s": seconds, "token_count_source": "engine",
            "total_throughput_tok_s": avg_ts, "total_throughput_tok_s_std": std_ts,
        })
        if n_prompt and not n_gen:
            row.update({"prefill_tok_s": avg_ts, "engine_prefill_tok_s": avg_ts,
                        "e2e_ms_mean": avg_ns / 1e6 if avg_ns else None})
        elif n_gen and not n_prompt:
            row.update({"output_throughput_tok_s": avg_ts,
                        "output_throughput_tok_s_std": std_ts,
                        "decode_tok_s": avg_ts, "engine_decode_tok_s": avg_ts,
                        "tpot_ms_mean": avg_ns / 1e6 / n_gen if avg_ns else None,
                        "e2e_ms_mean": avg_ns / 1e6 if avg_ns else None})
        else:
            row.update({"output_throughput_tok_s": n_gen / seconds if seconds else None,
                        "e2e_ms_mean": avg_ns / 1e6 if avg_ns else None})
        extra = []
        if reps is None:
            extra.append("repetitions not recorded (CSV output has no samples)")
        if _bool(rec.get("embeddings")):
            extra.append("embeddings mode")
        row["notes"] = _notes(LLAMA_BENCH_NOTES, context, extra)
        rows.append(row)
    return rows


__all__ = ["FORMATS_HELP", "GUIDELLM", "LLAMA_BENCH", "TOOLS", "VLLM", "WORKLOAD", "detect",
           "from_guidellm", "from_llama_bench", "from_vllm", "is_own_companion",
           "llama_bench_csv_header", "llama_bench_quant", "machine_context", "read_foreign"]
