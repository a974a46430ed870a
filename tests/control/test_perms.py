"""Permissions (issue 3): another user can neither read nor change a process's state."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from controllib import Cli, Target, one_line_error, ufence_argv

import ufence

NOBODY = 65534


def _as_nobody(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("needs root and setpriv to act as another user")
    return subprocess.run(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *argv],
                          capture_output=True, text=True, timeout=60, env=env, cwd="/")


def test_other_user_cannot_read_or_change(cli: Cli, launch: Callable[..., Target], progs: dict[str, Path],
                                          run_dir: Path) -> None:
    t = launch(progs["loop"], "16", "2000", flags=("--mode", "off"))
    d = os.stat(run_dir)
    f = os.stat(t.shm)
    assert stat.S_IMODE(d.st_mode) == 0o700 and d.st_uid == os.geteuid()
    assert stat.S_IMODE(f.st_mode) == 0o600 and f.st_uid == os.geteuid()
    # the package as this interpreter imports it, by absolute path (the other user runs from /)
    pkg_parent = str(Path(ufence.__file__).resolve().parents[1])
    env = dict(cli.env, HOME="/", PYTHONPATH=pkg_parent)
    if _as_nobody(ufence_argv("--version"), env).returncode != 0:
        pytest.skip(f"user {NOBODY} cannot run this ufence ({pkg_parent} not readable)")
    # the OS itself refuses: not even the bytes
    r = _as_nobody(["cat", str(t.shm)], env)
    assert r.returncode != 0 and "Permission denied" in r.stderr
    # through ufence, pointed at the owner's directory: refused with one line, never a traceback
    for args in (("stats", str(t.pid)), ("objects", str(t.pid)), ("get", str(t.pid)),
                 ("set", str(t.pid), "sample_interval=-1")):
        one_line_error(_as_nobody(ufence_argv(*args), env))
    # and through nobody's own default directory: the process is not there
    env2 = {k: v for k, v in env.items() if k != "UFENCE_RUN_DIR"}
    one_line_error(_as_nobody(ufence_argv("set", str(t.pid), "sample_interval=-1"), env2))
    st = cli.stats(t.pid)
    assert st["mode"] == "off" and st["total_allocations"] == 0, "nothing changed"
    assert t.alive()
