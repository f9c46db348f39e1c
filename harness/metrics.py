"""Metrics as pure functions of per-request records (definitions in README.md).

A `RequestRecord` holds what the client saw for one request: when it was sent and the
arrival time and token count of each event. Everything else is derived here, and a
metric that is undefined for a request (TPOT with one output token) is `None`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

NS_PER_MS = 1_000_000
NS_PER_S = 1_000_000_000


@dataclass
class RequestRecord:
    """One request as measured by the client; times are perf_counter_ns values."""

    request_id: str
    scenario: str
    repetition: int
    send_ns: int
    input_tokens: int = 0
    output_tokens: int = 0
    token_count_source: str = "events"  # engine | tokenizer | events
    event_ns: list[int] = field(default_factory=list)  # arrival of each event with content
    event_tokens: list[int] = field(default_factory=list)  # tokens held by each such event
    error: str | None = None  # error class when the request failed
    error_message: str = ""
    scheduled_ns: int | None = None  # open loop: when the schedule said to send it
    engine_prefill_ms: float | None = None
    engine_decode_ms: float | None = None
    engine_prefill_tokens: int | None = None
    engine_decode_tokens: int | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and bool(self.event_ns)

    @property
    def ttft_ms(self) -> float | None:
        """First event carrying content − send time."""
        if not self.event_ns:
            return None
        return (self.event_ns[0] - self.send_ns) / NS_PER_MS

    @property
    def e2e_ms(self) -> float | None:
        """Last event carrying a token − send time (usage-only trailers excluded)."""
        if not self.event_ns:
            return None
        return (self.event_ns[-1] - self.send_ns) / NS_PER_MS

    @property
    def completed_ns(self) -> int | None:
        return self.event_ns[-1] if self.event_ns else None

    @property
    def tpot_ms(self) -> float | None:
        """(E2E − TTFT) / (N_out − 1); None when N_out < 2."""
        ttft, e2e = self.ttft_ms, self.e2e_ms
        if ttft is None or e2e is None or self.output_tokens < 2:
            return None
        return (e2e - ttft) / (self.output_tokens - 1)

    @property
    def itl_ms(self) -> list[float]:
        """Per-token gaps: an event holding k tokens spreads its gap evenly over k.

        The extra tokens of the first event arrived with it and count as zero gaps, so
        the gaps sum to E2E − TTFT and number N_out − 1 when event counts are exact.
        """
        gaps: list[float] = []
        for i, (t, k) in enumerate(zip(self.event_ns, self.event_tokens)):
            k = max(int(k), 1)
            if i == 0:
                gaps.extend([0.0] * (k - 1))
                continue
            share = (t - self.event_ns[i - 1]) / NS_PER_MS / k
            gaps.extend([share] * k)
        return gaps

    @property
    def prefill_tok_s(self) -> float | None:
        """Input tokens / TTFT."""
        ttft = self.ttft_ms
        if not ttft or not self.input_tokens:
            return None
        return self.input_tokens / (ttft / 1000)

    @property
    def send_lag_ms(self) -> float | None:
        """How late the request was sent against its open-loop schedule."""
        if self.scheduled_ns is None:
            return None
        return (self.send_ns - self.scheduled_ns) / NS_PER_MS

    def to_json(self) -> dict[str, Any]:
        """The record plus its derived metrics, for the per-request JSONL file."""
        data = asdict(self)
        data.update(
            ok=self.ok,
            ttft_ms=self.ttft_ms,
            tpot_ms=self.tpot_ms,
            e2e_ms=self.e2e_ms,
            prefill_tok_s=self.prefill_tok_s,
            send_lag_ms=self.send_lag_ms,
        )
        return data


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0–100) with linear interpolation between ranks; None if empty."""
    if not values:
        return None
    ordered = sorted(values)
    if len(ordered) == 1:
        return float(ordered[0])
    rank = (len(ordered) - 1) * q / 100.0
    lo = math.floor(rank)
    hi = min(lo + 1, len(ordered) - 1)
    frac = rank - lo
    return float(ordered[lo] + (ordered[hi] - ordered[lo]) * frac)


