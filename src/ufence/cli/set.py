"""``ufence set TARGET KEY=VALUE...``: change settings while the target runs.

All changes apply together or not at all; a refused change says why (the
target's own message) and exits non-zero, as a failed sysfs write does.
"""

from __future__ import annotations

import argparse

from ufence.cli._target import add_target, open_from
from ufence.errors import UsageError
from ufence.settings import parse_assignments

LATE_POSITIONAL = "assignments"  # see ufence.cli._take_late_positionals
NAME = "set"
HELP = "change a running target's settings (KEY=VALUE...), all or none"


def register(parser: argparse.ArgumentParser) -> None:
    add_target(parser)
    parser.add_argument("assignments", nargs="*", metavar="KEY=VALUE")
    parser.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")


def run(args: argparse.Namespace) -> int:
    if not args.assignments:
        raise UsageError("nothing to set: ufence set TARGET KEY=VALUE...")
    changes = parse_assignments(args.assignments)
    new = open_from(args).set(changes)
    if not args.quiet:
        for k, v in new.items():
            print(f"{k}={v}")
    return 0
