"""``ufence objects TARGET``: the pool's objects in KFENCE's objects format."""

from __future__ import annotations

import argparse
import json
import sys

from ufence.cli._target import add_target, open_from
from ufence.formats.kfence_text import iter_objects
from ufence.model import ObjectState
from ufence.symbolize import symbolize

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


def run(args: argparse.Namespace) -> int:
    backend = open_from(args)
    keep = _STATES[args.state]
    objs = [o for o in backend.objects() if o.state in keep]
    if not args.no_symbolize:
        symbolize(f for o in objs for t in (o.alloc, o.free) if t for f in t.frames)
    if args.json:
        for o in objs:
            sys.stdout.write(json.dumps(o.to_dict()) + "\n")
        return 0
    prefix = "kfence" if backend.name == "kernel" else "ufence"
    for text in iter_objects(objs, prefix):
        sys.stdout.write(text)
    return 0
