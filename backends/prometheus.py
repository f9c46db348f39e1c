"""Prometheus text exposition → numbers, and the server-side figures of one measured window.

Pure functions: `parse_metrics(text)` reads a `/metrics` page into samples (with
`prometheus_client`'s parser where it is installed, as it is beside vLLM; else line by
line; either way a line that cannot be read is named in the samples' `notes`, never
dropped in silence), `window_delta(before, after)` subtracts counters and histograms
between two scrapes,
and `vllm_summary(delta, peaks)` turns a vLLM server's delta into result columns.
Histogram means are Δsum / Δcount over the window, so requests served before the run
(warmup, other clients) do not count.
"""

from __future__ import annotations

import math
import re
from typing import Any

try:  # the reference parser, installed with vLLM (and the test extra)
    from prometheus_client.parser import text_string_to_metric_families
except ImportError:  # pragma: no cover - exercised by forcing the fallback in tests
    text_string_to_metric_families = None

# name{label="v",...} value [timestamp]
_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})?\s+(\S+)(?:\s+\S+)?$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')

MAX_NOTED_LINES = 5  # skipped lines quoted in the notes; more are counted


class Samples(dict[str, list[tuple[dict[str, str], float]]]):
    """name → [(labels, value), ...] of one scrape; `notes` says how the page was read
    when it was not read whole (lines skipped, the parser that gave up)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.notes: list[str] = []


def _parse_with_client(text: str) -> Samples:
    samples = Samples()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((dict(sample.labels),
                                                        float(sample.value)))
    return samples


def _parse_lines(text: str) -> Samples:
    """The fallback parser: one sample a line; a line it cannot read is noted."""
    samples = Samples()
    skipped: list[str] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        m = _LINE.match(line)
        value = None
        if m:
            try:
                value = float(m.group(3))
            except ValueError:
                value = None
        if m is None or value is None:
            skipped.append(f"line {number}: {line[:80]!r}")
            continue
        labels = dict(_LABEL.findall(m.group(2) or ""))
        samples.setdefault(m.group(1), []).append((labels, value))
    if skipped:
        more = len(skipped) - MAX_NOTED_LINES
        samples.notes.append(f"metrics page: skipped {len(skipped)} line(s) that are not "
                             "samples: " + "; ".join(skipped[:MAX_NOTED_LINES])
                             + (f"; and {more} more" if more > 0 else ""))
    return samples


def parse_metrics(text: str) -> Samples:
    """Every sample of a Prometheus text page: name → [(labels, value), ...], read by
    prometheus_client's parser where installed; where it is absent, or where it refuses
    the page (it stops at the first bad line), line by line, skipping the lines that are
    not samples and naming them in the result's `notes`."""
    if text_string_to_metric_families is not None:
        try:
            return _parse_with_client(text)
        except ValueError as exc:
            samples = _parse_lines(text)
            samples.notes.insert(0, f"prometheus_client could not parse the metrics page "
                                    f"({exc}); read it line by line")
            return samples
    return _parse_lines(text)


def parse_notes(*scrapes: Any) -> list[str]:
    """The notes of scrapes parsed by `parse_metrics` (none for other sample dicts)."""
    return list(dict.fromkeys(n for s in scrapes for n in getattr(s, "notes", [])))


def total(samples: Samples, name: str, **match: str) -> float | None:
    """Sum of `name` over all label sets that contain `match`; None when absent."""
    rows = [v for labels, v in samples.get(name, [])
            if all(labels.get(k) == val for k, val in match.items())]
    rows = [v for v in rows if not math.isnan(v)]
    return sum(rows) if rows else None


def first_present(samples: Samples, names: tuple[str, ...]) -> str | None:
    """The first of `names` the page has (metric names changed across vLLM versions)."""
    return next((n for n in names if n in samples), None)


