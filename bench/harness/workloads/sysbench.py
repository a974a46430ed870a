"""sysbench oltp_read_write against a private MariaDB (glibc malloc): the seed's table.

The database is prepared once with no engine; each measured run starts
mariadbd on that datadir under one configuration, as the unprivileged user
mysql, listening on 127.0.0.1 and a private socket, runs sysbench, and stops
the server again.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
from pathlib import Path

from harness import net, proc
from harness.configs import Config
from harness.context import Context, false_bug, proc_cpu
from harness.errors import BenchError
from harness.workloads.base import HUNG, OK, Case, Metric, Outcome, Workload, classify, tail
from harness.workloads.server import MAP_LIMITED, server_metrics

USER = "mysql"


class Sysbench(Workload):
    name = "sysbench"
    what = "sysbench oltp_read_write, 2 threads, against mariadbd on a private datadir"
    metrics = [
        Metric("tps", "transactions/s", True, main=True),
        Metric("qps", "queries/s", True),
        Metric("cpu_ms_per_txn", "server CPU ms per transaction", False),
        Metric("lat_avg_ms", "ms mean latency", False),
        Metric("lat_p95_ms", "ms p95 latency", False),
        Metric("rss_mib", "MiB server peak RSS", False),
        Metric("pool_resident_mib", "MiB ufence object pages", False),
        Metric("metadata_mib", "MiB ufence metadata in use", False),
        Metric("shm_resident_mib", "MiB shm file resident (tmpfs)", False),
    ]

    def __init__(self) -> None:
        self.datadir: Path | None = None
        self.tables = 0
        self.size = 0

    def missing(self) -> str | None:
        for tool in ("sysbench", "mariadbd", "mariadb-install-db", "setpriv"):
            if not shutil.which(tool) and not os.path.exists(f"/usr/sbin/{tool}"):
                return f"{tool} not installed"
        try:
            pwd.getpwnam(USER)
        except KeyError:
            return f"user {USER} missing"
        return None

    def cases(self, quick: bool) -> list[Case]:
        secs = 3 if quick else 6
        return [Case("oltp_rw", f"2 threads, {secs} s, 4 tables x 10,000 rows" if not quick else
                     f"2 threads, {secs} s, 1 table x 1,000 rows", {"secs": secs}, configs=_CONFIGS)]

    def command(self, case: Case) -> str:
        return (f"sysbench oltp_read_write --tables={self.tables or 4} --table-size={self.size or 10000} "
                f"--threads=2 --time={case.params['secs']} --mysql-socket=SOCK --mysql-user=root run")

    def _sb(self, sock: Path, *args: str) -> list[str]:
        return ["sysbench", "oltp_read_write", "--db-driver=mysql", f"--mysql-socket={sock}",
                "--mysql-user=root", "--mysql-db=sbtest", f"--tables={self.tables}",
                f"--table-size={self.size}", *args]

    def _mariadbd(self, sock: Path) -> list[str]:
        assert self.datadir is not None
        base = self.datadir.parent
        return ["/usr/sbin/mariadbd", "--no-defaults", f"--datadir={self.datadir}", f"--socket={sock}",
                "--bind-address=127.0.0.1", f"--port={net.free_port()}", f"--pid-file={base}/mysqld.pid",
                "--innodb-buffer-pool-size=128M", "--innodb-flush-log-at-trx-commit=2", "--skip-log-bin",
                "--innodb-use-native-aio=0", f"--tmpdir={base}"]

    def _start(self, ctx: Context, cfg: Config, pool: int, tag: str) -> tuple[proc.Server, Path, Path, Path]:
        """mariadbd under `cfg`, as user mysql, pinned to CPU 0."""
        assert self.datadir is not None
        sock = self.datadir.parent / f"mysqld-{tag}.sock"
        argv, env, rundir, reports = ctx.launch(cfg, pool, self._mariadbd(sock), "0", owner=USER)
        srv = proc.Server(argv, env, self.datadir.parent / f"mysqld-{tag}.log")
        return srv, sock, rundir, reports

    def setup(self, ctx: Context) -> None:
        pw = pwd.getpwnam(USER)
        base = ctx.tmp / "mariadb"
        base.mkdir(mode=0o755)
        os.chown(base, pw.pw_uid, pw.pw_gid)
        os.chmod(ctx.tmp, 0o755)  # mysql must traverse to its datadir
        if ctx.shm:
            os.chmod(ctx.shm, 0o755)  # and to its run dir (itself 0700, owned by mysql)
        self.datadir = base / "data"
        self.tables, self.size = (1, 1000) if ctx.quick else (4, 10000)
        r = proc.run(["setpriv", f"--reuid={USER}", f"--regid={USER}", "--clear-groups", "mariadb-install-db",
                      "--no-defaults", f"--datadir={self.datadir}", "--auth-root-authentication-method=socket",
                      "--skip-test-db"], env=ctx.base_env(), timeout=120, cwd=base)
        if r.rc != 0:
            raise BenchError("mariadb-install-db failed: " + tail(r.stdout + r.stderr))
        sock = base / "mysqld-prepare.sock"
        srv = proc.Server(["setpriv", f"--reuid={USER}", f"--regid={USER}", "--clear-groups",
                           *self._mariadbd(sock)], ctx.base_env(), base / "mysqld-prepare.log")
        try:
            proc.wait_for(lambda: net.unix_connectable(str(sock)), 60, "mariadbd", srv)
            r = proc.run(["mariadb", f"--socket={sock}", "-uroot", "-e", "CREATE DATABASE sbtest"],
                         env=ctx.base_env(), timeout=30)
            if r.rc != 0:
                raise BenchError("create database: " + tail(r.stderr))
            r = proc.run(self._sb(sock, "prepare"), env=ctx.base_env(), timeout=300)
            if r.rc != 0:
                raise BenchError("sysbench prepare: " + tail(r.stdout + r.stderr))
        finally:
            if srv.stop(60) not in (0, None):
                raise BenchError("mariadbd (prepare) did not shut down cleanly: " + tail(srv.output()))

    def run_once(self, ctx: Context, cfg: Config, case: Case) -> Outcome:
        ctx_tag = f"run{ctx.runs}"
        srv, sock, rundir, reports = self._start(ctx, cfg, case.pool, ctx_tag)
        try:
            try:
                proc.wait_for(lambda: net.unix_connectable(str(sock)), 60 if ctx.quick else 120, "mariadbd", srv)
            except BenchError as e:
                timed_out = srv.alive()
                srv.stop(5)
                msg = f"{e}; log: {tail(srv.output())}"
                if cfg.name in MAP_LIMITED and not timed_out:
                    return Outcome("died", message=msg, expected=True)
                rc = srv.proc.returncode
                return Outcome("timeout" if timed_out else ("crashed" if rc is not None and rc < 0 else "failed"),
                               message=msg)
            secs = case.params["secs"]
            cpu0 = proc_cpu(srv.pid)
            r = proc.run(ctx.pin("1") + self._sb(sock, "--threads=2", f"--time={secs}", "--percentile=95",
                                                 "--db-ps-mode=auto", "run"),
                         env=ctx.base_env(), timeout=secs + (60 if ctx.quick else 120))
            cpu1 = proc_cpu(srv.pid)
            died = not srv.alive()
            m, extra = server_metrics(ctx, cfg, srv.pid, rundir) if not died else ({}, {})
        finally:
            rc = srv.stop(ctx.grace(f"sysbench/{cfg.name}"))
            if srv.killed:
                ctx.hung.add(f"sysbench/{cfg.name}")
        log = srv.output()
        bug = false_bug(log, reports) if cfg.kind == "ufence" else None
        if bug:
            return Outcome("false-bug", message=bug)
        if died:
            st = "died" if cfg.name in MAP_LIMITED else "crashed"
            return Outcome(st, message="mariadbd died during the run: " + tail(log),
                           expected=cfg.name in MAP_LIMITED)
        parsed = _parse(r.stdout)
        if r.rc != 0 or "tps" not in parsed:
            return Outcome(classify(r.rc, r.timed_out), message="sysbench: " + tail(r.stdout + r.stderr, 3))
        if srv.killed:
            m.update(_cpu_per(cpu0, cpu1, parsed["tps"] * secs, "cpu_ms_per_txn", 1e3))
            return Outcome(HUNG, m | parsed, message="mariadbd ignored SIGTERM (killed)",
                           extra=extra)
        if rc not in (0, None):
            return Outcome("crashed" if rc < 0 else "failed", message=f"mariadbd exit {rc}: " + tail(log))
        m.update(parsed)
        m.update(_cpu_per(cpu0, cpu1, parsed["tps"] * secs, "cpu_ms_per_txn", 1e3))
        return Outcome(OK, m, extra=extra)


def _cpu_per(cpu0: float | None, cpu1: float | None, ops: float, key: str, scale: float) -> dict[str, float]:
    """Server CPU time per operation: the cost least disturbed by the neighbours' load."""
    if cpu0 is None or cpu1 is None or ops <= 0:
        return {}
    return {key: scale * (cpu1 - cpu0) / ops}


def _parse(out: str) -> dict[str, float]:
    m: dict[str, float] = {}
    pats = {
        "tps": r"transactions:\s+\d+\s+\(([0-9.]+) per sec",
        "qps": r"queries:\s+\d+\s+\(([0-9.]+) per sec",
        "lat_avg_ms": r"avg:\s+([0-9.]+)",
        "lat_p95_ms": r"95th percentile:\s+([0-9.]+)",
    }
    for k, pat in pats.items():
        hit = re.search(pat, out)
        if hit:
            m[k] = float(hit.group(1))
    return m


_CONFIGS = (
    "none", "ufence-off", "ufence-100ms", "ufence-10ms", "ufence-1ms", "ufence-1in1000", "ufence-1in100",
    "ufence-full", "ufence-full-page", "ufence-full-batch", "ufence-full-madvise", "ufence-full-mprotect",
    "efence", "duma",
    "scudo", "scudo-gwp-1000", "scudo-gwp-100",
)

WORKLOAD = Sysbench()
