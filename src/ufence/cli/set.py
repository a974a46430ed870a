"""``ufence set TARGET KEY=VALUE...``: change settings while the target runs.

All changes apply together or not at all; a refused change says why (the
target's own message) and exits non-zero, as a failed sysfs write does.

A program whose engine is off, or samples a single-threaded program, runs no
control thread (a second thread would make glibc's malloc take its locked
paths): its next allocation applies the change. If it makes none within 1 s,
set says "queued" on stderr and exits 0; the change then applies before the
program's next allocation, which is the first one it could affect.
"""

from __future__ import annotations

import argparse
import sys

from ufence.cli._target import add_target, open_from
from ufence.errors import UsageError
from ufence.settings import parse_assignments

LATE_POSITIONAL = "assignments"  # see ufence.cli._take_late_positionals
NAME = "set"
HELP = "change a running target's settings (KEY=VALUE...), all or none"
EPILOG = ("exit status: 0 applied (or queued: a target without a control thread - off mode, or sampling a "
          "single-threaded program - that did not allocate within 1 s applies the change at its next allocation; "
          "stderr says so), non-zero refused or failed")


def register(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EPILOG
    add_target(parser)
    parser.add_argument("assignments", nargs="*", metavar="KEY=VALUE")
    parser.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")


def run(args: argparse.Namespace) -> int:
    if not args.assignments:
        raise UsageError("nothing to set: ufence set TARGET KEY=VALUE...")
    changes = parse_assignments(args.assignments)
    target = open_from(args)
    new = target.set(changes)
    if getattr(target, "last_set_queued", False):
        print(f"ufence: queued: applies at the target's next allocation (pid {getattr(target, 'pid', '?')} runs "
              "no control thread (off, or sampling a single-threaded program) and has not allocated within 1 s)",
              file=sys.stderr)
    if not args.quiet:
        for k, v in new.items():
            print(f"{k}={v}")
    return 0
