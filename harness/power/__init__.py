"""Power and energy meters (one module per source) behind one interface.

`open_session(mode)` returns a `PowerSession` that the runner uses around the measured
phase: `measure_idle(seconds)`, `start()`, `stop()` → columns for the result row plus
timeline samples. Until meters are configured the session reports `unavailable`.
"""

from __future__ import annotations

from typing import Any


class PowerSession:
    """No meter: every energy column empty, method `unavailable` with the reason."""

    def __init__(self, reason: str = "power measurement off (--power none)") -> None:
        self.reason = reason

    def measure_idle(self, seconds: float) -> None:
        return None

    def start(self) -> None:
        return None

    def stop(self) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """(row columns, timeline samples)."""
        return {"power_method": "unavailable", "power_source": "none"}, []

    def describe(self) -> str:
        return self.reason


def open_session(mode: str = "auto", **options: Any) -> PowerSession:
    """The power session for `--power MODE`."""
    if mode == "none":
        return PowerSession()
    return PowerSession(f"no power meter implemented yet for --power {mode}")


def meter_status() -> list[dict[str, Any]]:
    """Each power meter this harness knows: name, available (bool), reason."""
    return [{"name": "none", "available": True, "reason": "no meters implemented yet"}]
