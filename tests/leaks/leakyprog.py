"""The leaky test program under the real engine: launch it, wait until it is ready, stop it."""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
LEAKY_C = HERE / "leaky.c"


@dataclass
class Running:
    pid: int
    proc: subprocess.Popen[bytes]
    ready_text: str


def launch_leaky(binary: Path, run_args: list[str], prog_args: list[str], ready: Path,
            timeout: float = 120) -> Running:
    # `ufence run` execs the program, so the child's pid is the program's pid
    argv = [sys.executable, "-m", "ufence", "run", *run_args, "--", str(binary), *prog_args]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + timeout
    while not ready.exists():
        if proc.poll() is not None:
            err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            raise AssertionError(f"leaky exited early ({proc.returncode}): {err}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("leaky never became ready")
        time.sleep(0.05)
    return Running(proc.pid, proc, ready.read_text())


def stop(r: Running) -> None:
    if r.proc.poll() is None:
        r.proc.kill()  # our own child, by its pid
    r.proc.wait(timeout=30)
    if r.proc.stderr:
        r.proc.stderr.close()
