"""Apple Silicon: SoC energy from IOReport, through `zeus-apple-silicon` (no sudo) where
it imports, else `sudo -n powermetrics` in plist mode, else unavailable with the reason.

Apple's energy counters (which powermetrics also reads) are the SoC's own model-based
estimates, not a power sensor, so these readings are labelled `estimated`.
"""

from __future__ import annotations

import platform
import plistlib
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

from harness.power.base import ESTIMATED, Meter, Poller, PowerError, Reading

APPLE_NOTE = "Apple's energy counters are model-based estimates of the SoC, not a sensor"
POWERMETRICS_INTERVAL_MS = 100
POWERMETRICS_FIRST_SAMPLE_TIMEOUT_S = 10.0  # sudo, start-up and the first interval
POWERMETRICS_CMD = ["sudo", "-n", "powermetrics", "--samplers", "cpu_power,gpu_power",
                    "-i", str(POWERMETRICS_INTERVAL_MS), "-f", "plist"]
ZEUS_PARTS = ("cpu_total_mj", "gpu_mj", "ane_mj", "dram_mj")


# -- powermetrics plist parsing (pure) ---------------------------------------------------
@dataclass
class PmSample:
    """One powermetrics sample: the interval it covers and the SoC energy in it."""

    elapsed_s: float
    energy_j: float
    parts_j: dict[str, float]
    t_end: float = 0.0  # perf_counter when it arrived (set by the reader)

    @property
    def power_w(self) -> float:
        return self.energy_j / self.elapsed_s if self.elapsed_s > 0 else 0.0


def parse_plist_sample(data: bytes) -> PmSample:
    """One plist document from `powermetrics -f plist` → energy of its interval.

    Uses `processor.{cpu,gpu,ane}_energy` (mJ per interval) where present, else the
    `*_power` (mW) keys times `elapsed_ns`; newer macOS puts the GPU in a `gpu` dict."""
    try:
        doc = plistlib.loads(data.strip(b"\0\n\r\t "))
    except Exception as exc:  # noqa: BLE001 - plistlib raises several types
        raise PowerError(f"powermetrics: unreadable plist sample: {exc}") from None
    elapsed_s = float(doc.get("elapsed_ns", 0)) / 1e9
    if elapsed_s <= 0:
        raise PowerError("powermetrics: plist sample without elapsed_ns")
    proc = doc.get("processor", {}) or {}
    gpu = doc.get("gpu", {}) or {}
    parts: dict[str, float] = {}
    for part in ("cpu", "gpu", "ane"):
        holders = [proc] + ([gpu] if part == "gpu" else [])
        for h in holders:
            if f"{part}_energy" in h:
                parts[part] = float(h[f"{part}_energy"]) / 1000.0
                break
            if f"{part}_power" in h:
                parts[part] = float(h[f"{part}_power"]) / 1000.0 * elapsed_s
                break
    if not parts and "combined_power" in proc:
        parts["soc"] = float(proc["combined_power"]) / 1000.0 * elapsed_s
    if not parts:
        raise PowerError("powermetrics: plist sample holds no cpu/gpu/ane energy or power")
    return PmSample(elapsed_s=elapsed_s, energy_j=sum(parts.values()), parts_j=parts)


def split_plist_stream(buffer: bytes) -> tuple[list[bytes], bytes]:
    """Complete plist documents in a powermetrics stream and the incomplete rest.

    powermetrics writes a NUL *before* each sample, so a document is complete at its
    `</plist>` end tag (waiting for the next NUL would lag one sampling period)."""
    docs: list[bytes] = []
    end_tag = b"</plist>"
    while (i := buffer.find(end_tag)) >= 0:
        cut = i + len(end_tag)
        doc, buffer = buffer[:cut].strip(b"\0\n\r\t "), buffer[cut:]
        if doc:
            docs.append(doc)
    return docs, buffer


def window_energy_j(samples: list[PmSample], t_start: float, t_stop: float) -> float:
    """Energy inside [t_start, t_stop]: each sample covers (t_end - elapsed, t_end] and
    counts by the fraction of it that overlaps the window."""
    total = 0.0
    for s in samples:
        begin = s.t_end - s.elapsed_s
        overlap = min(s.t_end, t_stop) - max(begin, t_start)
        if overlap > 0:
            total += s.energy_j * overlap / s.elapsed_s
    return total


