#!/usr/bin/env python3
"""Benchmark: parse a 10 GiB Anolis KFENCE pool's objects file (1,310,710 slots).

Generates the file from the format strings in kfence-kernel.md sections 1.3
and 3.4 (Anolis: ``node N:`` before every record, indices restarting in each
1 GiB area of 131071 objects, a doubled separator at every area boundary,
6.x track headers with ``(... ago)``), then parses it in a child process with
``ufence.backends.kernel.objects_parse.iter_objects`` and reports wall time
and the child's peak RSS. Exit status 1 if the budget (10 s of CPU, 256 MiB peak RSS) is blown.

    python3 bench/kernel_parse/run.py [--areas 10] [--file PATH] [--keep]
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PER_AREA = 131071
PAGE = 4096
SEP = "-" * 33 + "\n"
BUDGET_S = 10.0
BUDGET_RSS_MIB = 256

_FUNCS = [
    ("__alloc_skb", 0x160, 0x1A0), ("kmalloc_reserve", 0x3A, 0xA0), ("alloc_inode", 0x24, 0xC0),
    ("ext4_alloc_inode", 0x1D, 0x170), ("d_alloc", 0x2B, 0x210), ("getname_flags", 0x26, 0x1C0),
    ("do_sys_openat2", 0x91, 0x160), ("__x64_sys_openat", 0x55, 0xA0), ("do_syscall_64", 0x87, 0x1B0),
    ("entry_SYSCALL_64_after_hwframe", 0x76, 0x7E), ("kthread", 0xD2, 0x100), ("ret_from_fork", 0x34, 0x50),
    ("ret_from_fork_asm", 0x1A, 0x30), ("tcp_sendmsg_locked", 0x4F3, 0xF00), ("xas_alloc", 0xA4, 0xC0),
    ("shmem_get_folio_gfp", 0x237, 0x610), ("bio_alloc_bioset", 0x1D2, 0x4A0), ("nvme_queue_rq", 0x2F1, 0x700),
]
_CACHES = ["kmalloc-64", "kmalloc-128", "dentry", "inode_cache", "skbuff_head_cache", "kmalloc-1k", "<destroyed>"]


def _stacks(rng: random.Random, n: int) -> list[str]:
    out = []
    for _ in range(n):
        depth = rng.randint(5, 14)
        frames = rng.sample(_FUNCS, min(depth, len(_FUNCS)))
        mod = " [nvme]" if rng.random() < 0.1 else ""
        out.append("".join(f" {f}+{o:#x}/{s:#x}{mod}\n" for f, o, s in frames))
    return out


def generate(path: Path, areas: int, nodes: int = 2, seed: int = 1) -> int:
    """Write the objects file; returns the number of slots."""
    rng = random.Random(seed)
    stacks = _stacks(rng, 400)
    total = 0
    with path.open("w", buffering=1 << 20) as f:
        for area in range(areas):
            node = area % nodes
            base = 0xFFFF888100000000 + area * (1 << 30)
            chunk: list[str] = []
            for i in range(PER_AREA):
                total += 1
                chunk.append(f"node {node}:\n")
                r = rng.random()
                if r < 0.08:
                    chunk.append(f"kfence-#{i} unused\n")
                else:
                    size = rng.choice((32, 64, 100, 128, 192, 1000, 4096))
                    start = base + (i + 1) * 2 * PAGE + (0 if i % 2 else PAGE - size)
                    cache = "<destroyed>" if size == PAGE else rng.choice(_CACHES[:-1])
                    t = 10.0 + i * 0.001
                    end = start + size - 1
                    chunk.append(f"kfence-#{i}: 0x{start:016x}-0x{end:016x}, size={size}, cache={cache}\n\n")
                    chunk.append(f"allocated by task {rng.randint(1, 40000)} on cpu {i % 64} at {t:.6f}s "
                                 f"({5000.0 - t:.6f}s ago):\n")
                    chunk.append(rng.choice(stacks))
                    if r < 0.45:
                        kind = "rcu freeing" if r < 0.1 else "freed"
                        chunk.append(f"\n{kind} by task {rng.randint(1, 40000)} on cpu {i % 64} at {t + 1:.6f}s "
                                     f"({4999.0 - t:.6f}s ago):\n")
                        chunk.append(rng.choice(stacks))
                chunk.append(SEP)
                if len(chunk) > 20000:
                    f.write("".join(chunk))
                    chunk.clear()
            if area + 1 < areas:
                chunk.append(SEP)  # next_object() crossing into the next area
            f.write("".join(chunk))
    return total


def _parse_child(path: str) -> None:
    from ufence.backends.kernel.objects_parse import iter_objects

    t0, c0 = time.perf_counter(), time.process_time()
    n = frames = 0
    with open(path, "rb") as fp:  # as KernelBackend.objects() opens it
        for obj in iter_objects(fp, path):
            n += 1
            if obj.alloc:
                frames += len(obj.alloc.frames)
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    print(f"{n} {frames} {dt:.3f} {cpu:.3f}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--areas", type=int, default=10, help="1 GiB areas of 131071 objects (default 10 = 10 GiB)")
    ap.add_argument("--file", help="reuse/generate this file instead of a temporary one")
    ap.add_argument("--keep", action="store_true", help="keep the generated file")
    ap.add_argument("--parse-child", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.parse_child:
        _parse_child(a.parse_child)
        return 0
    path = Path(a.file) if a.file else Path(tempfile.mkdtemp(prefix="ufence-kparse-")) / "objects"
    if not path.exists():
        t0 = time.perf_counter()
        n = generate(path, a.areas)
        print(f"generated {n} slots, {path.stat().st_size / 2**20:.0f} MiB in {time.perf_counter() - t0:.1f}s")
    src = str(Path(__file__).resolve().parents[2] / "src")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")])))
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, __file__, "--parse-child", str(path)], capture_output=True, text=True,
                         env=env, timeout=600)
    wall = time.perf_counter() - t0
    if out.returncode:
        print(out.stderr, file=sys.stderr)
        return 1
    n, frames, dt, cpu = out.stdout.split()
    rss_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    load = os.getloadavg()[0]
    print(f"parsed {n} objects ({frames} alloc frames) in {float(dt):.2f}s wall, {float(cpu):.2f}s CPU "
          f"(child process wall {wall:.2f}s incl. start-up; load average {load:.1f}), peak RSS {rss_mib:.0f} MiB")
    if not a.keep and not a.file:
        path.unlink()
        path.parent.rmdir()
    # CPU time is the budget: on a shared machine wall time measures the neighbours too
    ok = float(cpu) < BUDGET_S and rss_mib < BUDGET_RSS_MIB
    print("OK" if ok else f"OVER BUDGET ({BUDGET_S}s, {BUDGET_RSS_MIB} MiB)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
