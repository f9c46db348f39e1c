"""What one `bench` run is given besides the workload (`RunOptions`), what it has
measured so far (`RunState`), and one load level of a scenario (`SweepPoint`)."""

from __future__ import annotations

import contextvars
from dataclasses import dataclass, field
from typing import Any

# The stall timeout of the requests of this run (set by run_workload; tasks inherit it).
STALL_TIMEOUT_S: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "stall_timeout_s", default=None)


@dataclass
class RunOptions:
    """Settings of one `bench` invocation that are not part of the workload."""

    request_timeout_s: float = 600.0
    idle_power_s: float = 0.0
    slo_ttft_ms: float | None = None
    slo_tpot_ms: float | None = None
    quiet: bool = False
    stall_timeout_s: float | None = None  # longest gap between tokens after the first
    # (input, output) USD per million tokens of the API measured, looked up once by the
    # bench command; api_cost_usd = tokens x price (None: not a priced API)
    price_usd_per_mtok: tuple[float, float] | None = None
    # --concurrency auto: closed-loop concurrency doubled from 1 up to `max_concurrency`
    concurrency_auto: bool = False
    max_concurrency: int = 64
    labels: dict[str, str] = field(default_factory=dict)  # --label KEY=VALUE, every row


@dataclass
class SweepPoint:
    """One load level of a scenario: a concurrency (closed loop) or a rate (open loop)."""

    concurrency: int
    rate_rps: float | None = None

    @property
    def label(self) -> str:
        return f"rate={self.rate_rps:g}/s" if self.rate_rps else f"c={self.concurrency}"


@dataclass
class RunState:
    """What has been measured so far; the runner marks rows partial when interrupted."""

    interrupted: bool = False
    rows: list[dict[str, Any]] = field(default_factory=list)
