"""rt-tests hackbench, processes and threads, as in the seed article."""

from __future__ import annotations

import re
import resource
import shutil

from harness import proc
from harness.configs import NO_VALGRIND, Config
from harness.context import Context, false_bug
from harness.workloads.base import OK, Case, Metric, Outcome, Workload, classify, tail

# Seen here: under Debian's Scudo (LLVM 16) hackbench -T cannot start its
# threads ("pthread_create failed"), with or without GWP-ASan.
KNOWN = {("scudo", "threads"), ("scudo-gwp-1000", "threads"), ("scudo-gwp-100", "threads")}


class Hackbench(Workload):
    name = "hackbench"
    what = "hackbench -g G -l L [-T]: groups of 20 senders x 20 receivers over sockets"
    metrics = [
        Metric("seconds", "s (lower is better)", False, main=True),
        Metric("cpu_seconds", "CPU s, all tasks", False),
    ]

    def missing(self) -> str | None:
        return None if shutil.which("hackbench") else "hackbench (rt-tests) not installed"

    def cases(self, quick: bool) -> list[Case]:
        g, loops = (2, 50) if quick else (8, 200)
        skip = NO_VALGRIND
        return [
            Case("processes", f"{g} groups, {loops} loops, processes", {"g": g, "l": loops, "T": False},
                 4096, configs=skip),
            Case("threads", f"{g} groups, {loops} loops, threads", {"g": g, "l": loops, "T": True},
                 4096, configs=skip),
        ]

    def command(self, case: Case) -> str:
        p = case.params
        return f"hackbench -g {p['g']} -l {p['l']}" + (" -T" if p["T"] else "")

    def run_once(self, ctx: Context, cfg: Config, case: Case) -> Outcome:
        cmd = ["hackbench", "-g", str(case.params["g"]), "-l", str(case.params["l"])]
        if case.params["T"]:
            cmd.append("-T")
        argv, env, _rundir, reports = ctx.launch(cfg, case.pool, cmd)
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        r = proc.run(argv, env=env, timeout=60 if ctx.quick else 180)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
        bug = false_bug(r.stderr + r.stdout, reports) if cfg.kind == "ufence" else None
        if bug:
            return Outcome("false-bug", message=bug)
        m = re.search(r"Time:\s*([0-9.]+)", r.stdout)
        if r.rc != 0 or not m:
            msg = tail(r.stdout + r.stderr)
            return Outcome(classify(r.rc, r.timed_out), message=msg, expected=(cfg.name, case.name) in KNOWN)
        return Outcome(OK, {"seconds": float(m.group(1)), "cpu_seconds": cpu})


WORKLOAD = Hackbench()
