"""The progress display: counters on the hot path, drawing on a timer (never per
request), a rich live display on a terminal, plain lines otherwise or with --quiet."""

from __future__ import annotations

import io
import time

import pytest
from rich.console import Console

from harness.runner.progress import REFRESH_PER_S, Progress, RowCounter, clock


def test_snapshot_rates_in_flight_and_eta() -> None:
    c = RowCounter("[1/1 s c=4]", total=10, started_s=100.0)
    for _ in range(5):
        c.sent()
    c.done(True, 20)
    c.done(False, 0)
    s = c.snapshot(now_s=110.0)
    assert (s["done"], s["total"], s["in_flight"], s["errors"]) == (2, 10, 3, 1)
    assert s["elapsed_s"] == 10.0
    assert s["out_tok_s"] == pytest.approx(2.0)  # 20 tokens of the successful one / 10 s
    assert s["eta_s"] == pytest.approx(8 * 10.0 / 2)  # 8 left at 2 per 10 s
    assert c.line(now_s=110.0) == ("[1/1 s c=4] 2/10 requests, 3 in flight, 1 failed, "
                                   "2.0 out tok/s, 10.0 s, ETA 0:40")


def test_duration_bound_eta_and_clock() -> None:
    c = RowCounter("[x]", total=None, duration_s=30.0, started_s=0.0)
    assert c.snapshot(now_s=12.0)["eta_s"] == pytest.approx(18.0)
    assert c.snapshot(now_s=0.0)["out_tok_s"] is None
    assert (clock(59.6), clock(61), clock(3725)) == ("1:00", "1:01", "1:02:05")


def test_plain_mode_draws_per_level_not_per_request() -> None:
    out = io.StringIO()
    progress = Progress(stream=out, live=False, plain_every_s=3600)
    progress.update("[1/1 s c=1] warmup 1/1")
    progress.update("[1/1 s c=1] warmup 1/1")  # same step: not repeated
    row = progress.row("[1/1 s c=1]", total=5000)
    for _ in range(5000):
        row.sent()
        row.done(True, 3)
    progress.finish(row)
    progress.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 2, lines  # the status once, the row's end once; 5000 requests
    assert lines[0] == "[1/1 s c=1] warmup 1/1"
    assert lines[1].startswith("[1/1 s c=1] 5000/5000 requests, ") and "(done)" in lines[1]


def test_plain_mode_ticks_from_a_timer() -> None:
    out = io.StringIO()
    progress = Progress(stream=out, live=False, plain_every_s=0.05)
    row = progress.row("[1/1 s c=2]", total=10)
    row.sent()
    row.sent()
    deadline = time.monotonic() + 10
    while "in flight" not in out.getvalue() and time.monotonic() < deadline:
        time.sleep(0.02)
    progress.finish(row)
    progress.close()
    assert "[1/1 s c=2] 0/10 requests, 2 in flight" in out.getvalue()


def test_quiet_prints_one_line_per_level_and_warnings() -> None:
    out = io.StringIO()
    progress = Progress(quiet=True, stream=out)
    progress.update("[1/1 s c=1] warmup 1/1")
    row = progress.row("[1/1 s c=1]", total=2)
    row.sent()
    row.done(True, 4)
    progress.warn("[1/1 s c=1] warning: something")
    row.sent()
    row.done(True, 4)
    progress.finish(row)
    progress.close()
    lines = out.getvalue().splitlines()
    assert lines[0] == "[1/1 s c=1] warning: something"
    assert lines[1].startswith("[1/1 s c=1] 2/2 requests") and len(lines) == 2


def test_a_pipe_gets_plain_lines_by_default() -> None:
    assert not Progress(stream=io.StringIO()).is_live
    assert not Progress(quiet=True, stream=io.StringIO()).is_live


def test_live_display_redraws_on_its_timer_not_per_request() -> None:
    out = io.StringIO()
    progress = Progress(stream=out, live=True)
    renders = 0
    draw = progress.render

    def counting_render():
        nonlocal renders
        renders += 1
        return draw()

    progress.render = counting_render  # type: ignore[method-assign]
    progress.update("[1/1 chat c=8] warmup 1/1")
    start = time.monotonic()
    row = progress.row("[1/1 chat c=8]", total=20_000)
    for _ in range(20_000):
        row.sent()
        row.done(True, 2)
    elapsed = time.monotonic() - start
    progress.finish(row)
    progress.close()
    # Drawn by rich's refresh thread (REFRESH_PER_S a second) and at start, finish and
    # stop: a count bounded by the time that passed, not by the 20,000 requests.
    assert renders <= 6 + 2 * REFRESH_PER_S * elapsed, (renders, elapsed)
    frame = out.getvalue()
    assert "[1/1 chat c=8]" in frame and "20000/20000" in frame and "done" in frame
    assert "tok/s" in frame


def test_live_display_shows_in_flight_and_eta() -> None:
    c = RowCounter("[1/2 s c=4]", total=8, started_s=time.monotonic() - 4.0)
    for _ in range(6):
        c.sent()
    c.done(True, 10)
    c.done(True, 10)
    progress = Progress(stream=io.StringIO(), live=True)
    progress.rows.append(c)
    console = Console(file=io.StringIO(), width=100, force_terminal=False)
    console.print(progress.render())
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert "2/8" in text and "4 in flight" in text and "ETA 0:" in text and "tok/s" in text
