"""``ufence objects TARGET``: the pool's objects in KFENCE's objects format."""

from __future__ import annotations

import argparse
import json
import sys

from ufence.cli._target import add_target, open_from
from ufence.formats.kfence_text import iter_objects
from ufence.model import Frame, Object, ObjectState
from ufence.symbolize import notices, symbolize

NAME = "objects"
HELP = "list guarded objects with their allocation and free stacks (KFENCE objects format)"

_STATES = {
    "allocated": {ObjectState.ALLOCATED},
    "freed": {ObjectState.FREED, ObjectState.RCU_FREEING},
    "all": {ObjectState.ALLOCATED, ObjectState.FREED, ObjectState.RCU_FREEING},
    "every": set(ObjectState),
}


def register(parser: argparse.ArgumentParser) -> None:
    add_target(parser)
    parser.add_argument("--state", choices=tuple(_STATES), default="all",
                        help="allocated, freed, all (default: both; unused slots left out), "
                             "every (unused slots too, as KFENCE's file)")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.add_argument("--no-symbolize", action="store_true", help="print module+offset only")


def _distinct_frames(objs: list[Object]) -> list[Frame]:
    """Each frame once: tracks of one stack share their frame list and Frame
    objects (the backends do this), so symbolizing per occurrence would redo
    the same work once per object."""
    lists: dict[int, list[Frame]] = {}
    for o in objs:
        for t in (o.alloc, o.free):
            if t is not None:
                lists.setdefault(id(t.frames), t.frames)
    frames: dict[int, Frame] = {}
    for fl in lists.values():
        for f in fl:
            frames.setdefault(id(f), f)
    return list(frames.values())


def run(args: argparse.Namespace) -> int:
    backend = open_from(args)
    keep = _STATES[args.state]
    objs = [o for o in backend.objects() if o.state in keep]
    if not args.no_symbolize:
        symbolize(_distinct_frames(objs))
    if args.json:
        for o in objs:
            sys.stdout.write(json.dumps(o.to_dict()) + "\n")
    else:
        prefix = "kfence" if backend.name == "kernel" else "ufence"
        for text in iter_objects(objs, prefix):
            sys.stdout.write(text)
    if not args.no_symbolize:
        sys.stdout.flush()
        for note in notices():  # after the output, so an error stays the only line
            print(f"ufence: note: {note}", file=sys.stderr)
    return 0
