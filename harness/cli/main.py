"""The `harness` command line: one subcommand per job, each in its own module of
`harness.cli`.

Every module exposes `HELP` (one line), `DESCRIPTION`, `add_arguments(parser)` and
`run(args) -> int`. Bad input raises `UserError` and ends as one line on stderr with
exit code 2; Ctrl-C ends with 130 and SIGTERM with 143, after files are written.
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
from types import ModuleType

from harness import __version__
from harness.errors import CheckFailed, Terminated, UserError
from harness.secrets import install_output_redaction, redact

# Order is the order in --help.
COMMANDS: dict[str, str] = {
    "bench": "harness.cli.bench",
    "env": "harness.cli.env",
    "compare": "harness.cli.compare",
    "breakeven": "harness.cli.breakeven",
    "report": "harness.cli.report",
    "model": "harness.cli.model",
}


def _on_sigterm(signum: int, frame: object) -> None:
    raise Terminated()


def _modules() -> dict[str, ModuleType]:
    found: dict[str, ModuleType] = {}
    for name, module_name in COMMANDS.items():
        try:
            found[name] = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
    return found


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, ModuleType]]:
    parser = argparse.ArgumentParser(
        prog="harness",
        description="Measure LLM inference (throughput, latency, energy) on llama.cpp, "
                    "vLLM or any OpenAI-compatible API, and price it against APIs.",
        epilog="Start with: harness env, then harness bench. "
               "Each subcommand has its own --help.",
    )
    parser.add_argument("--version", action="version", version=f"harness {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    modules = _modules()
    for name, module in modules.items():
        p = sub.add_parser(name, help=module.HELP, description=module.DESCRIPTION,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(p)
    return parser, modules



def main(argv: list[str] | None = None) -> int:
    install_output_redaction()
    parser, modules = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        return int(modules[args.command].run(args) or 0)
    except UserError as exc:
        print(f"harness {args.command}: error: {redact(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except CheckFailed as exc:
        print(f"harness {args.command}: {redact(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except Terminated:
        print(f"harness {args.command}: terminated; results so far are kept", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print(f"harness {args.command}: interrupted; results so far are kept", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
