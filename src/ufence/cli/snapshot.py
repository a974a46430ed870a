"""``ufence snapshot TARGET -o FILE``: save everything needed to analyse later.

The file holds the objects with their stacks, stats, settings, sampling
parameters and the module table (path, load bias, build id), and by default
the frames pre-symbolized on this machine, so ``ufence leaks FILE`` works
elsewhere: with names even where the binaries are missing, and re-symbolized
where the same builds are present. Written atomically, mode 0600 (it holds
addresses); gzipped when FILE ends in ``.gz``.
"""

from __future__ import annotations

import argparse
import sys

from ufence.cli._target import add_target, open_from

NAME = "snapshot"
HELP = "save a target's objects, stacks and modules (with build ids) to FILE for later analysis"


def register(p: argparse.ArgumentParser) -> None:
    add_target(p)
    p.add_argument("-o", "--output", required=True, metavar="FILE",
                   help="snapshot file to write (JSON; gzipped if it ends in .gz)")
    p.add_argument("--no-symbols", action="store_true",
                   help="do not pre-symbolize frames (smaller, faster; symbolize later where the binaries are)")


def run(args: argparse.Namespace) -> int:
    from ufence.symbolize import snapshot_io

    snap = open_from(args).snapshot()
    notes: list[str] = []
    if not args.no_symbols:
        notes = snapshot_io.presymbolize(snap)
        snap.meta["symbolized"] = True
    snapshot_io.save_snapshot(snap, args.output)
    for n in notes:
        print(f"ufence: note: {n}", file=sys.stderr)
    # depot ids when the source has them (process); the kernel gives frames only
    stacks = {t.stack_id if t.stack_id is not None else tuple(f.key() for f in t.frames)
              for o in snap.objects for t in (o.alloc, o.free) if t is not None and t.frames}
    live = sum(1 for o in snap.objects if o.state.value == "allocated")
    print(f"ufence: saved {len(snap.objects)} objects ({live} allocated), {len(stacks)} stacks, "
          f"{len(snap.modules)} modules to {args.output}", file=sys.stderr)
    return 0
