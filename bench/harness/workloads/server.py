"""Shared bits of the server workloads: memory and ufence stats of a live server."""

from __future__ import annotations

import contextlib
from pathlib import Path

from harness.configs import Config
from harness.context import Context, proc_memory

MAP_LIMITED = ("efence", "duma")


def server_metrics(ctx: Context, cfg: Config, pid: int, rundir: Path) -> tuple[dict[str, float], dict[str, object]]:
    """RSS of the server and, under ufence, the pool's own footprint."""
    m: dict[str, float] = {}
    mem = proc_memory(pid)
    if "VmHWM" in mem:
        m["rss_mib"] = mem["VmHWM"]
    extra: dict[str, object] = {}
    if cfg.kind == "ufence":
        stats = ctx.shm_stats(rundir / f"{pid}.shm")
        if stats:
            m["pool_resident_mib"] = stats.get("pool_resident_bytes", 0) / 2**20
            m["metadata_mib"] = stats.get("metadata_bytes", 0) / 2**20
            m["guarded"] = float(stats.get("total_allocations", 0))
            extra["stats"] = stats
        with contextlib.suppress(OSError):
            m["shm_resident_mib"] = (rundir / f"{pid}.shm").stat().st_blocks * 512 / 2**20
    return m, extra
