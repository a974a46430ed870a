"""``ufence demo``: compile the bundled buggy program and run it under the engine."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from ufence.errors import UfenceError

NAME = "demo"
HELP = "compile a small buggy C program and run it under ufence in full mode"

_SOURCE = Path(__file__).resolve().parent.parent / "demo" / "orders.c"


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--keep", metavar="DIR", help="build in DIR and keep the binary and reports")
    parser.add_argument("--guard", choices=("auto", "uffd", "madvise", "mprotect"), default="auto",
                        help="guard mechanism (default: auto)")


def _compiler() -> str:
    for cc in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if cc and shutil.which(cc):
            return cc
    raise UfenceError("no C compiler found (install gcc, or set CC)")


def run(args: argparse.Namespace) -> int:
    workdir = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="ufence-demo-"))
    workdir.mkdir(parents=True, exist_ok=True)
    binary = workdir / "orders"
    reports = workdir / "reports"
    cmd = [_compiler(), "-g", "-O0", "-fno-omit-frame-pointer", "-o", str(binary), str(_SOURCE)]
    built = subprocess.run(cmd, capture_output=True, text=True)
    if built.returncode != 0:
        raise UfenceError(f"compiling the demo failed: {built.stderr.strip().splitlines()[-1:]}")
    print(f"$ ufence run --mode full -- {binary}", file=sys.stderr, flush=True)
    runner = [sys.executable, "-m", "ufence", "run", "--mode", "full", "--guard", args.guard,
              "--report-dir", str(reports), "--", str(binary)]
    rc = subprocess.run(runner).returncode
    found = sorted(reports.glob("*.json")) if reports.is_dir() else []
    print(f"\nufence demo: program exited with {rc}; {len(found)} bug report(s) written to {reports}",
          file=sys.stderr)
    if found:
        print(f"re-render one symbolized with file:line: ufence report {found[0]}", file=sys.stderr)
    if not args.keep:
        print(f"(build directory {workdir} kept for inspection; remove it when done)", file=sys.stderr)
    # The demo succeeds when the engine caught both planted bugs.
    return 0 if len(found) >= 2 else 1
