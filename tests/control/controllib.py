"""Helpers of the control-plane tests: the CLI runner, a target under `ufence run`, waits."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
PROGS = HERE / "progs"


def ufence_argv(*args: str) -> list[str]:
    """argv of the ufence CLI under test (the same interpreter and package as pytest's)."""
    return [sys.executable, "-m", "ufence", *args]


class Cli:
    def __init__(self, run_dir: Path) -> None:
        self.env = dict(os.environ, UFENCE_RUN_DIR=str(run_dir))

    def __call__(self, *args: str, timeout: float = 60, env: dict[str, str] | None = None,
                 prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
        e = dict(self.env, **(env or {}))
        return subprocess.run([*prefix, *ufence_argv(*args)], capture_output=True, text=True, timeout=timeout, env=e)

    def ok(self, *args: str) -> str:
        r = self(*args)
        assert r.returncode == 0, f"ufence {' '.join(args)} failed ({r.returncode}): {r.stderr}"
        return r.stdout

    def stats(self, pid: int) -> dict[str, Any]:
        d = json.loads(self.ok("stats", str(pid), "--json"))
        return dict(d["counters"], enabled=int(d["enabled"]), pool_objects=d["pool_objects"] or 0) | {
            "mode": d["mode"]}

    def objects(self, pid: int, state: str = "all") -> list[dict[str, object]]:
        out = self.ok("objects", str(pid), "--json", "--state", state, "--no-symbolize")
        return [json.loads(line) for line in out.splitlines() if line]


class Target:
    """A program started with `ufence run`; the pid is the program's own (ufence execs it)."""

    def __init__(self, proc: subprocess.Popen[str], run_dir: Path, report_dir: Path, log: Path) -> None:
        self.proc = proc
        self.log = log
        self.pid = proc.pid
        self.run_dir = run_dir
        self.report_dir = report_dir
        self.shm = run_dir / f"{self.pid}.shm"

    def wait_ready(self, timeout: float = 10) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                pytest.fail(f"target exited early ({self.proc.returncode}): {self.stderr()[-2000:]}")
            if self.shm.exists() and self.shm.stat().st_size > 0:
                return
            time.sleep(0.02)
        pytest.skip(f"engine published no state file {self.shm} within {timeout}s (control plane not built yet?)")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stderr(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> tuple[int, str]:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        return self.proc.returncode, self.stderr()

    def reports(self) -> list[dict[str, object]]:
        return [json.loads(p.read_text()) for p in sorted(self.report_dir.glob(f"{self.pid}-*.json"))]


def wait_for(pred: Callable[[], bool], timeout: float = 5.0, step: float = 0.05) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(step)
    return pred()


def one_line_error(r: subprocess.CompletedProcess[str]) -> str:
    """Assert ``r`` failed with exactly one `ufence: ...` line on stderr; return it."""
    assert r.returncode != 0, f"expected failure, got 0: {r.stdout}"
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ufence: "), f"not a one-line error: {r.stderr!r}"
    assert "Traceback" not in r.stderr and "internal error" not in r.stderr, r.stderr
    return lines[0]


