"""The peak-RSS poller walks a process tree through /proc's children lists (Linux): the
same processes psutil finds by reading every process of the machine, grandchildren
included, and their memory counted once."""

from __future__ import annotations

import os
import subprocess
import sys

import psutil
import pytest

from harness.power.memory import proc_descendants, tree_rss_bytes

pytestmark = [pytest.mark.slow,  # it starts child processes
              pytest.mark.skipif(not sys.platform.startswith("linux"),
                                 reason="/proc children lists are Linux's")]

# A child that starts a grandchild holding 64 MB, prints its pid once the memory is
# touched, and waits.
GRANDCHILD = ("import sys, time; x = bytearray(64 * 2**20); x[::4096] = b'1' * len(x[::4096]);"
              " print('held', flush=True); time.sleep(60)")
CHILD = ("import subprocess, sys, time; "
         f"p = subprocess.Popen([sys.executable, '-c', {GRANDCHILD!r}], stdout=sys.stdout); "
         "print(p.pid, flush=True); time.sleep(60)")


def test_descendants_from_proc_match_psutil_and_count_the_grandchild() -> None:
    before = tree_rss_bytes([os.getpid()])
    child = subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE,
                             text=True)
    try:
        assert child.stdout is not None
        grandchild = int(child.stdout.readline())
        assert child.stdout.readline().strip() == "held"
        below = proc_descendants(os.getpid())
        assert below is not None
        assert {child.pid, grandchild} <= set(below)
        assert set(below) == {p.pid for p in psutil.Process().children(recursive=True)}
        assert proc_descendants(grandchild) == []
        # the grandchild's 64 MB (and the child's interpreter) are counted, and a pid
        # named twice (already in this process's tree) only once; RSS moves a little
        after = tree_rss_bytes([os.getpid(), child.pid, grandchild])
        assert after - before > 64 * 2**20
        assert abs(after - tree_rss_bytes([os.getpid()])) < 8 * 2**20
    finally:
        child.kill()
        for p in psutil.Process().children(recursive=True):
            p.kill()
        child.wait()


def test_a_pid_that_does_not_exist_has_no_tree() -> None:
    assert proc_descendants(2**22 + 12345) is None
    assert tree_rss_bytes([2**22 + 12345]) == 0
