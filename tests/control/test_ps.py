"""`ufence ps` on real engine processes, and --prune after kill -9."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from controllib import Cli, Target, one_line_error, ufence_argv


def test_ps_lists_and_prunes_killed(cli: Cli, launch: Callable[..., Target], progs: dict[str, Path]) -> None:
    a = launch(progs["loop"], "16", "1000", flags=("--mode", "full"))
    b = launch(progs["loop"], "16", "1000", flags=("--mode", "off"))
    rows = {r["pid"]: r for r in json.loads(cli.ok("ps", "--json"))}
    assert rows[a.pid]["mode"] == "full" and rows[b.pid]["mode"] == "off"
    assert rows[a.pid]["alive"] and "control-loop" in rows[a.pid]["comm"] + rows[a.pid]["cmdline"]
    text = cli.ok("ps")
    assert str(a.pid) in text and str(b.pid) in text

    b.proc.send_signal(signal.SIGKILL)
    b.proc.wait()
    assert b.shm.exists(), "a killed process's state stays readable until pruned"
    st = cli.stats(b.pid)  # post-mortem read works
    assert st["mode"] == "off"
    assert "has exited" in one_line_error(cli("set", str(b.pid), "sample_interval=-1"))
    rows = {r["pid"]: r for r in json.loads(cli.ok("ps", "--json"))}
    assert rows[b.pid]["alive"] is False and rows[a.pid]["alive"] is True
    out = json.loads(cli.ok("ps", "--prune", "--json"))
    assert out["pruned"] == [b.pid]
    assert not b.shm.exists() and a.shm.exists()


def test_clean_exit_removes_file(run_dir: Path) -> None:
    p = subprocess.run(ufence_argv("run", "--", "sh", "-c", "test -e $UFENCE_RUN_DIR/$$.shm && echo $$"),
                       capture_output=True, text=True, timeout=60, env=dict(os.environ, UFENCE_RUN_DIR=str(run_dir)))
    pid = int(p.stdout.strip())  # the file existed while the program ran...
    assert not (run_dir / f"{pid}.shm").exists()  # ...and is gone after a normal exit


def test_watch_ends_when_target_exits(cli: Cli, launch: Callable[..., Target], progs: dict[str, Path]) -> None:
    t = launch(progs["loop"], "16", "1000")
    w = subprocess.Popen(ufence_argv("stats", str(t.pid), "--watch", "0.2"), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=cli.env)
    time.sleep(1.0)
    t.proc.send_signal(signal.SIGKILL)
    out, err = w.communicate(timeout=10)
    assert w.returncode == 1 and err.strip().splitlines()[-1] == f"ufence: process {t.pid} exited"
    assert out.count("enabled: 1") >= 2 and "# " in out
