"""Peak RSS counts a managed server's process tree: a real child holding 300 MB, started
through a launcher that exits (so it is not our child), counts once `attach` names its
pid. In integration: it spawns two processes and touches 300 MB."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from types import SimpleNamespace

import pytest

from harness.power import open_session
from harness.power.memory import tree_rss_bytes

pytestmark = pytest.mark.slow


def test_peak_rss_includes_a_managed_server_process_tree() -> None:
    """A server that is not our child (started through a launcher that exits) counts
    only once `attach` names its pid."""
    hold = ("import time; x = bytearray(300 * 2**20); x[::4096] = b'1' * len(x[::4096]); "
            "print('ready', flush=True); time.sleep(60)")
    launch = (f"import subprocess, sys; p = subprocess.Popen([sys.executable, '-c', {hold!r}]);"
              " print(p.pid, flush=True)")
    launcher = subprocess.Popen([sys.executable, "-c", launch], stdout=subprocess.PIPE,
                                text=True)
    assert launcher.stdout is not None
    pid = int(launcher.stdout.readline())
    try:
        assert launcher.stdout.readline().strip() == "ready"
        launcher.wait()
        assert tree_rss_bytes([pid]) > 290 * 2**20
        # This process's current tree (its lifetime peak may be far higher when other
        # tests loaded models earlier in the same pytest process).
        own_mb = tree_rss_bytes([os.getpid()]) / 2**20
        session = open_session("none")
        session.attach(server=SimpleNamespace(pid=pid))
        session.start()
        cols, _ = session.stop()
        assert cols["peak_rss_mb"] > own_mb + 290
    finally:
        os.kill(pid, signal.SIGKILL)
