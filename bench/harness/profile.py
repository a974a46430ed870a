"""Where full mode's time goes: perf (cpu-clock, call graphs) over the microbenchmark.

Hardware counters are not available on these virtual machines (`perf stat -e
instructions` says <not supported>), but the cpu-clock software event samples
both user and kernel stacks, which is what is needed to split the cost into
the engine's own work, system calls, page faults and TLB flushes.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

from harness import proc
from harness.configs import Config
from harness.context import Context

# symbol -> what it stands for; "children" percentages (self + callees)
SYMBOLS = {
    "malloc": "malloc, all of it",
    "uf_pool_alloc": "pool: take a slot, open its page",
    "fill_canary": "canary fill of the slack (first touch: includes the page fault)",
    "asm_exc_page_fault": "page faults (fresh zeroed object pages)",
    "do_anonymous_page": "  of which: allocate + zero a page",
    "uf_shm_slot_publish": "publish the slot record to the shm file",
    "uf_stack_capture": "stack capture (call-frame walk, unwind.c)",
    "uf_depot_put": "stack depot insert",
    "free": "free, all of it",
    "uf_pool_free": "pool: release a slot",
    "scan_canary": "canary check of the slack at free",
    "__madvise": "madvise system calls (guard install / discard)",
    "__mprotect": "mprotect system calls",
    "zap_page_range_single": "  of which: unmap + free the object page",
    "walk_pgd_range": "  of which: page-table walk installing guard markers",
    "flush_tlb_mm_range": "TLB flushes",
    "native_flush_tlb_multi": "TLB shootdowns to other CPUs (IPIs)",
}


def _perf_ok() -> bool:
    if not shutil.which("perf"):
        return False
    r = proc.run(["perf", "record", "-q", "-e", "cpu-clock", "-o", "/dev/null", "--", "true"], timeout=30)
    return r.rc == 0


def profile(ctx: Context, cfg: Config, threads: int, live: int, secs: float, pool: int) -> dict[str, Any]:
    """perf record one microbenchmark run under `cfg`; children % per symbol and kernel share."""
    data = ctx.tmp / f"perf-{cfg.name}-{threads}.data"
    cmd = [ctx.tools["alloc"], str(threads), str(live), str(secs)]
    argv, env, _rd, _rep = ctx.launch(cfg, pool, cmd, "1" if threads == 1 else "0,1")
    r = proc.run(["perf", "record", "-q", "-e", "cpu-clock", "-g", "-o", str(data), "--", *argv],
                 env=env, timeout=120 + live / 5000)
    if r.rc != 0 or not data.exists():
        return {"error": "perf record failed: " + r.stderr.strip()[-200:]}
    rep = proc.run(["perf", "report", "-i", str(data), "--stdio", "--children", "--sort", "sym", "-g", "none"],
                   timeout=120)
    dso = proc.run(["perf", "report", "-i", str(data), "--stdio", "--no-children", "--sort", "dso"], timeout=120)
    children: dict[str, float] = {}
    for line in rep.stdout.splitlines():
        m = re.match(r"\s+([0-9.]+)%\s+([0-9.]+)%\s+\[[.k]\]\s+(\S+)", line)
        if m and m.group(3) in SYMBOLS and m.group(3) not in children:
            children[m.group(3)] = float(m.group(1))
    shares: dict[str, float] = {}
    for line in dso.stdout.splitlines():
        m = re.match(r"\s+([0-9.]+)%\s+(\S+)", line)
        if m:
            shares[m.group(2)] = float(m.group(1))
    syscalls = _syscalls(ctx, cfg, threads, live, secs, pool)
    return {"config": cfg.name, "threads": threads, "live": live, "children_pct": children,
            "dso_pct": shares, "syscalls": syscalls, "result": r.stdout.strip()}


def _syscalls(ctx: Context, cfg: Config, threads: int, live: int, secs: float, pool: int) -> dict[str, Any]:
    """System calls per malloc+free, counted with strace -c (slow, so counts only)."""
    if not shutil.which("strace"):
        return {}
    out = ctx.tmp / f"strace-{cfg.name}-{threads}.txt"
    cmd = [ctx.tools["alloc"], str(threads), str(live), str(secs)]
    argv, env, _rd, _rep = ctx.launch(cfg, pool, cmd)
    r = proc.run(["strace", "-f", "-c", "-o", str(out), *argv], env=env, timeout=120 + live / 1000)
    if r.rc != 0 or not out.exists():
        return {}
    calls: dict[str, int] = {}
    for line in out.read_text().splitlines():
        parts = line.split()
        if len(parts) >= 5 and parts[0][0].isdigit() and parts[-1] not in ("total",):
            try:
                calls[parts[-1]] = int(parts[3])
            except ValueError:
                continue
    m = re.search(r'"fill_allocs": (\d+).*"pairs": (\d+)', r.stdout)
    ops = int(m.group(1)) + 2 * int(m.group(2)) + int(m.group(1)) if m else 0  # mallocs + frees
    return {"calls": calls, "alloc_and_free_calls": ops,
            "per_alloc_or_free": {k: v / ops for k, v in calls.items() if ops and v > 100}}


def run(ctx: Context, configs: list[Config], out: Path) -> Path | None:
    """Profile the full-mode configurations; write profile.json next to the other results."""
    import json

    if not _perf_ok():
        return None
    runs = []
    for cfg in configs:
        full = ("ufence-full", "ufence-full-batch", "ufence-full-madvise", "ufence-full-mprotect")
        if cfg.name not in full or not ctx.engine:
            continue
        for threads in (1, 2):
            runs.append(profile(ctx, cfg, threads, 30000, 3.0 if not ctx.quick else 0.5, 40000))
    path = out / "profile.json"
    path.write_text(json.dumps({"what": "perf record -e cpu-clock -g over alloc T 30000 S under full mode",
                                "symbols": SYMBOLS, "runs": runs}, indent=1) + "\n")
    return path
