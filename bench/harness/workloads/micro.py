"""bench/micro/alloc.c: malloc/free throughput and RSS with a large live set."""

from __future__ import annotations

import json
import re

from harness import proc
from harness.configs import NO_VALGRIND, Config
from harness.context import Context, false_bug
from harness.workloads.base import OK, Case, Metric, Outcome, Workload, classify, tail

# Electric Fence and DUMA spend two mappings per allocation against
# vm.max_map_count (65530): they cannot hold more than ~32,000 live objects.
MAP_LIMITED = ("efence", "duma")


class Micro(Workload):
    name = "micro"
    what = "bench/micro/alloc.c: replace random live objects (free + malloc 8 B..4 KiB, log-uniform)"
    metrics = [
        Metric("allocs_per_sec", "malloc+free pairs/s", True, main=True),
        Metric("cpu_ns_per_pair", "CPU ns per malloc+free", False),
        Metric("fill_allocs_per_sec", "mallocs/s while filling", True),
        Metric("max_rss_mib", "MiB peak RSS", False),
        Metric("pool_resident_mib", "MiB ufence object pages", False),
        Metric("metadata_mib", "MiB ufence metadata in use", False),
        Metric("shm_resident_mib", "MiB shm file resident (tmpfs)", False),
        Metric("guarded_pct", "% of allocations guarded", True),
    ]

    def cases(self, quick: bool) -> list[Case]:
        secs = 0.25 if quick else 1.0
        if quick:
            return [
                Case("t1-live1k", "1 thread, 1,000 live", {"threads": 1, "live": 1000, "secs": secs}, 4096),
                Case("t2-live1k", "2 threads, 1,000 live", {"threads": 2, "live": 1000, "secs": secs}, 4096),
                Case("t1-live10k", "1 thread, 10,000 live", {"threads": 1, "live": 10000, "secs": secs}, 16384),
            ]
        return [
            Case("t1-live1k", "1 thread, 1,000 live", {"threads": 1, "live": 1000, "secs": secs}, 4096),
            Case("t2-live1k", "2 threads, 1,000 live", {"threads": 2, "live": 1000, "secs": secs}, 4096,
                 configs=NO_VALGRIND),
            Case("t1-live30k", "1 thread, 30,000 live", {"threads": 1, "live": 30000, "secs": secs}, 40000,
                 configs=NO_VALGRIND),
            Case("t2-live30k", "2 threads, 30,000 live", {"threads": 2, "live": 30000, "secs": secs}, 40000,
                 configs=NO_VALGRIND),
            Case("t1-live1M", "1 thread, 1,000,000 live", {"threads": 1, "live": 1000000, "secs": secs},
                 1100000, configs=NO_VALGRIND, reps=2),
        ]

    def command(self, case: Case) -> str:
        p = case.params
        return f"alloc {p['threads']} {p['live']} {p['secs']}"

    def run_once(self, ctx: Context, cfg: Config, case: Case) -> Outcome:
        p = case.params
        cpus = "1" if p["threads"] == 1 else "0,1"
        cmd = [ctx.tools["alloc"], str(p["threads"]), str(p["live"]), str(p["secs"])]
        argv, env, _rundir, reports = ctx.launch(cfg, case.pool, cmd, cpus)
        snap = reports.parent / "shm-copy"
        env["BENCH_SHM_COPY"] = str(snap)
        # Bounded: filling 1M guarded objects takes seconds; a peer that is
        # 1000x slower is cut off and recorded as a timeout.
        limit = (60 if ctx.quick else 240) + p["live"] / 5000
        r = proc.run(argv, env=env, timeout=limit)
        bug = false_bug(r.stderr, reports) if cfg.kind == "ufence" else None
        if bug:
            return Outcome("false-bug", message=bug)
        if r.rc != 0:
            filled = re.findall(r"filled (\d+)", r.stderr)
            got = f"died after {filled[-1]} live objects: " if filled else ""
            msg = got + tail(re.sub(r"filled \d+\n", "", r.stderr))
            if cfg.name in MAP_LIMITED and p["live"] > 32000 and not r.timed_out:
                return Outcome("died", message=msg, expected=True)
            return Outcome(classify(r.rc, r.timed_out), message=msg)
        line = next((ln for ln in r.stdout.splitlines() if ln.startswith("{")), "")
        try:
            data = json.loads(line)
        except json.JSONDecodeError:
            return Outcome("failed", message="no result line: " + tail(r.stdout + r.stderr))
        m = {
            "allocs_per_sec": float(data["allocs_per_sec"]),
            "fill_allocs_per_sec": float(data["fill_allocs_per_sec"]),
            "max_rss_mib": data["max_rss_kib"] / 1024,
        }
        if data["pairs"]:
            m["cpu_ns_per_pair"] = 1e9 * data["steady_cpu_seconds"] / data["pairs"]
        extra: dict[str, object] = {}
        stats = ctx.shm_stats(snap) if cfg.kind == "ufence" else None
        if stats:
            m["pool_resident_mib"] = stats.get("pool_resident_bytes", 0) / 2**20
            m["metadata_mib"] = stats.get("metadata_bytes", 0) / 2**20
            total = data["fill_allocs"] + data["pairs"]
            if total:
                m["guarded_pct"] = 100.0 * stats.get("total_allocations", 0) / total
            extra["stats"] = stats
        if data.get("shm_resident_kib", -1) >= 0:
            m["shm_resident_mib"] = data["shm_resident_kib"] / 1024
        return Outcome(OK, m, extra=extra)


WORKLOAD = Micro()
