"""``ufence get TARGET [KEY]``: read settings, as reading sysfs parameters."""

from __future__ import annotations

import argparse
import json

from ufence.cli._target import add_target, open_from
from ufence.errors import UfenceError

LATE_POSITIONAL = "key"  # see ufence.cli._take_late_positionals
NAME = "get"
HELP = "show a target's settings (all, or one KEY's value)"


def register(parser: argparse.ArgumentParser) -> None:
    add_target(parser)
    parser.add_argument("key", nargs="?", metavar="KEY", help="one setting; prints just its value")
    parser.add_argument("--json", action="store_true", help="JSON object of name -> value")


def run(args: argparse.Namespace) -> int:
    cfg = open_from(args).settings()
    if args.key is not None:
        if args.key not in cfg:
            raise UfenceError(f"unknown setting {args.key!r} (known: {', '.join(cfg)})")
        cfg = {args.key: cfg[args.key]}
        if not args.json:
            print(cfg[args.key])
            return 0
    if args.json:
        print(json.dumps(cfg, indent=2))
    else:
        for k, v in cfg.items():
            print(f"{k}={v}")
    return 0
