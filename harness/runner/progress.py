"""Progress of a bench run on stderr, drawn outside the measured hot path.

The load loops only bump counters (`RowCounter`: requests sent and done, errors, output
tokens); nothing is drawn per token or per request. What the user sees is made from
those counters on a timer:
- on a terminal, a live `rich` display refreshed 4 times a second by rich's own thread:
  one bar per load level (requests done/total, in flight, output tokens/s so far,
  elapsed, ETA) and a status line (warmup, idle power);
- otherwise (a pipe, a log file, CI), plain lines: status changes, a line every
  `plain_every_s` seconds while a level is measured, and one when it ends;
- with --quiet, only the line that ends each level, and warnings.
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, TextIO

from rich.console import Console
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

PLAIN_EVERY_S = 15.0  # a plain progress line at most this often while a level runs
REFRESH_PER_S = 4.0  # live display redraws per second
BAR_WIDTH = 12  # characters: a level's line fits an 80-column terminal


@dataclass
class RowCounter:
    """Counters of one load level's measured phase. The load loops call `sent()` and
    `done()` (plain integer updates); the display reads them from its own timer."""

    label: str
    total: int | None = None  # requests over all repetitions (None: bound by duration)
    duration_s: float | None = None  # duration-bound: seconds over all repetitions
    started_s: float = field(default_factory=time.monotonic)
    ended_s: float | None = None
    n_sent: int = 0
    n_done: int = 0
    n_errors: int = 0
    output_tokens: int = 0

    def sent(self) -> None:
        """A request was handed to the load loop."""
        self.n_sent += 1

    def done(self, ok: bool, output_tokens: int) -> None:
        """A request ended (its output tokens count when it succeeded)."""
        self.n_done += 1
        if ok:
            self.output_tokens += output_tokens
        else:
            self.n_errors += 1

    def snapshot(self, now_s: float | None = None) -> dict[str, Any]:
        """What the display shows, computed from the counters at `now_s`: done, total,
        in flight, errors, elapsed_s, out_tok_s (output tokens / elapsed) and eta_s
        (requests left at the rate so far, or the time left of a duration; None when
        unknown)."""
        now = self.ended_s if self.ended_s is not None else (
            time.monotonic() if now_s is None else now_s)
        elapsed = max(now - self.started_s, 0.0)
        eta = None
        if self.ended_s is not None:
            eta = 0.0
        elif self.total and self.n_done and elapsed > 0:
            eta = max(self.total - self.n_done, 0) * elapsed / self.n_done
        elif self.duration_s is not None:
            eta = max(self.duration_s - elapsed, 0.0)
        return {"done": self.n_done, "total": self.total,
                "in_flight": max(self.n_sent - self.n_done, 0), "errors": self.n_errors,
                "elapsed_s": elapsed,
                "out_tok_s": self.output_tokens / elapsed if elapsed > 0 else None,
                "eta_s": eta}

    def line(self, now_s: float | None = None) -> str:
        """One plain line: `[label] 3/8 requests, 2 in flight, 41.2 tok/s, 6.1 s, ETA 10 s`."""
        s = self.snapshot(now_s)
        count = f"{s['done']}/{s['total']}" if s["total"] else f"{s['done']}"
        parts = [f"{self.label} {count} requests"]
        if self.ended_s is None:
            parts.append(f"{s['in_flight']} in flight")
        if s["errors"]:
            parts.append(f"{s['errors']} failed")
        if s["out_tok_s"] is not None:
            parts.append(f"{s['out_tok_s']:.1f} out tok/s")
        parts.append(f"{s['elapsed_s']:.1f} s")
        if self.ended_s is None and s["eta_s"] is not None:
            parts.append(f"ETA {clock(s['eta_s'])}")
        return ", ".join(parts) + (" (done)" if self.ended_s is not None else "")


def clock(seconds: float) -> str:
    """Seconds as m:ss (or h:mm:ss)."""
    total = int(round(seconds))
    h, rest = divmod(total, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class Progress:
    """The progress of one run (see the module docstring). `live`: force the rich
    display on (True) or off (False); default: on when `stream` is a terminal and not
    `quiet`."""

    def __init__(self, quiet: bool = False, stream: TextIO | None = None,
                 live: bool | None = None, plain_every_s: float = PLAIN_EVERY_S) -> None:
        self.quiet = quiet
        self.stream = stream if stream is not None else sys.stderr
        self.is_live = (not quiet and _isatty(self.stream)) if live is None else live
        self.plain_every_s = plain_every_s
        self.rows: list[RowCounter] = []
        self.status = ""
        self._last_status_key = ""
        self._live: Any = None
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None
        self._lock = threading.Lock()

    # -- what the runner calls ---------------------------------------------------------

    def update(self, text: str, final: bool = False) -> None:
        """A status message (warmup, idle power, the knee of a sweep): the live status
        line, or a plain line when its `[label]` changes (or `final`); none when quiet."""
        if self.quiet:
            return
        if self.is_live:
            self.status = text
            self._start_live()
            if final:
                self._print(text)
            return
        key = text.split("]")[0]
        if final or key != self._last_status_key:
            self._write(text)
        self._last_status_key = key

    def warn(self, text: str) -> None:
        """A warning: always shown (also with --quiet), above the live display."""
        self._print(text)

    def row(self, label: str, total: int | None = None,
            duration_s: float | None = None) -> RowCounter:
        """Start a load level's measured phase; the returned counters are what the
        load loops update."""
        counter = RowCounter(label, total, duration_s)
        with self._lock:
            self.rows.append(counter)
        self.status = ""
        if self.is_live:
            self._start_live()
        elif not self.quiet:
            self._start_ticker()
        return counter

    def finish(self, counter: RowCounter) -> None:
        """End a load level: its final line (in every mode)."""
        counter.ended_s = time.monotonic()
        if self.is_live and self._live is not None:
            self._live.refresh()
            return
        self._write(counter.line())

    def close(self) -> None:
        """Stop the display and its timer (the last frame stays on the terminal)."""
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join(timeout=2)
            self._ticker = None
        if self._live is not None:
            self.status = ""
            try:
                self._live.stop()
            finally:
                self._live = None

    # -- drawing -----------------------------------------------------------------------

    def _write(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()

    def _print(self, text: str) -> None:
        if self._live is not None:
            self._live.console.print(text, markup=False, highlight=False)
        else:
            self._write(text)

    def _start_ticker(self) -> None:
        """Plain mode: a thread writing the running level's line every plain_every_s."""
        if self._ticker is not None or self.plain_every_s <= 0:
            return

        def tick() -> None:
            while not self._stop.wait(self.plain_every_s):
                with self._lock:
                    running = [r for r in self.rows if r.ended_s is None]
                for r in running:
                    self._write(r.line())

        self._ticker = threading.Thread(target=tick, name="harness-progress", daemon=True)
        self._ticker.start()

    def _start_live(self) -> None:
        if self._live is not None:
            return
        console = Console(file=self.stream, force_terminal=True if self.is_live else None)
        self._live = Live(console=console, get_renderable=self.render, auto_refresh=True,
                          refresh_per_second=REFRESH_PER_S, redirect_stdout=False,
                          redirect_stderr=self.stream is sys.stderr, transient=False)
        self._live.start()

    def render(self) -> Any:
        """The live display: one line per load level, then the status line."""
        now = time.monotonic()
        table = Table.grid(padding=(0, 1))
        table.add_column(no_wrap=True, overflow="ellipsis")  # the label shrinks first
        for _ in range(6):
            table.add_column(no_wrap=True)
        with self._lock:
            rows = list(self.rows)
        for r in rows:
            s = r.snapshot(now)
            if s["total"]:
                bar: Any = ProgressBar(total=s["total"], completed=s["done"], width=BAR_WIDTH)
                count = f"{s['done']}/{s['total']}"
            elif r.duration_s:
                bar = ProgressBar(total=r.duration_s, completed=min(s["elapsed_s"],
                                                                    r.duration_s), width=BAR_WIDTH)
                count = f"{s['done']}"
            else:
                bar = ProgressBar(total=None, pulse=r.ended_s is None, width=BAR_WIDTH)
                count = f"{s['done']}"
            flight = "done" if r.ended_s is not None else f"{s['in_flight']} in flight"
            if s["errors"]:
                flight += f", {s['errors']} failed"
            rate = f"{s['out_tok_s']:.1f} tok/s" if s["out_tok_s"] is not None else "- tok/s"
            eta = ("" if r.ended_s is not None or s["eta_s"] is None
                   else f"ETA {clock(s['eta_s'])}")
            table.add_row(Text(r.label), bar, Text(count), Text(flight), Text(rate),
                          Text(clock(s["elapsed_s"])), Text(eta))
        if self.status:
            table.add_row(Text(self.status, style="dim"), "", "", "", "", "", "")
        return table


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


__all__ = ["PLAIN_EVERY_S", "REFRESH_PER_S", "Progress", "RowCounter", "clock"]
