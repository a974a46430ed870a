"""Fixtures for the control-plane tests: run dirs, programs under `ufence run`, CLI calls."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from controllib import PROGS, Cli, Target, ufence_argv


@pytest.fixture
def run_dir() -> Iterator[Path]:
    """A private run directory under /tmp (world-traversable parent, so other users reach the 0700 check)."""
    d = Path(tempfile.mkdtemp(prefix="ufence-control-"))
    os.chmod(d, 0o700)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def cli(run_dir: Path) -> Cli:
    return Cli(run_dir)


@pytest.fixture
def launch(run_dir: Path, tmp_path: Path) -> Iterator[Callable[..., Target]]:
    started: list[Target] = []

    def start(prog: Path, *prog_args: str, flags: tuple[str, ...] = (), env: dict[str, str] | None = None) -> Target:
        rep = tmp_path / "reports"
        log = tmp_path / f"target-{len(started)}.stderr"
        e = dict(os.environ, UFENCE_RUN_DIR=str(run_dir), **(env or {}))
        with open(log, "w") as err:  # a file, not a pipe: a chatty target never blocks on a full pipe
            proc = subprocess.Popen(
                ufence_argv("run", "--report-dir", str(rep), *flags, "--", str(prog), *prog_args),
                stdout=subprocess.DEVNULL, stderr=err, text=True, env=e)
        t = Target(proc, run_dir, rep, log)
        started.append(t)
        t.wait_ready()
        return t

    yield start
    # gated.c's children wait for DIR/stop (DIR = tmp_path): a failed test must not leave them running
    (tmp_path / "stop").touch()
    for t in started:
        t.stop()


@pytest.fixture(scope="session")
def progs(cc: Callable[..., Path], build_dir: Path) -> dict[str, Path]:
    """The C programs of these tests, built once: loop, twolibs (+ libfoo.so, libbar.so)."""
    out = {"loop": cc(PROGS / "loop.c", name="control-loop")}
    for lib in ("foo", "bar"):
        out[f"lib{lib}"] = cc(PROGS / f"lib{lib}.c", "-shared", "-fPIC", name=f"lib{lib}.so")
    out["twolibs"] = cc(PROGS / "twolibs.c", f"-L{build_dir}", "-lfoo", "-lbar", f"-Wl,-rpath,{build_dir}",
                        name="control-twolibs")
    return out