# -- the meter ---------------------------------------------------------------------------
class AppleMeter(Meter):
    """SoC energy on Apple Silicon (IOReport via zeus-apple-silicon, else powermetrics)."""

    name = "apple"
    method = ESTIMATED

    def __init__(self, zeus: Any = None, use_zeus: bool = True,
                 powermetrics_cmd: list[str] | None = None,
                 is_mac: bool | None = None) -> None:
        self._zeus = zeus
        self.use_zeus = use_zeus
        self.cmd = powermetrics_cmd or POWERMETRICS_CMD
        self.is_mac = sys.platform == "darwin" if is_mac is None else is_mac
        self.via = ""  # zeus | powermetrics
        self._monitor: Any = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._samples: list[PmSample] = []
        self._lock = threading.Lock()
        self._reader: threading.Thread | None = None
        self._errors: list[str] = []
        self._t0 = 0.0
        self._ticks: list[tuple[float, float]] = []
        self._poller: Poller | None = None

    def _zeus_module(self) -> Any:
        if self._zeus is None and self.use_zeus:
            try:
                import zeus_apple_silicon  # type: ignore[import-not-found]

                self._zeus = zeus_apple_silicon
            except Exception:  # noqa: BLE001 - optional package: fall back to powermetrics
                self.use_zeus = False
        return self._zeus if self.use_zeus else None

    def _choose(self) -> str:
        """The way to read energy here, or PowerError with every reason."""
        if not self.is_mac:
            raise PowerError(f"not macOS ({sys.platform}): Apple meters need a Mac")
        reasons = []
        zeus = self._zeus_module()
        if zeus is not None:
            try:
                self._monitor = zeus.AppleEnergyMonitor()
                return "zeus"
            except Exception as exc:  # noqa: BLE001 - reported in the reason
                reasons.append(f"zeus-apple-silicon failed: {exc}")
        else:
            reasons.append("zeus-apple-silicon not installed (pip install zeus-apple-silicon)")
        tool = self.cmd[2] if self.cmd[:2] == ["sudo", "-n"] else self.cmd[0]
        if shutil.which(tool) is None and not tool.startswith("/"):
            reasons.append(f"{tool} not found")
            raise PowerError("; ".join(reasons))
        probe = self.cmd + ["-n", "1"]
        try:
            out = subprocess.run(probe, capture_output=True, timeout=15, check=False)
        except (OSError, subprocess.SubprocessError) as exc:
            reasons.append(f"powermetrics failed: {exc}")
            raise PowerError("; ".join(reasons)) from None
        if out.returncode != 0:
            err = out.stderr.decode(errors="replace").strip().splitlines()
            reasons.append("`sudo -n powermetrics` failed (" + (err[-1] if err else
                           f"exit {out.returncode}") + "): allow it without a password "
                           "in sudoers, or install zeus-apple-silicon")
            raise PowerError("; ".join(reasons))
        docs, _ = split_plist_stream(out.stdout)
        if not docs:
            reasons.append("powermetrics printed no plist sample")
            raise PowerError("; ".join(reasons))
        parse_plist_sample(docs[0])
        return "powermetrics"

    def available(self) -> tuple[bool, str]:
        try:
            via = self._choose()
        except PowerError as exc:
            return False, str(exc)
        return True, (f"Apple SoC via {'IOReport (zeus-apple-silicon)' if via == 'zeus' else 'sudo powermetrics'}"
                      f"; estimated: {APPLE_NOTE}")

    # -- window ------------------------------------------------------------------------
    def start(self) -> None:
        self.via = self._choose()
        self._samples, self._errors, self._ticks = [], [], []
        self._t0 = time.perf_counter()
        if self.via == "zeus":
            self._monitor.begin_window("harness-window")
            self._last_tick = self._t0
            self._monitor.begin_window("harness-tick")
            self._poller = Poller(self._zeus_tick, 0.1, "apple-ioreport-poller")
            self._poller.start()
            return
        self._proc = subprocess.Popen(self.cmd, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE)
        self._reader = threading.Thread(target=self._read_stream, daemon=True,
                                        name="powermetrics-reader")
        self._reader.start()
        self._t0 = self._first_sample_end(POWERMETRICS_FIRST_SAMPLE_TIMEOUT_S)

    def _first_sample_end(self, timeout_s: float) -> float:
        """Wait for powermetrics' first sample; the window opens when it arrives, where
        the samples' continuous coverage begins. Opening it at the process's start would
        count the start-up (sudo, its first interval), which no sample covers, as time
        without energy: energy and average power understated."""
        deadline = time.perf_counter() + timeout_s
        while time.perf_counter() < deadline:
            with self._lock:
                if self._samples:
                    return self._samples[0].t_end
            if self._proc is not None and self._proc.poll() is not None:
                break
            time.sleep(0.01)
        self._stop_process()
        why = "; ".join(self._errors[-1:]) or f"none within {timeout_s:g} s"
        raise PowerError(f"powermetrics gave no first sample ({why})")

    def _zeus_energy_j(self, metrics: Any) -> float:
        return sum(float(getattr(metrics, p, 0) or 0) for p in ZEUS_PARTS) / 1000.0

    def _zeus_tick(self) -> None:
        """A short IOReport window every 100 ms: the timeline and the peak."""
        metrics = self._monitor.end_window("harness-tick")
        now = time.perf_counter()
        self._monitor.begin_window("harness-tick")
        dt = now - self._last_tick
        self._last_tick = now
        if dt > 0:
            self._ticks.append((now - self._t0, self._zeus_energy_j(metrics) / dt))

    def _read_stream(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        buffer = b""
        while chunk := self._proc.stdout.read1(65536):  # type: ignore[attr-defined]
            buffer += chunk
            docs, buffer = split_plist_stream(buffer)
            now = time.perf_counter()
            for doc in docs:
                try:
                    sample = parse_plist_sample(doc)
                except PowerError as exc:
                    self._errors.append(str(exc))
                    continue
                sample.t_end = now
                with self._lock:
                    self._samples.append(sample)

    def stop(self) -> list[Reading]:
        t_stop = time.perf_counter()
        duration = t_stop - self._t0
        if self.via == "zeus":
            if self._poller is not None:
                self._poller.stop()
            metrics = self._monitor.end_window("harness-window")
            try:
                self._monitor.end_window("harness-tick")
            except Exception:  # noqa: BLE001, S110 - the tick window may already be closed
                pass
            energy_j = self._zeus_energy_j(metrics)
            parts = ", ".join(f"{p[:-3]} {float(getattr(metrics, p, 0) or 0) / 1000:.2f} J"
                              for p in ZEUS_PARTS if getattr(metrics, p, None) is not None)
            return [Reading(domain="soc", source="apple-ioreport", method=ESTIMATED,
                            energy_j=energy_j,
                            avg_power_w=energy_j / duration if duration > 0 else None,
                            peak_power_w=max((w for _, w in self._ticks), default=None),
                            samples=len(self._ticks), duration_s=duration,
                            note=f"IOReport via zeus-apple-silicon ({parts}); {APPLE_NOTE}",
                            timeline=list(self._ticks))]
        # powermetrics: wait for the sample that covers the window's end, then stop it
        deadline = time.perf_counter() + POWERMETRICS_INTERVAL_MS / 1000 * 3 + 0.5
        while time.perf_counter() < deadline:
            with self._lock:
                if self._samples and self._samples[-1].t_end >= t_stop:
                    break
            time.sleep(0.02)
        self._stop_process()
        with self._lock:
            samples = list(self._samples)
        inside = [s for s in samples if s.t_end > self._t0]
        if not inside:
            why = "; ".join(self._errors[-1:]) or "no sample arrived"
            raise PowerError(f"powermetrics gave no sample in the window ({why})")
        energy_j = window_energy_j(samples, self._t0, t_stop)
        return [Reading(domain="soc", source="apple-powermetrics", method=ESTIMATED,
                        energy_j=energy_j,
                        avg_power_w=energy_j / duration if duration > 0 else None,
                        peak_power_w=max(s.power_w for s in inside),
                        samples=len(inside), duration_s=duration,
                        note=f"sudo powermetrics plist, {POWERMETRICS_INTERVAL_MS} ms "
                             f"samples (cpu+gpu+ane); {APPLE_NOTE}",
                        timeline=[(s.t_end - self._t0, s.power_w) for s in inside])]

    def _stop_process(self) -> None:
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        if self._reader is not None:
            self._reader.join(timeout=5)
        self._proc = None

    def close(self) -> None:
        self._stop_process()


def is_apple_silicon() -> bool:
    """True on an arm64 Mac."""
    return sys.platform == "darwin" and platform.machine() == "arm64"
