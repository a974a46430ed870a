"""``ufence reports TARGET``: every bug report of a process or the kernel.

For ``kernel`` the reports come from dmesg (/dev/kmsg live; DIR/dmesg.txt
with --root; any saved log or vmcore-dmesg output with --file). Text: one
line per report; --json: a list of report objects, each with its dedup
``signature``.
"""

from __future__ import annotations

import argparse
import json

from ufence.analysis.signature import signature, signature_key
from ufence.backends import open_target
from ufence.errors import UsageError
from ufence.model import Report

NAME = "reports"
HELP = "list bug reports of a target (pid or 'kernel': parsed from dmesg) with dedup signatures"


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", metavar="TARGET", help="a pid, or 'kernel'")
    parser.add_argument("--file", metavar="LOG", help="kernel: parse this saved log (dmesg, /dev/kmsg, vmcore-dmesg)")
    parser.add_argument("--root", metavar="DIR", help="kernel: a collected tree; the log is DIR/dmesg.txt")
    parser.add_argument("--json", action="store_true", help="JSON list of reports with signatures")


def run(args: argparse.Namespace) -> int:
    if args.target == "kernel":
        from ufence.backends.kernel import KernelBackend

        backend = KernelBackend(root=args.root, dmesg_file=args.file)
        reps = backend.reports()
    else:
        if args.file:
            raise UsageError("--file applies only to the target 'kernel'")
        reps = open_target(args.target, args.root).reports()
    if args.json:
        out = []
        for r in reps:
            d = r.to_dict()
            d["signature"] = signature(r)
            d["signature_key"] = signature_key(r)
            out.append(d)
        print(json.dumps(out, indent=2))
        return 0
    n = 0
    for r in reps:
        print(summary_line(r))
        n += 1
    if n == 0:
        print("no KFENCE reports found")
    return 0


def summary_line(r: Report) -> str:
    parts = []
    if r.timestamp is not None:
        parts.append(f"[{r.timestamp:12.6f}]" if r.source == "kernel" else f"[{r.timestamp:.3f}]")
    parts.append(signature(r))
    detail = [f"bug={r.bug.value}" + (f" {r.access}" if r.access else "")]
    if r.function:
        detail.append(f"at {r.function}")
    if r.object is not None:
        o = r.object
        tag = "kfence" if r.source == "kernel" else "ufence"
        obj = f"{tag}-#{o.index}"
        if o.size is not None:
            obj += f" size={o.size}"
        if o.cache:
            obj += f" cache={o.cache}"
        if r.distance is not None:
            obj += f" ({r.distance}B {r.side})"
        detail.append(obj)
    if r.pid is not None:
        detail.append(f"pid {r.pid}" + (f" {r.comm}" if r.comm else ""))
    if r.extra.get("truncated"):
        detail.append("(truncated)")
    return " ".join(parts) + "  " + ", ".join(detail)
