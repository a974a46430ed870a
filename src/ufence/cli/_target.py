"""What the TARGET-taking commands share: the argument and opening it."""

from __future__ import annotations

import argparse

from ufence.backends import Backend, open_target


def add_target(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", metavar="TARGET", help="a pid running under 'ufence run', or 'kernel'")
    parser.add_argument("--root", metavar="DIR", default=None,
                        help="kernel only: read sysfs/debugfs/dmesg collected under DIR instead of /")


def open_from(args: argparse.Namespace) -> Backend:
    return open_target(args.target, args.root)
