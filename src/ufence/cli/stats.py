"""``ufence stats TARGET``: KFENCE's stats lines, plus pool capacity and memory."""

from __future__ import annotations

import argparse
import json
import sys
import time

from ufence.cli._target import add_target, open_from
from ufence.errors import TargetGone, UsageError
from ufence.formats.kfence_text import pool_warning, render_stats

NAME = "stats"
HELP = "show KFENCE-style statistics of a pid or the kernel"


def register(parser: argparse.ArgumentParser) -> None:
    add_target(parser)
    parser.add_argument("--watch", metavar="SECONDS", type=float, default=None,
                        help="repeat every SECONDS until interrupted (or --count times)")
    parser.add_argument("--count", metavar="N", type=int, default=None, help="with --watch: stop after N")
    parser.add_argument("--json", action="store_true", help="one JSON object per sample")


def run(args: argparse.Namespace) -> int:
    if args.watch is not None and not args.watch > 0:
        raise UsageError("--watch needs a positive number of seconds")
    if args.count is not None and args.count < 1:
        raise UsageError("--count needs a positive number")
    if args.count is not None and args.watch is None:
        raise UsageError("--count applies with --watch")
    backend = open_from(args)
    n = 0
    while True:
        st = backend.stats()
        if args.json:
            print(json.dumps(st.to_dict()), flush=True)
        else:
            if args.watch is not None:
                print(("\n" if n else "") + "# " + time.strftime("%H:%M:%S"))
            sys.stdout.write(render_stats(st))
            sys.stdout.flush()
        warn = pool_warning(st)
        if warn:
            print(f"ufence: {warn}", file=sys.stderr)
        n += 1
        if args.watch is None or (args.count is not None and n >= args.count):
            return 0
        time.sleep(args.watch)
        # a watched process that exits ends the watch (its last state stays readable without --watch)
        is_alive = getattr(backend, "alive", None)
        if callable(is_alive) and not is_alive():
            raise TargetGone(f"process {args.target} exited")
