"""redis-benchmark against a loopback redis-server (jemalloc under ufence)."""

from __future__ import annotations

import contextlib
import shutil

from harness import net, proc
from harness.configs import Config
from harness.context import Context, false_bug, proc_cpu
from harness.workloads.base import HUNG, OK, Case, Metric, Outcome, Workload, classify, tail
from harness.workloads.server import MAP_LIMITED, server_metrics

TESTS = ("set", "get", "lpush", "lpop")


class Redis(Workload):
    name = "redis"
    what = "redis-benchmark -c 20 -d 64 -t set,get,lpush,lpop against redis-server on 127.0.0.1"
    metrics = [
        Metric("rps", "requests/s, mean of SET/GET/LPUSH/LPOP", True, main=True),
        Metric("cpu_us_per_req", "server CPU us per request", False),
        Metric("set_rps", "SET requests/s", True),
        Metric("get_rps", "GET requests/s", True),
        Metric("rss_mib", "MiB server peak RSS", False),
        Metric("pool_resident_mib", "MiB ufence object pages", False),
        Metric("metadata_mib", "MiB ufence metadata in use", False),
        Metric("shm_resident_mib", "MiB shm file resident (tmpfs)", False),
    ]

    def missing(self) -> str | None:
        for tool in ("redis-server", "redis-benchmark"):
            if not shutil.which(tool):
                return f"{tool} not installed"
        return None

    def cases(self, quick: bool) -> list[Case]:
        n, keys = (2000, 500) if quick else (50000, 20000)
        return [Case("c20", f"{n} requests per test, {keys} random keys", {"n": n, "keys": keys},
                     configs=_CONFIGS)]

    def command(self, case: Case) -> str:
        p = case.params
        return f"redis-benchmark -n {p['n']} -r {p['keys']} -c 20 -d 64 -t {','.join(TESTS)} --csv"

    def run_once(self, ctx: Context, cfg: Config, case: Case) -> Outcome:
        p = case.params
        port = net.free_port()
        cmd = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
               "--daemonize", "no", "--loglevel", "warning"]
        argv, env, rundir, reports = ctx.launch(cfg, case.pool, cmd, "0")
        work = reports.parent / "redis"
        work.mkdir()
        argv += ["--dir", str(work)]
        srv = proc.Server(argv, env, reports.parent / "redis.log")
        try:
            try:
                proc.wait_for(lambda: net.redis_ping(port), 30 if ctx.quick else 60, "redis-server", srv)
            except Exception as e:  # the server's fate is the result
                return _server_failed(cfg, srv, str(e), timed_out=srv.alive())
            bench = [*ctx.pin("1"), "redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-n", str(p["n"]),
                                    "-r", str(p["keys"]), "-c", "20", "-d", "64", "-t", ",".join(TESTS), "--csv"]
            cpu0 = proc_cpu(srv.pid)
            r = proc.run(bench, env=ctx.base_env(), timeout=60 if ctx.quick else 240)
            cpu1 = proc_cpu(srv.pid)
            if not srv.alive():
                return _server_failed(cfg, srv, "server died during the benchmark", False)
            m, extra = server_metrics(ctx, cfg, srv.pid, rundir)
        finally:
            srv.stop(ctx.grace(f"redis/{cfg.name}"))
            if srv.killed:
                ctx.hung.add(f"redis/{cfg.name}")
        log = srv.output()
        bug = false_bug(log, reports) if cfg.kind == "ufence" else None
        if bug:
            return Outcome("false-bug", message=bug)
        rates = _parse(r.stdout)
        if r.rc != 0 or not all(t.upper() in rates for t in TESTS):
            return Outcome(classify(r.rc, r.timed_out), message="redis-benchmark: " + tail(r.stdout + r.stderr))
        m["rps"] = sum(rates[t.upper()] for t in TESTS) / len(TESTS)
        m["set_rps"] = rates["SET"]
        m["get_rps"] = rates["GET"]
        if cpu0 is not None and cpu1 is not None:
            m["cpu_us_per_req"] = 1e6 * (cpu1 - cpu0) / (p["n"] * len(TESTS))
        if srv.killed:
            return Outcome(HUNG, m, message="redis-server ignored SIGTERM (killed)", extra=extra)
        return Outcome(OK, m, extra=extra)


def _parse(csv: str) -> dict[str, float]:
    """redis-benchmark --csv: "test","rps",... rows; LPUSH also appears as LPUSH (needed for LPOP)."""
    out: dict[str, float] = {}
    for line in csv.splitlines():
        cells = [c.strip('"') for c in line.split(",")]
        if len(cells) >= 2 and cells[0] != "test":
            name = cells[0].split()[0].upper()
            with contextlib.suppress(ValueError):
                out.setdefault(name, float(cells[1]))
    return out


def _server_failed(cfg: Config, srv: proc.Server, why: str, timed_out: bool) -> Outcome:
    srv.stop()
    rc = srv.proc.returncode
    msg = f"{why}; log: {tail(srv.output())}"
    if cfg.name in MAP_LIMITED and not timed_out:
        # Seen here: redis sizes its strings with malloc_usable_size(), which
        # Electric Fence and DUMA do not interpose, so jemalloc answers for a
        # foreign pointer and sdscatfmt() writes into the guard page at start-up.
        why = "SIGSEGV at start-up: redis trusts malloc_usable_size(), which this peer does not provide; "
        return Outcome("crashed", message=why + msg, expected=True)
    return Outcome("timeout" if timed_out else ("crashed" if rc is not None and rc < 0 else "failed"), message=msg)


_CONFIGS = (
    "none", "ufence-off", "ufence-100ms", "ufence-10ms", "ufence-1ms", "ufence-1in1000", "ufence-1in100",
    "ufence-full", "ufence-full-batch", "ufence-full-madvise", "ufence-full-mprotect", "efence", "duma",
    "scudo", "scudo-gwp-1000", "scudo-gwp-100",
)

WORKLOAD = Redis()
