"""``ufence ps``: processes running the ufence engine (this user's run directory)."""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from ufence.backends.process import ProcessBackend
from ufence.backends.process.rundir import alive, check_dir, default_dir
from ufence.errors import UfenceError

NAME = "ps"
HELP = "list processes running the ufence engine: pid, command, mode, pool use, bugs"


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--prune", action="store_true",
                        help="remove the state files of processes that have exited")
    parser.add_argument("--json", action="store_true", help="JSON list")


def _row(pid: int, path: Any) -> dict[str, Any]:
    try:
        b = ProcessBackend(pid, path=path)
    except UfenceError as e:
        return {"pid": pid, "alive": None, "error": str(e), "file": str(path)}
    try:
        st = b.stats()
        m = b.meta()
        c = st.counters
        return {
            "pid": pid, "alive": m["alive"], "comm": m["comm"], "cmdline": m["cmdline"], "mode": st.mode,
            "allocated": c.get("currently_allocated", 0), "pool": st.pool_objects,
            "bugs": c.get("total_bugs", 0), "file": str(path),
        }
    except UfenceError as e:
        return {"pid": pid, "alive": alive(pid, 0), "error": str(e), "file": str(path)}
    finally:
        b.close()


def run(args: argparse.Namespace) -> int:
    d = default_dir()
    if not os.path.lexists(d):
        rows: list[dict[str, Any]] = []
    else:
        check_dir(d)
        rows = []
        for name in sorted(os.listdir(d), key=lambda n: (len(n), n)):
            stem, _, ext = name.partition(".")
            if ext != "shm" or not stem.isdigit():
                continue
            rows.append(_row(int(stem), d / name))
    pruned = []
    if args.prune:
        for r in rows:
            # a file whose process is gone (or whose pid now belongs to another process);
            # unreadable files are kept: they may belong to a live process of a newer ufence
            if r.get("alive") is False or (r.get("error") and not alive(r["pid"], 0)):
                try:
                    os.unlink(r["file"])
                    pruned.append(r["pid"])
                except FileNotFoundError:
                    pass
                except OSError as e:
                    raise UfenceError(f"cannot remove {r['file']}: {e.strerror}") from None
        rows = [r for r in rows if r["pid"] not in pruned]
    if args.json:
        print(json.dumps({"processes": rows, "pruned": pruned} if args.prune else rows, indent=2))
        return 0
    print(f"{'PID':>7}  {'MODE':<6}  {'POOL USE':>14}  {'BUGS':>4}  COMMAND")
    for r in rows:
        if "error" in r:
            print(f"{r['pid']:>7}  {'?':<6}  {'?':>14}  {'?':>4}  ({r['error']})")
            continue
        pool = f"{r['allocated']}/{r['pool']}" if r["pool"] else f"{r['allocated']}/?"
        cmd = r["cmdline"] or r["comm"]
        if not r["alive"]:
            cmd += "  [exited]"
        print(f"{r['pid']:>7}  {r['mode']:<6}  {pool:>14}  {r['bugs']:>4}  {cmd}")
    for pid in pruned:
        print(f"pruned {pid}")
    return 0
