"""Bounded child processes: every run has a timeout and dies with its group.

Servers and clients are started in their own process group so a timeout or an
error kills the whole tree (hackbench forks 160 tasks; mariadbd has threads).
Every live group is remembered and killed at interpreter exit, so a failing
benchmark never leaves a server behind.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

_LIVE: set[int] = set()


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


@atexit.register
def kill_all() -> None:
    """Kill every process group this harness started and still tracks."""
    for pgid in list(_LIVE):
        _kill_group(pgid)
        _LIVE.discard(pgid)


def _on_term(signum: int, _frame: object) -> None:
    kill_all()
    raise SystemExit(128 + signum)


signal.signal(signal.SIGTERM, _on_term)


@dataclass
class Result:
    """What a bounded run did: exit status, output, wall time."""

    rc: int | None  # None = killed by the timeout
    stdout: str
    stderr: str
    seconds: float

    @property
    def timed_out(self) -> bool:
        return self.rc is None

    @property
    def signal(self) -> int | None:
        return -self.rc if self.rc is not None and self.rc < 0 else None


def run(
    argv: list[str],
    env: dict[str, str] | None = None,
    timeout: float = 60.0,
    cwd: Path | None = None,
) -> Result:
    """Run argv to completion or kill its process group after `timeout` s."""
    t0 = time.monotonic()
    p = subprocess.Popen(
        argv,
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        errors="replace",
        start_new_session=True,
    )
    _LIVE.add(p.pid)
    try:
        out, err = p.communicate(timeout=timeout)
        rc: int | None = p.returncode
    except subprocess.TimeoutExpired:
        _kill_group(p.pid)
        out, err = p.communicate()
        rc = None
    finally:
        _kill_group(p.pid)  # leftovers (hackbench children, daemons)
        _LIVE.discard(p.pid)
    return Result(rc, out, err, time.monotonic() - t0)


class Server:
    """A long-running child (a database) with its stderr in a log file."""

    def __init__(self, argv: list[str], env: dict[str, str], log: Path, cwd: Path | None = None):
        self.log = log
        self.killed = False  # needed SIGKILL: did not exit after SIGTERM
        self._fh = open(log, "wb")  # noqa: SIM115 - lives as long as the server
        self.proc = subprocess.Popen(
            argv,
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=self._fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        _LIVE.add(self.proc.pid)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, grace: float = 10.0) -> int | None:
        """SIGTERM, wait up to `grace` s, then SIGKILL; return the exit status."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.killed = True
                _kill_group(self.proc.pid)
                self.proc.wait()
        _kill_group(self.proc.pid)
        _LIVE.discard(self.proc.pid)
        self._fh.close()
        return self.proc.returncode

    def output(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""


def wait_for(check: object, timeout: float, what: str, server: Server | None = None) -> None:
    """Poll `check()` every 0.1 s until true; fail if the server died first."""
    from harness.errors import BenchError

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(check) and check():
            return
        if server is not None and not server.alive():
            raise BenchError(f"{what}: server exited with status {server.proc.returncode}")
        time.sleep(0.1)
    raise BenchError(f"{what}: not ready after {timeout:.0f} s")
