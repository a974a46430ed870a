"""``ufence kernel enable|disable|status``: switch the kernel's KFENCE."""

from __future__ import annotations

import argparse
import sys

from ufence.backends.kernel import KernelBackend, control, pool
from ufence.errors import UfenceError, UsageError
from ufence.formats.kfence_text import pool_warning

NAME = "kernel"
HELP = "enable, disable or inspect the kernel's KFENCE (sysfs/debugfs, or a copied tree with --root)"


def register(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION")
    en = sub.add_parser("enable", help="turn KFENCE on: sampling (--sample MS) or Anolis full mode (--full)")
    en.add_argument("--full", action="store_true", help="Anolis full mode: guard every allocation the pool can hold")
    grp = en.add_mutually_exclusive_group()
    grp.add_argument("--pool", metavar="SIZE", help="full-mode pool size, e.g. 1G or 10G (whole 1 GiB areas)")
    grp.add_argument("--objects", metavar="N", type=int, help="full-mode pool size in objects")
    en.add_argument("--sample", metavar="MS", type=int,
                    help="sample one allocation every MS milliseconds (default 100)")
    dis = sub.add_parser("disable", help="turn KFENCE off (sample_interval=0)")
    st = sub.add_parser("status", help="what KFENCE this kernel has and how it is set")
    for p in (en, dis, st):
        p.add_argument("--root", metavar="DIR", help="act on a copied tree DIR/sys/... instead of this machine")
    for p in (en, dis):
        p.add_argument("--dry-run", action="store_true", help="print the writes without doing them")


def run(args: argparse.Namespace) -> int:
    if not getattr(args, "action", None):
        raise UsageError("ufence kernel: give an action: enable, disable or status")
    kb = KernelBackend(root=args.root)
    if args.action == "status":
        print(status_text(kb))
        return 0
    if args.action == "disable":
        steps = control.plan_disable(kb)
        if not steps:
            print("KFENCE is already off (sample_interval=0)")
            return 0
        _print(control.run(kb, steps, args.dry_run))
        return 0
    if args.full:
        if args.sample is not None:
            raise UsageError("--full and --sample exclude each other")
        size = pool.parse_size(args.pool) if args.pool else None
        steps, note = control.plan_full(kb, pool_size=size, objects=args.objects)
        if not steps:
            print(note)
            return 0
        print(f"full mode: {note}")
        _print(control.run(kb, steps, args.dry_run))
        if not args.dry_run:
            planned = next((int(s.value) for s in steps if s.key == "num_objects"), 0)
            warn = control.check_full(kb, planned)
            if warn:
                print(f"ufence: {warn}", file=sys.stderr)
            print("verified: sample_interval=-1, num_objects=" + kb.params().get("num_objects", "?"))
        return 0
    if args.pool or args.objects is not None:
        raise UsageError("--pool/--objects size the Anolis full-mode pool: use them with --full")
    ms = 100 if args.sample is None else args.sample
    steps = control.plan_sample(kb, ms)
    if not steps:
        print(f"KFENCE already samples every {ms} ms")
        return 0
    _print(control.run(kb, steps, args.dry_run))
    return 0


def _print(lines: list[str]) -> None:
    for line in lines:
        print(line)


def status_text(kb: KernelBackend) -> str:
    v = kb.variant
    rel = kb.paths.release()
    lines = [f"kernel:  {rel or 'unknown release'}" + ("" if kb.paths.live else f" (tree {kb.paths.root})"),
             f"KFENCE:  {v.family()}"]
    if not v.built:
        return "\n".join(lines)
    params = kb.params()
    iv = int(params.get("sample_interval", "0") or 0)
    mode = "off" if iv == 0 else ("full mode (every allocation)" if iv < 0 else f"sampling every {iv} ms")
    lines.append(f"state:   {mode}")
    lines.append("params:  " + ", ".join(f"{k}={val}" for k, val in params.items()))
    caches = kb.caches()
    off = [k[6:] for k, val in caches.items() if val == "off"]
    if caches:
        lines.append(f"caches:  {len(caches)} with a KFENCE switch, off: {', '.join(off) or 'none'}")
    try:
        st = kb.stats()
    except UfenceError as e:
        lines.append(f"stats:   unavailable: {e}")
        return "\n".join(lines)
    c = st.counters
    use = st.pool_use()
    lines.append(f"pool:    {st.pool_objects} objects, {st.pool_bytes} bytes ({st.extra.get('pool_objects_from')})"
                 + (f", {use * 100:.0f}% in use" if use is not None else ""))
    for n in st.nodes:
        lines.append(f"         node {n.node}: {n.objects} objects, {n.bytes} bytes")
    lines.append("stats:   " + ", ".join(f"{k}={val}" for k, val in c.items()))
    warn = pool_warning(st)
    if warn:
        lines.append(f"advice:  {warn}")
    return "\n".join(lines)
