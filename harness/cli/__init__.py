"""The `harness` command line: thin adapters (parse, validate, call a library function, print)."""

from harness.cli.main import COMMANDS, Terminated, build_parser, main

__all__ = ["COMMANDS", "Terminated", "build_parser", "main"]
