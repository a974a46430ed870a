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
import contextlib
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
        p.set_defaults(_run=mod.run, _late=getattr(mod, "LATE_POSITIONAL", None))
    return parser


def _take_late_positionals(parser: argparse.ArgumentParser, args: argparse.Namespace, extra: list[str]) -> None:
    """Accept positionals written after options (``ufence set kernel --root D k=v``).

    argparse fills an optional positional list before it sees ``--root`` and
    then rejects what follows; a subcommand names that positional in
    ``LATE_POSITIONAL`` to have the leftovers appended to it instead.
    """
    dest = getattr(args, "_late", None)
    if not dest or any(x.startswith("-") for x in extra):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    current = getattr(args, dest)
    if isinstance(current, list):
        current.extend(extra)
    elif current is None and len(extra) == 1:
        setattr(args, dest, extra[0])
    else:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        _take_late_positionals(parser, args, extra)
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
        with contextlib.suppress(OSError):
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - keep interpreter shutdown quiet
        return 0
    except Exception as e:  # last resort: never a traceback for users
        if os.environ.get("UFENCE_DEBUG"):
            raise
        print(f"ufence: internal error: {type(e).__name__}: {e} (set UFENCE_DEBUG=1 for details)", file=sys.stderr)
        return 70
