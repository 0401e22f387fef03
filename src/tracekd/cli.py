"""The ``tracekd`` command: one entry point, one module per subcommand in ``tracekd.commands``.

Each command module defines ``HELP`` (one line), ``add_arguments(parser)`` and ``run(args) -> int``,
and imports heavy libraries (torch, transformers, matplotlib) only inside ``run``.
"""

from __future__ import annotations

import argparse
import sys

from . import __version__
from .commands import add_subcommands
from .errors import TracekdError
from .registry import Registry

#: subcommand -> its module under tracekd.commands (order = order in --help; the module's HELP is its line)
COMMANDS: Registry = Registry("command")
for _name in ("ls", "validate", "build", "train", "generate", "score", "analyze", "report", "run", "demo", "synth",
              "audit", "teacher", "study"):
    COMMANDS.add(_name, f"tracekd.commands.{_name}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tracekd",
        description="Trace-based knowledge distillation with verifiable reasoning traces.",
    )
    parser.add_argument("--version", action="version", version=f"tracekd {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    add_subcommands(sub, COMMANDS, "_run")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except TracekdError as e:
        print(f"tracekd {args.command}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; finished work is kept (rerun to resume)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
