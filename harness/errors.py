"""Errors the harness raises on purpose; the CLI turns them into one line and an exit code."""

from __future__ import annotations

import difflib


class UserError(Exception):
    """Bad input from the user (flag, file, name). Printed as one line; exit code 2."""

    exit_code = 2


class CheckFailed(Exception):
    """A check the user asked for failed (e.g. a regression). Exit code 1."""

    exit_code = 1


class Terminated(KeyboardInterrupt):
    """SIGTERM, delivered like Ctrl-C so the same cleanup runs; exit code 143."""


def did_you_mean(name: str, choices: list[str] | tuple[str, ...]) -> str:
    """Return ' Did you mean X?' for the nearest choice, or '' when none is close."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.5)
    return f" Did you mean '{close[0]}'?" if close else ""


def one_line(text: str) -> str:
    """`text` with line breaks and other control characters escaped (for error lines)."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