def window_delta(before: Samples, after: Samples) -> dict[str, float]:
    """after − before for every counter-like sample (`_total`, `_sum`, `_count`,
    `_bucket`), summed over label sets except `le`; keys keep `le` for buckets."""
    out: dict[str, float] = {}

    def keyed(samples: Samples) -> dict[str, float]:
        acc: dict[str, float] = {}
        for name, rows in samples.items():
            if not name.endswith(("_total", "_sum", "_count", "_bucket")):
                continue
            for labels, value in rows:
                key = name + (f'{{le="{labels["le"]}"}}' if "le" in labels else "")
                acc[key] = acc.get(key, 0.0) + value
        return acc

    b, a = keyed(before), keyed(after)
    for key, value in a.items():
        out[key] = value - b.get(key, 0.0)
    return out


def histogram_mean_ms(delta: dict[str, float], base: str) -> float | None:
    """Δsum / Δcount of histogram `base` (in seconds) as milliseconds."""
    count = delta.get(base + "_count")
    s = delta.get(base + "_sum")
    if not count or s is None:
        return None
    return s / count * 1000.0


def histogram_quantile_ms(delta: dict[str, float], base: str, q: float) -> float | None:
    """Quantile q (0–1) of histogram `base` over the window, interpolated within the
    bucket as Prometheus' histogram_quantile does; milliseconds."""
    buckets = []
    prefix = base + '_bucket{le="'
    for key, value in delta.items():
        if key.startswith(prefix):
            le = key[len(prefix):-2]
            buckets.append((math.inf if le == "+Inf" else float(le), value))
    buckets.sort()
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    prev_le, prev_count = 0.0, 0.0
    for le, count in buckets:
        if count >= rank:
            if math.isinf(le):
                return prev_le * 1000.0
            width = count - prev_count
            frac = (rank - prev_count) / width if width > 0 else 1.0
            return (prev_le + (le - prev_le) * frac) * 1000.0
        prev_le, prev_count = le, count
    return None


# vLLM's metric names; later names first where versions renamed them.
VLLM_TTFT = ("vllm:time_to_first_token_seconds",)
VLLM_ITL = ("vllm:inter_token_latency_seconds", "vllm:time_per_output_token_seconds")
VLLM_E2E = ("vllm:e2e_request_latency_seconds",)
VLLM_QUEUE = ("vllm:request_queue_time_seconds",)
VLLM_PREFILL = ("vllm:request_prefill_time_seconds",)
VLLM_DECODE = ("vllm:request_decode_time_seconds",)
VLLM_KV_USAGE = ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc")
VLLM_RUNNING = ("vllm:num_requests_running",)
VLLM_WAITING = ("vllm:num_requests_waiting",)


def _hist(samples: Samples, names: tuple[str, ...]) -> str | None:
    """The base name of the first histogram of `names` present on the page."""
    for n in names:
        if n + "_count" in samples:
            return n
    return None


def gauge(samples: Samples, names: tuple[str, ...]) -> float | None:
    name = first_present(samples, names)
    return total(samples, name) if name else None


def vllm_summary(before: Samples, after: Samples,
                 peaks: dict[str, float | None] | None = None) -> dict[str, Any]:
    """Result columns from two scrapes of a vLLM server around a measured window.

    `peaks` holds the highest KV-cache usage (0–1) and running/waiting requests seen by
    sampling during the window (gauges are instantaneous, so two scrapes miss them).
    """
    delta = window_delta(before, after)
    peaks = peaks or {}

    def counter(name: str) -> float | None:
        return delta.get(name) if name in delta else None

    cols: dict[str, Any] = {
        "server_prompt_tokens": counter("vllm:prompt_tokens_total"),
        "server_generation_tokens": counter("vllm:generation_tokens_total"),
        "server_preemptions": counter("vllm:num_preemptions_total"),
    }
    for col, names in (("server_ttft_ms_mean", VLLM_TTFT), ("server_itl_ms_mean", VLLM_ITL),
                       ("server_e2e_ms_mean", VLLM_E2E),
                       ("server_queue_ms_mean", VLLM_QUEUE)):
        base = _hist(after, names)
        cols[col] = histogram_mean_ms(delta, base) if base else None
    kv = peaks.get("kv_cache_usage")
    cols["server_kv_cache_usage_peak_pct"] = kv * 100.0 if kv is not None else None
    cols["server_requests_running_peak"] = peaks.get("requests_running")
    return cols


