"""Request lines go through a queue to a writer thread: the caller only queues (a dict,
or a function the thread calls to build the line); `sync()` and every `add_row` wait
until the lines queued before are written and fsynced, so a row never counts a request
its JSONL lacks; a failed line is raised, not lost silently."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from harness.results.files import RunFiles

# A key-shaped canary built at run time (no key-like literal in the source).
KEY = "sk-" + "canary" * 4


def _files(tmp_path: Path) -> RunFiles:
    return RunFiles(tmp_path, {"machine_id": "m"}, "run1", "w")


def test_lines_are_built_by_the_writer_thread_and_durable_at_sync(tmp_path: Path):
    files = _files(tmp_path)
    built_in: list[str] = []

    def line(i: int):
        def build():
            built_in.append(threading.current_thread().name)
            return {"i": i}
        return build

    for i in range(200):
        files.add_request(line(i))
    files.add_request({"i": 200})
    files.sync()
    lines = [json.loads(t) for t in files.requests_path.read_text().splitlines()]
    assert [x["i"] for x in lines] == list(range(201))  # in order, none lost
    assert set(built_in) == {"jsonl-writer"}  # none built on the caller's thread
    files.close()


def test_a_row_is_written_after_every_request_queued_before_it(tmp_path: Path):
    files = _files(tmp_path)
    for i in range(50):
        files.add_request({"i": i, "scenario": "s"})
    files.add_row({"scenario": "s", "requests": 50})  # syncs first
    lines = files.requests_path.read_text().splitlines()
    assert len(lines) == 50 and files.csv_path.exists()
    files.close()


def test_a_line_that_cannot_be_written_is_raised_at_sync(tmp_path: Path):
    files = _files(tmp_path)
    files.add_request({"i": 0})
    files.add_request(lambda: {"bad": float("nan")})  # not valid JSON (allow_nan=False)
    files.add_request({"i": 2})
    with pytest.raises(ValueError):
        files.sync()
    files.sync()  # raised once; the writer goes on
    assert [json.loads(t)["i"] for t in files.requests_path.read_text().splitlines()] == [0, 2]
    files.close()


def test_close_drains_the_queue_and_secrets_stay_masked(tmp_path: Path):
    files = _files(tmp_path)
    for i in range(20):
        files.add_request({"i": i, "error_message": f"Authorization: Bearer {KEY}"})
    files.close()
    text = files.requests_path.read_text()
    assert len(text.splitlines()) == 20 and KEY not in text
    files.close()  # idempotent