def mean(values: Iterable[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return sum(vals) / len(vals) if vals else None


def stdev(values: Iterable[float | None]) -> float | None:
    """Sample standard deviation; 0.0 for a single value, None for none."""
    vals = [v for v in values if v is not None]
    if not vals:
        return None
    if len(vals) == 1:
        return 0.0
    m = sum(vals) / len(vals)
    return math.sqrt(sum((v - m) ** 2 for v in vals) / (len(vals) - 1))


def window_s(records: Sequence[RequestRecord]) -> float | None:
    """Last completion − first send over the given requests, in seconds."""
    done = [r for r in records if r.ok]
    if not done:
        return None
    start = min(r.send_ns for r in records)
    end = max(r.completed_ns for r in done if r.completed_ns is not None)
    return (end - start) / NS_PER_S if end > start else None


def meets_slo(r: RequestRecord, slo_ttft_ms: float | None, slo_tpot_ms: float | None) -> bool:
    """True when a request succeeded and met every SLO given (None = no limit)."""
    if not r.ok:
        return False
    if slo_ttft_ms is not None and (r.ttft_ms is None or r.ttft_ms > slo_ttft_ms):
        return False
    if slo_tpot_ms is not None and r.tpot_ms is not None and r.tpot_ms > slo_tpot_ms:
        return False
    return True


def repetition_summary(
    records: Sequence[RequestRecord],
    slo_ttft_ms: float | None = None,
    slo_tpot_ms: float | None = None,
) -> dict[str, float | None]:
    """Throughput of one repetition: its window and the token rates over it.

    A repetition whose requests all failed made nothing: its rates are 0 (it counts in
    the mean over repetitions), its window is undefined (None)."""
    window = window_s(records)
    ok = [r for r in records if r.ok]
    out_tok = sum(r.output_tokens for r in ok)
    in_tok = sum(r.input_tokens for r in ok)
    if records and not ok:
        return {"duration_s": None, "output_throughput_tok_s": 0.0,
                "total_throughput_tok_s": 0.0, "request_throughput_rps": 0.0,
                "goodput_rps": 0.0}
    if not window:
        return {"duration_s": window, "output_throughput_tok_s": None,
                "total_throughput_tok_s": None, "request_throughput_rps": None,
                "goodput_rps": None}
    good = sum(1 for r in records if meets_slo(r, slo_ttft_ms, slo_tpot_ms))
    return {
        "duration_s": window,
        "output_throughput_tok_s": out_tok / window,
        "total_throughput_tok_s": (out_tok + in_tok) / window,
        "request_throughput_rps": len(ok) / window,
        "goodput_rps": good / window,
    }


def _ratio_of_sums(num: Iterable[float | None], den: Iterable[float | None]) -> float | None:
    pairs = [(n, d) for n, d in zip(num, den) if n is not None and d]
    total_d = sum(d for _, d in pairs)
    return sum(n for n, _ in pairs) / total_d if total_d else None


def scenario_summary(
    records: Sequence[RequestRecord],
    slo_ttft_ms: float | None = None,
    slo_tpot_ms: float | None = None,
    price_usd_per_mtok: tuple[float, float] | None = None,
) -> dict[str, Any]:
    """Summary columns of one scenario over all its repetitions; `api_cost_usd` from the
    tokens of the successful requests × `price_usd_per_mtok` (input, output) when given.

    Rates over windows are computed per repetition and reported as mean and std;
    percentiles are over all measured requests pooled.
    """
    reps = sorted({r.repetition for r in records})
    per_rep = [
        repetition_summary([r for r in records if r.repetition == k], slo_ttft_ms, slo_tpot_ms)
        for k in reps
    ]
    ok = [r for r in records if r.ok]
    ttft = [r.ttft_ms for r in ok if r.ttft_ms is not None]
    tpot = [r.tpot_ms for r in ok if r.tpot_ms is not None]
    e2e = [r.e2e_ms for r in ok if r.e2e_ms is not None]
    itl = [g for r in ok for g in r.itl_ms]
    lags = [r.send_lag_ms for r in records if r.send_lag_ms is not None]

    error_counts: dict[str, int] = {}
    for r in records:
        if r.error is not None:
            error_counts[r.error] = error_counts.get(r.error, 0) + 1
    sources = {r.token_count_source for r in ok}
    worst_source = next((s for s in ("events", "tokenizer", "engine") if s in sources), "")

    tpot_mean = mean(tpot)
    summary: dict[str, Any] = {
        "requests": len(records),
        "errors": sum(error_counts.values()),
        "error_kinds": ";".join(f"{k}={v}" for k, v in sorted(error_counts.items())),
        "input_tokens": sum(r.input_tokens for r in ok),
        "output_tokens": sum(r.output_tokens for r in ok),
        "token_count_source": worst_source,
        "duration_s": mean(p["duration_s"] for p in per_rep),
        "request_throughput_rps": mean(p["request_throughput_rps"] for p in per_rep),
        "output_throughput_tok_s": mean(p["output_throughput_tok_s"] for p in per_rep),
        "output_throughput_tok_s_std": stdev(p["output_throughput_tok_s"] for p in per_rep),
        "total_throughput_tok_s": mean(p["total_throughput_tok_s"] for p in per_rep),
        "total_throughput_tok_s_std": stdev(p["total_throughput_tok_s"] for p in per_rep),
        "goodput_rps": mean(p["goodput_rps"] for p in per_rep),
        "slo_ttft_ms": slo_ttft_ms,
        "slo_tpot_ms": slo_tpot_ms,
        # Token-weighted: Σ input tokens / Σ TTFT.
        "prefill_tok_s": _ratio_of_sums((r.input_tokens for r in ok),
                                        ((r.ttft_ms or 0) / 1000 for r in ok)),
        "decode_tok_s": 1000.0 / tpot_mean if tpot_mean else None,
        "engine_prefill_tok_s": _ratio_of_sums(
            (r.engine_prefill_tokens for r in ok),
            ((r.engine_prefill_ms or 0) / 1000 for r in ok)),
        "engine_decode_tok_s": _ratio_of_sums(
            (r.engine_decode_tokens for r in ok),
            ((r.engine_decode_ms or 0) / 1000 for r in ok)),
        "send_lag_ms_p99": percentile(lags, 99),
    }
    for name, values in (("ttft_ms", ttft), ("tpot_ms", tpot), ("e2e_ms", e2e)):
        summary[f"{name}_mean"] = mean(values)
        summary[f"{name}_std"] = stdev(values)
        for q in (50, 90, 99):
            summary[f"{name}_p{q}"] = percentile(values, q)
    for q in (50, 90, 99):
        summary[f"itl_ms_p{q}"] = percentile(itl, q)
    costs = [cost_usd(price_usd_per_mtok, r.input_tokens, r.output_tokens) for r in ok]
    summary["api_cost_usd"] = (sum(c for c in costs if c is not None)
                               if any(c is not None for c in costs) else None)
    return summary


def cost_usd(price_usd_per_mtok: tuple[float, float] | None, input_tokens: int | None,
             output_tokens: int | None) -> float | None:
    """Tokens × (input, output) USD per million tokens; None when the price or the
    usage is unknown."""
    if price_usd_per_mtok is None or input_tokens is None or output_tokens is None:
        return None
    return (input_tokens * price_usd_per_mtok[0]
            + output_tokens * price_usd_per_mtok[1]) / 1_000_000
