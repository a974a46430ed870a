"""`ufence ps` on real engine processes, and --prune after kill -9."""

from __future__ import annotations

import json
import signal
from collections.abc import Callable
from pathlib import Path

from controllib import Cli, Target, wait_for


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
    rows = {r["pid"]: r for r in json.loads(cli.ok("ps", "--json"))}
    assert rows[b.pid]["alive"] is False and rows[a.pid]["alive"] is True
    out = json.loads(cli.ok("ps", "--prune", "--json"))
    assert out["pruned"] == [b.pid]
    assert not b.shm.exists() and a.shm.exists()


def test_clean_exit_removes_file(cli: Cli, launch: Callable[..., Target], progs: dict[str, Path]) -> None:
    t = launch(progs["loop"], "16", "1000")
    t.stop()  # SIGTERM: the default action kills without atexit; the engine must still not leave junk...
    # ...which it can only do for exits it sees; SIGTERM is like kill -9 for a program without a handler
    assert wait_for(lambda: True)
    rows = {r["pid"]: r for r in json.loads(cli.ok("ps", "--json"))}
    if t.pid in rows:
        assert rows[t.pid]["alive"] is False
