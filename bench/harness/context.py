"""What every run needs: tools, engine, scratch space, per-run environments."""

from __future__ import annotations

import json
import os
import pwd
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from harness import proc
from harness.configs import Config

# Variables that would leak the caller's own preload or ufence settings into a run.
_SCRUB = ("LD_PRELOAD", "UFENCE_OPTIONS", "UFENCE_RUN_DIR", "UFENCE_REPORT_DIR", "UFENCE_LOG_FD",
          "SCUDO_OPTIONS", "GWP_ASAN_OPTIONS", "MALLOC_CHECK_", "MALLOC_PERTURB_")


@dataclass
class Context:
    tmp: Path  # private scratch directory, removed at the end
    engine: str | None  # libufence.so, or None when it is not built yet
    tools: dict[str, str]  # built helpers: alloc, shmstats
    quick: bool
    ncpu: int
    # where the engine's state files go (UFENCE_RUN_DIR): tmpfs, as the engine's own default
    # /dev/shm/ufence-<uid>; on a disk file system every fork child's file and every slot
    # record written through the shared mapping would be file-system work
    shm: Path | None = None
    runs: int = 0
    hung: set[str] = field(default_factory=set)  # "workload/config" that once ignored SIGTERM
    _seq: int = field(default=0, repr=False)

    def base_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in _SCRUB}
        env["LC_ALL"] = "C"
        return env

    def run_dirs(self, owner: str | None = None) -> tuple[Path, Path]:
        """Fresh UFENCE_RUN_DIR and UFENCE_REPORT_DIR for one run (0700, owned by `owner`)."""
        self._seq += 1
        rundir = (self.shm or self.tmp / "runs") / str(self._seq) / "run"
        reports = self.tmp / "runs" / str(self._seq) / "reports"
        for d in (rundir, reports):
            d.mkdir(parents=True, mode=0o700)
            if owner:
                pw = pwd.getpwnam(owner)
                os.chown(d, pw.pw_uid, pw.pw_gid)
                os.chown(d.parent, pw.pw_uid, pw.pw_gid)
        return rundir, reports

    def env_for(self, cfg: Config, pool: int, owner: str | None = None) -> tuple[dict[str, str], Path, Path]:
        """Environment of the measured process under `cfg`, with its run and report dirs."""
        rundir, reports = self.run_dirs(owner)
        env = self.base_env()
        env.update(cfg.environment(self.engine, pool))
        env["UFENCE_RUN_DIR"] = str(rundir)
        env["UFENCE_REPORT_DIR"] = str(reports)
        return env, rundir, reports

    def launch(
        self, cfg: Config, pool: int, argv: list[str], cpus: str = "", owner: str | None = None
    ) -> tuple[list[str], dict[str, str], Path, Path]:
        """Command line and environment of one measured run of `argv` under `cfg`.

        LD_PRELOAD is given with `env` right before the workload so taskset
        and setpriv (which run first, as root) never load the engine or a peer.
        """
        env, rundir, reports = self.env_for(cfg, pool, owner)
        preload = env.pop("LD_PRELOAD", None)
        cmd = self.pin(cpus) if cpus else []
        if owner:
            cmd += ["setpriv", f"--reuid={owner}", f"--regid={owner}", "--clear-groups"]
        if preload:
            cmd += ["env", f"LD_PRELOAD={preload}"]
        return [*cmd, *cfg.wrapper, *argv], env, rundir, reports

    def grace(self, key: str) -> float:
        """Seconds a server gets to exit after SIGTERM; short once it has hung before."""
        if key in self.hung:
            return 3.0
        return 15.0 if self.quick else 20.0

    def pin(self, cpus: str) -> list[str]:
        """taskset prefix, or nothing on a one-CPU machine / without taskset."""
        if self.ncpu < 2 or not shutil.which("taskset"):
            return []
        return ["taskset", "-c", cpus]

    def shm_stats(self, path: Path) -> dict[str, int] | None:
        """ufence's statistics from a shared-memory file, or None."""
        if "shmstats" not in self.tools or not path.exists():
            return None
        r = proc.run([self.tools["shmstats"], str(path)], timeout=10)
        if r.rc != 0:
            return None
        try:
            data = json.loads(r.stdout)
        except json.JSONDecodeError:
            return None
        return {k: int(v) for k, v in data.items()}


def false_bug(stderr: str, reports: Path) -> str | None:
    """A ufence report in a bug-free workload: the text line or a JSON file."""
    for line in stderr.splitlines():
        if "BUG: UFENCE" in line:
            return line.strip()
    found = sorted(reports.glob("*.json")) if reports.exists() else []
    if found:
        return f"report file {found[0].name}"
    return None


def proc_cpu(pid: int) -> float | None:
    """utime + stime of a live process (all its threads), seconds."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2:].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def proc_memory(pid: int) -> dict[str, float]:
    """VmRSS / VmHWM of a live process, MiB."""
    out: dict[str, float] = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, val = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(val.split()[0]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return out
