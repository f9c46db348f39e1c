"""A managed server's log tail stays readable after the server stopped: the working log
is removed once its copy beside the results exists, and the dead-server message reads
the tail after that (it came out empty)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from harness.servers.managed import ManagedServer, ServerSpec


def test_log_tail_reads_the_kept_copy_once_the_working_log_is_gone(tmp_path: Path) -> None:
    server = ManagedServer(ServerSpec(kind="command", argv=["sh", "-c", "echo one; echo two"],
                                      base_url="http://127.0.0.1:9/v1", model=None))
    server.start()
    assert server.proc is not None and server.proc.wait(timeout=30) == 0
    server.attach_log(tmp_path / "run.server.log")
    asyncio.run(server.__aexit__(None, None, None))  # stops it and removes the working log
    assert not server.log_path.exists()
    assert server.log_tail().splitlines()[-2:] == ["one", "two"]
    assert server.log_tail(lines=1) == "two"
