"""Fixtures of the read-path tests: bench/readpath/prog.c under `ufence run --mode full`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from readpathlib import Held

PROG = Path(__file__).resolve().parents[2] / "bench" / "readpath" / "prog.c"


@pytest.fixture
def run_dir(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="ufence-readpath-"))
    os.chmod(d, 0o700)
    monkeypatch.setenv("UFENCE_RUN_DIR", str(d))
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def hold(cc: Callable[..., Path], run_dir: Path, tmp_path: Path) -> Iterator[Callable[..., Held]]:
    """``hold(n, free_every=0, churn=False, pool=...)`` starts prog.c and waits until it holds its objects."""
    exe = cc(PROG, "-O1", "-g", "-fno-omit-frame-pointer", name="readpath-prog")
    started: list[Held] = []

    def start(n: int, free_every: int = 0, churn: bool = False, pool: int | None = None) -> Held:
        cmd = [sys.executable, "-m", "ufence", "run", "--mode", "full", "--pool", str(pool or n + n // 4 + 64),
               "--report-dir", str(tmp_path / "reports"), "--",
               str(exe), str(n), str(free_every), "churn" if churn else "hold"]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                env=dict(os.environ, UFENCE_RUN_DIR=str(run_dir)))
        h = Held(proc, n, run_dir)
        started.append(h)
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != "ready":
            pytest.fail(f"readpath prog for {n} objects did not start ({proc.poll()})")
        return h

    yield start
    for h in started:
        h.proc.terminate()
        try:
            h.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            h.proc.kill()
            h.proc.wait()