def vllm_details(before: Samples, after: Samples) -> dict[str, Any]:
    """Everything worth keeping beside the columns: histogram means and p50/p90/p99,
    counter deltas and the gauges at the end of the window."""
    delta = window_delta(before, after)
    out: dict[str, Any] = {"counters": {k: v for k, v in delta.items()
                                        if k.endswith("_total") and k.startswith("vllm:")}}
    hists: dict[str, Any] = {}
    for names in (VLLM_TTFT, VLLM_ITL, VLLM_E2E, VLLM_QUEUE, VLLM_PREFILL, VLLM_DECODE):
        base = _hist(after, names)
        if base is None:
            continue
        hists[base] = {
            "count": delta.get(base + "_count"),
            "mean_ms": histogram_mean_ms(delta, base),
            **{f"p{int(q * 100)}_ms": histogram_quantile_ms(delta, base, q)
               for q in (0.5, 0.9, 0.99)},
        }
    out["histograms"] = hists
    out["gauges_end"] = {n: total(after, n) for n in (*VLLM_KV_USAGE, *VLLM_RUNNING,
                                                      *VLLM_WAITING) if n in after}
    notes = parse_notes(before, after)
    if notes:
        out["parse_notes"] = notes
    return out


# llama.cpp's llama-server (`--metrics`): counters since the server started, and gauges.
LLAMACPP_PROCESSING = ("llamacpp:requests_processing",)
LLAMACPP_DEFERRED = ("llamacpp:requests_deferred",)


def _llamacpp_busy_slots(samples: Samples) -> float | None:
    """Busy slots summed over every llama_decode() call so far: the server exports the
    running average (n_busy_slots_per_decode) and the call count (n_decode_total)."""
    avg = total(samples, "llamacpp:n_busy_slots_per_decode")
    calls = total(samples, "llamacpp:n_decode_total")
    return avg * calls if avg is not None and calls is not None else None


def llamacpp_summary(before: Samples, after: Samples,
                     peaks: dict[str, float | None] | None = None) -> dict[str, Any]:
    """Result columns from two scrapes of a llama-server around a measured window: the
    tokens it prefilled and generated, and the most requests it ran at once (sampled).
    It has no latency histograms, so the latency columns stay empty."""
    delta = window_delta(before, after)
    peaks = peaks or {}
    running = peaks.get("requests_running")
    return {
        "server_prompt_tokens": delta.get("llamacpp:prompt_tokens_total"),
        "server_generation_tokens": delta.get("llamacpp:tokens_predicted_total"),
        "server_requests_running_peak": int(running) if running is not None else None,
    }


def llamacpp_details(before: Samples, after: Samples) -> dict[str, Any]:
    """Beside the columns: every counter's delta, the server's own prefill and per-slot
    decode rates over the window, the mean busy slots per llama_decode() call (how many
    requests each batch held), and the gauges at the end."""
    delta = window_delta(before, after)
    out: dict[str, Any] = {"counters": {k: v for k, v in delta.items()
                                        if k.startswith("llamacpp:")}}

    def rate(tokens: str, seconds: str) -> float | None:
        t, s = delta.get(tokens), delta.get(seconds)
        return t / s if t is not None and s else None

    out["prompt_tok_s"] = rate("llamacpp:prompt_tokens_total",
                               "llamacpp:prompt_seconds_total")
    # tokens_predicted_seconds sums each slot's generation time: a per-stream rate
    out["decode_tok_s_per_slot"] = rate("llamacpp:tokens_predicted_total",
                                        "llamacpp:tokens_predicted_seconds_total")
    b, a = _llamacpp_busy_slots(before), _llamacpp_busy_slots(after)
    calls = delta.get("llamacpp:n_decode_total")
    out["busy_slots_per_decode_mean"] = (a - (b or 0.0)) / calls \
        if a is not None and calls else None
    out["gauges_end"] = {n: total(after, n) for n in (*LLAMACPP_PROCESSING,
                                                      *LLAMACPP_DEFERRED) if n in after}
    return out
