"""ufence command line: ``ufence SUBCOMMAND ...``.

Each subcommand is one module in this package defining::

    NAME = "stats"                      # the subcommand
    HELP = "one line for --help"
    def register(parser: argparse.ArgumentParser) -> None: ...
    def run(args: argparse.Namespace) -> int: ...

Modules are discovered automatically, so adding a command never edits a
shared file. Every UfenceError becomes ``ufence: message`` and its exit
code; an unexpected exception is reported in one line too (with
UFENCE_DEBUG=1 for the traceback), so users never see a Python traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys
from collections.abc import Sequence

from ufence import __version__
from ufence.errors import UfenceError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2
        self.exit(2, f"ufence: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="ufence", description="KFENCE for Linux processes and the kernel.")
    parser.add_argument("--version", action="version", version=f"ufence {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        mod = importlib.import_module(f"{__name__}.{info.name}")
        if not hasattr(mod, "register"):
            continue
        p = sub.add_parser(mod.NAME, help=mod.HELP, description=mod.HELP)
        mod.register(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(args._run(args) or 0)
    except UfenceError as e:
        print(f"ufence: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # stdout closed early (ufence ... | head): not an error worth a trace
        try:
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - keep interpreter shutdown quiet
        except OSError:
            pass
        return 0
    except Exception as e:  # last resort: never a traceback for users
        if os.environ.get("UFENCE_DEBUG"):
            raise
        print(f"ufence: internal error: {type(e).__name__}: {e} (set UFENCE_DEBUG=1 for details)", file=sys.stderr)
        return 70
