"""Metrics as pure functions of per-request records (definitions in README.md).

A `RequestRecord` holds what the client saw for one request: when it was sent and the
arrival time and token count of each event. Everything else is derived here, and a
metric that is undefined for a request (TPOT with one output token) is `None`.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields
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
    end_ns: int | None = None  # when the client was done with it: stream closed or error
    finish_reason: str | None = None  # as the engine said (length, stop, ...); None: unknown
    target_output_tokens: int | None = None  # the output length asked for

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
    def short_output(self) -> bool | None:
        """True when a successful request produced fewer output tokens than it asked for;
        None for a failed request or an unknown target."""
        if not self.ok or not self.target_output_tokens:
            return None
        return self.output_tokens < self.target_output_tokens

    @property
    def in_flight_ns(self) -> tuple[int, int]:
        """(send, end) of the request as the client held it; records without `end_ns`
        end at their last token (or, without one, at their send)."""
        end = self.end_ns if self.end_ns is not None else (self.completed_ns or self.send_ns)
        return self.send_ns, max(end, self.send_ns)

    @property
    def send_lag_ms(self) -> float | None:
        """How late the request was sent against its open-loop schedule."""
        if self.scheduled_ns is None:
            return None
        return (self.send_ns - self.scheduled_ns) / NS_PER_MS

    def to_json(self) -> dict[str, Any]:
        """The record plus its derived metrics, for the per-request JSONL file.

        Shallow (the lists copied, nothing deeper to copy): a tenth of `asdict`'s cost,
        and this runs once per request while other streams are measured."""
        data = {name: getattr(self, name) for name in _RECORD_FIELDS}
        data["event_ns"], data["event_tokens"] = list(self.event_ns), list(self.event_tokens)
        data.update(
            ok=self.ok,
            ttft_ms=self.ttft_ms,
            tpot_ms=self.tpot_ms,
            e2e_ms=self.e2e_ms,
            prefill_tok_s=self.prefill_tok_s,
            send_lag_ms=self.send_lag_ms,
            short_output=self.short_output,
        )
        return data


_RECORD_FIELDS = tuple(f.name for f in fields(RequestRecord))


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


# The percentiles of every latency column (ttft, tpot, itl, e2e): `<name>_ms_p<q>`.
PERCENTILES = (50, 90, 95, 99)

# A closed-loop row whose requests in flight averaged less than this fraction of its
# concurrency did not load the machine as labelled: it is not a capacity measurement.
CAPACITY_MIN_FRACTION = 0.9


def _steps(intervals: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """(time, +1 or -1) for each start and end of the intervals of positive length,
    in time order, ends before starts at the same instant."""
    steps = [(t, d) for s, e in intervals if e > s for t, d in ((s, 1), (e, -1))]
    steps.sort()
    return steps


def achieved_concurrency(intervals: Sequence[tuple[int, int]]
                         ) -> tuple[float | None, int | None]:
    """(time-weighted mean, peak) of the number of intervals open at once, over the window
    from the first start to the last end; (None, None) without a window.

    The mean is Σ interval lengths / window length: [0, 10] and [5, 10] give 15 / 10 = 1.5
    in flight on average, 2 at the peak."""
    if not intervals:
        return None, None
    start = min(s for s, _ in intervals)
    end = max(e for _, e in intervals)
    if end <= start:
        return None, None
    busy = sum(max(e - s, 0) for s, e in intervals)
    peak = level = 0
    for _, d in _steps(intervals):
        level += d
        peak = max(peak, level)
    return busy / (end - start), peak


def full_load_segments(intervals: Sequence[tuple[int, int]],
                       n: int) -> list[tuple[int, int]]:
    """The spans during which at least `n` intervals are open at once, in time order.

    In a closed loop a stream sends its next request just after the last one ends: the
    short dip below `n` between the two ends one span and starts the next, so the union
    of the spans runs from the first moment all `n` streams are busy to the start of the
    drain, less those hand-over gaps."""
    segments: list[tuple[int, int]] = []
    level, opened = 0, None
    for t, d in _steps(intervals):
        level += d
        if level >= n and opened is None:
            opened = t
        elif level < n and opened is not None:
            if t > opened:
                segments.append((opened, t))
            opened = None
    return segments


def steady_state(records: Sequence[RequestRecord],
                 n: int) -> tuple[float, float] | None:
    """(output tokens, seconds) while all `n` streams were busy (`full_load_segments` of
    the requests' send-to-end spans): ramp-up and drain are left out. Tokens are counted
    where their events arrived, in the half-open spans (start, end]; each event's tokens
    are scaled so that a successful request's events add up to its N_out (usage is the
    authority on the count, the events on the timing); failed requests occupy a stream
    but add no tokens. None when all `n` were never busy at once, or no token arrived
    while they were."""
    segments = full_load_segments([r.in_flight_ns for r in records], n)
    if not segments:
        return None
    starts = [s for s, _ in segments]
    tokens = 0.0
    for r in records:
        listed = sum(r.event_tokens)
        if not r.ok or not listed:
            continue
        scale = r.output_tokens / listed
        for t, k in zip(r.event_ns, r.event_tokens):
            i = bisect.bisect_left(starts, t) - 1  # the last span starting before t
            if i >= 0 and t <= segments[i][1]:
                tokens += k * scale
    if tokens <= 0:
        return None
    return tokens, sum(e - s for s, e in segments) / NS_PER_S


def capacity_ok(achieved_mean: float | None, target: int | None) -> int | None:
    """1 when the requests in flight averaged at least CAPACITY_MIN_FRACTION of the
    target concurrency, 0 when not (or unknown); None without a target (open loop)."""
    if not target:
        return None
    return int(achieved_mean is not None and achieved_mean >= CAPACITY_MIN_FRACTION * target)


def concurrency_summary(records: Sequence[RequestRecord],
                        target: int | None = None) -> dict[str, Any]:
    """In-flight truth of a scenario row: achieved concurrency (mean over repetitions of
    each repetition's time-weighted mean; peak over all), steady-state output throughput
    while all `target` streams were busy (mean over the repetitions that had such a
    window) and `capacity_ok`. Without a `target` (open loop) no steady state."""
    means: list[float] = []
    peaks: list[int] = []
    steady_rates: list[float] = []
    steady_s: list[float] = []
    for k in sorted({r.repetition for r in records}):
        rep = [r for r in records if r.repetition == k]
        mean_k, peak_k = achieved_concurrency([r.in_flight_ns for r in rep])
        if mean_k is not None and peak_k is not None:
            means.append(mean_k)
            peaks.append(peak_k)
        steady = steady_state(rep, target) if target else None
        if steady is not None and steady[1] > 0:
            steady_rates.append(steady[0] / steady[1])
            steady_s.append(steady[1])
    achieved = mean(means)
    return {
        "concurrency_achieved_mean": achieved,
        "concurrency_achieved_peak": max(peaks) if peaks else None,
        "output_throughput_steady_tok_s": mean(steady_rates),
        "steady_duration_s": mean(steady_s),
        "capacity_ok": capacity_ok(achieved, target),
    }


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
    target_concurrency: int | None = None,
) -> dict[str, Any]:
    """Summary columns of one scenario over all its repetitions; `api_cost_usd` from the
    tokens of the successful requests × `price_usd_per_mtok` (input, output) when given;
    the in-flight columns of `concurrency_summary` against `target_concurrency`.

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
        "short_outputs": sum(1 for r in ok if r.short_output),
        **concurrency_summary(records, target_concurrency),
    }
    for name, values in (("ttft_ms", ttft), ("tpot_ms", tpot), ("e2e_ms", e2e)):
        summary[f"{name}_mean"] = mean(values)
        summary[f"{name}_std"] = stdev(values)
        for q in PERCENTILES:
            summary[f"{name}_p{q}"] = percentile(values, q)
    for q in PERCENTILES:
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
