"""Managed servers (`managed`), the server kinds and their registry (`kinds`), and the
fake OpenAI-compatible server used by tests and bench scripts (`fake`)."""

from harness.servers.kinds import SERVER_KINDS, register_server_kind

__all__ = ["SERVER_KINDS", "register_server_kind"]
