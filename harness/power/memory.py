"""Peak resident memory of the engine: this process and its children, plus a managed
server's process tree, polled with psutil during the measured window."""

from __future__ import annotations

import os
import resource
import sys

from harness.power.base import Poller

POLL_INTERVAL_S = 0.2


def proc_descendants(pid: int) -> list[int] | None:
    """The pids below `pid`, read from its threads' /proc children lists (Linux): a few
    small reads, where psutil's `children()` reads the status of every process of the
    machine (about 2 ms of CPU per sample with a hundred processes, polled five times a
    second inside the measured window). None where /proc cannot tell."""
    out: list[int] = []
    todo = [pid]
    while todo:
        current = todo.pop()
        try:
            tids = os.listdir(f"/proc/{current}/task")
        except OSError:
            if current == pid:
                return None
            continue  # a descendant that just ended
        for tid in tids:
            try:
                with open(f"/proc/{current}/task/{tid}/children") as f:
                    kids = [int(k) for k in f.read().split()]
            except FileNotFoundError:
                if not os.path.exists(f"/proc/{current}/task/{tid}"):
                    continue  # a thread that just ended
                return None  # a kernel without /proc/PID/task/TID/children
            except OSError:
                continue
            out.extend(kids)
            todo.extend(kids)
    return out


def tree_rss_bytes(pids: list[int]) -> int:
    """Resident memory of each pid and all its descendants, each process counted once."""
    import psutil

    seen: set[int] = set()
    total = 0
    for pid in pids:
        try:
            root = psutil.Process(pid)
            below = proc_descendants(pid) if sys.platform.startswith("linux") else None
            tree = [pid] + (below if below is not None
                            else [c.pid for c in root.children(recursive=True)])
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        for p in tree:
            if p in seen:
                continue
            seen.add(p)
            try:
                total += psutil.Process(p).memory_info().rss
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue  # ended since it was listed
    return total


def self_max_rss_mb() -> float:
    """This process's lifetime peak RSS (getrusage)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


class MemoryPoller:
    """Polls the RSS of this process tree and of extra pids (a managed server)."""

    def __init__(self, interval_s: float = POLL_INTERVAL_S) -> None:
        self.interval_s = interval_s
        self.pids: list[int] = [os.getpid()]
        self.peak_bytes = 0
        self._poller: Poller | None = None

    def add_pid(self, pid: int) -> None:
        if pid not in self.pids:
            self.pids.append(pid)

    def sample(self) -> None:
        self.peak_bytes = max(self.peak_bytes, tree_rss_bytes(self.pids))

    def start(self) -> None:
        self.peak_bytes = 0
        try:
            self.sample()
        except ImportError:
            return
        self._poller = Poller(self.sample, self.interval_s, "rss-poller")
        self._poller.start()

    def stop(self) -> float | None:
        """Peak RSS in MB over the window: sampled tree, and never below this process's
        own peak while it is the only process measured."""
        if self._poller is not None:
            self._poller.stop()
            self._poller = None
            try:
                self.sample()
            except ImportError:
                pass
        sampled = self.peak_bytes / 2**20 if self.peak_bytes else None
        if len(self.pids) == 1:
            own = self_max_rss_mb()
            return round(max(sampled or 0.0, own), 1)
        return round(sampled, 1) if sampled is not None else None
