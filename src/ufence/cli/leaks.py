"""``ufence leaks TARGET``: live objects grouped by allocation stack, or their growth."""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

from ufence.analysis.growth import DEFAULT_MIN_GROWTH, find_growth
from ufence.analysis.leaks import DEFAULT_MIN_AGE, LeakReport, analyse, no_gc
from ufence.errors import UsageError
from ufence.model import Snapshot

NAME = "leaks"
HELP = "live objects grouped by allocation stack (pid, snapshot file or 'kernel'); --watch for growth"

FORMATS = ("text", "json", "pprof", "folded", "speedscope", "flamegraph", "prometheus")


def _nonneg_float(s: str) -> float:
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {s!r}") from None
    if not math.isfinite(v) or v < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, not {s!r}")
    return v


def _pos_int(s: str) -> int:
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {s!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, not {s!r}")
    return v


def register(p: argparse.ArgumentParser) -> None:
    p.add_argument("target", metavar="TARGET",
                   help="a pid, a snapshot file saved by 'ufence snapshot' (a path that exists), or 'kernel'")
    p.add_argument("--root", metavar="DIR", help="with 'kernel': read sysfs/debugfs/dmesg under DIR (a collected tree)")
    p.add_argument("--min-age", type=_nonneg_float, default=DEFAULT_MIN_AGE, metavar="SEC",
                   help=f"hide objects younger than SEC seconds (default {DEFAULT_MIN_AGE:g}: objects in flight "
                        "are not leaks; bcc's memleak uses 500 ms, we add margin for sparse samples)")
    p.add_argument("--sort", choices=("count", "bytes"), default="count", help="rank stacks by objects or bytes")
    p.add_argument("--top", type=_pos_int, default=20, metavar="N", help="stacks shown in text/prometheus (default 20)")
    p.add_argument("--watch", type=_nonneg_float, metavar="INTERVAL",
                   help="take snapshots INTERVAL seconds apart and report the stacks whose live counts grow")
    p.add_argument("--samples", type=_pos_int, default=5, metavar="K", help="snapshots taken with --watch (default 5)")
    p.add_argument("--min-growth", type=_pos_int, default=DEFAULT_MIN_GROWTH, metavar="N",
                   help="with --watch: minimum growth in guarded objects, first snapshot to last "
                        f"(default {DEFAULT_MIN_GROWTH})")
    p.add_argument("--format", choices=FORMATS, default="text", help="output format (default text)")
    p.add_argument("-o", "--output", metavar="FILE", help="write to FILE (atomically: temp file + rename)")
    p.add_argument("--weight", choices=("count", "bytes"),
                   help="value plotted by folded (default count) and flamegraph (default bytes)")
    p.add_argument("--no-symbolize", action="store_true", help="show raw module+offset frames")


def _snapshots(args: argparse.Namespace) -> list[Snapshot]:
    target = args.target
    if target != "kernel" and os.path.exists(target):  # a path that exists is a snapshot file
        if args.root is not None:
            raise UsageError("--root applies only to the target 'kernel'")
        if args.watch is not None:
            raise UsageError("--watch needs a live target (pid or 'kernel'), not a snapshot file")
        from ufence.analysis.snapshot_file import load_snapshot

        return [load_snapshot(target)]
    if target != "kernel" and not target.isdigit():
        raise UsageError(f"target must be a pid, an existing snapshot file or 'kernel', not {target!r}")
    from ufence.backends import open_target

    backend = open_target(target, root=args.root)
    if args.watch is None:
        return [backend.snapshot()]
    if args.samples < 2:
        raise UsageError("--watch needs --samples of at least 2")
    if args.watch <= 0:
        raise UsageError("--watch INTERVAL must be > 0 seconds")
    snaps = []
    start = time.monotonic()
    for i in range(args.samples):
        # fixed schedule: a slow snapshot does not stretch the intervals
        delay = start + i * args.watch - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        snaps.append(backend.snapshot())
    return snaps


def build_report(snaps: list[Snapshot], args: argparse.Namespace) -> LeakReport:
    symbolize = not args.no_symbolize
    if len(snaps) == 1:
        return analyse(snaps[0], args.min_age, args.sort, symbolize=symbolize)
    # Symbolize only the last snapshot's stacks: grouping keys do not depend on
    # symbols, and a growing stack is always present in the last snapshot.
    reports = [analyse(s, args.min_age, args.sort, symbolize=False) for s in snaps[:-1]]
    reports.append(analyse(snaps[-1], args.min_age, args.sort, symbolize=symbolize))
    last = reports[-1]
    last.growth = find_growth(reports, min_growth=args.min_growth, interval=args.watch or 0.0)
    return last


def render(report: LeakReport, snap: Snapshot, args: argparse.Namespace) -> bytes:
    fmt = args.format
    if fmt == "text":
        from ufence.formats import leaks_text

        return leaks_text.render(report, top=args.top)
    if fmt == "json":
        from ufence.formats import json_out

        return json_out.render(report)
    if fmt == "pprof":
        from ufence.formats import pprof

        return pprof.render(report, snap.modules)
    if fmt == "folded":
        from ufence.formats import folded

        return folded.render(report, weight=args.weight or "count")
    if fmt == "speedscope":
        from ufence.formats import speedscope

        return speedscope.render(report)
    if fmt == "flamegraph":
        from ufence.formats import flamegraph

        return flamegraph.render(report, weight=args.weight or "bytes")
    from ufence.formats import prometheus

    return prometheus.render(report, snap.stats, top=args.top)


def run(args: argparse.Namespace) -> int:
    if args.watch is not None and args.samples < 2:
        raise UsageError("--watch needs --samples of at least 2")
    # The whole command runs without the cyclic GC: it is short-lived, makes no
    # cycles worth collecting, and a million-object snapshot would otherwise be
    # walked again and again while it is built and grouped (see leaks.no_gc).
    with no_gc():
        snaps = _snapshots(args)
        report = build_report(snaps, args)
        data = render(report, snaps[-1], args)
    if args.output:
        from ufence.formats.prometheus import write_atomic

        write_atomic(Path(args.output), data)
    else:
        if args.format == "pprof" and sys.stdout.isatty():
            raise UsageError("pprof output is binary: use -o FILE")
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    _print_notices(args)
    return 0


def _print_notices(args: argparse.Namespace) -> None:
    """What symbolization could not do (missing debug info, other builds), after the output."""
    if args.no_symbolize:
        return
    from ufence.symbolize import notices

    for note in notices():
        print(f"ufence: note: {note}", file=sys.stderr)
