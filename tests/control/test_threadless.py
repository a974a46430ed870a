"""Off mode runs no control thread; `ufence set` reaches the engine through its next allocation.

A thread-less engine (what off costs nothing for) is woken through the hot page of its state
file: the change is queued until the program allocates, then applied by that allocation, and
the control thread starts only with a mode that needs it. After fork, each process has its own
hot page: a change to the child never reaches the parent.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from controllib import PROGS, Cli, Target, wait_for


def threads(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def forked_child(t: Target, tmp_path: Path) -> int:
    """The pid of gated.c's fork child, once both processes are ready and the child has its state file."""

    def child() -> int:
        ready = [int(p.name.split("-")[1]) for p in tmp_path.glob("ready-*")]
        others = [p for p in ready if p != t.pid]
        return others[0] if others and (t.run_dir / f"{others[0]}.shm").exists() else 0

    assert wait_for(lambda: bool(child()) and (tmp_path / f"ready-{t.pid}").exists())
    return child()


@pytest.fixture(scope="module")
def gated(cc: Callable[..., Path]) -> Path:
    return cc(PROGS / "gated.c", name="control-gated")


def test_queued_until_next_allocation(launch: Callable[..., Target], cli: Cli, gated: Path, tmp_path: Path) -> None:
    t = launch(gated, str(tmp_path), flags=("--mode", "off"))
    assert wait_for(lambda: (tmp_path / f"ready-{t.pid}").exists())
    assert threads(t.pid) == 1, "engine in off mode started a thread"
    r = cli("set", str(t.pid), "sample_interval=-1")
    assert r.returncode == 0, r.stderr
    assert "queued" in r.stderr and "next allocation" in r.stderr
    assert cli.ok("get", str(t.pid), "sample_interval").strip() == "0"
    assert threads(t.pid) == 1
    (tmp_path / f"go-{t.pid}").touch()
    assert wait_for(lambda: (tmp_path / f"done-{t.pid}").exists())
    assert cli.ok("get", str(t.pid), "sample_interval").strip() == "-1"
    st = cli.stats(t.pid)
    assert st["mode"] == "full" and st["total_allocations"] > 0
    assert threads(t.pid) == 2, "full mode runs the control thread"
    # with the thread running, a change is acknowledged at once
    r = cli("set", str(t.pid), "sample_interval=0")
    assert r.returncode == 0 and "queued" not in r.stderr, r.stderr
    (tmp_path / "stop").touch()


def test_fork_child_has_its_own_hot_page(launch: Callable[..., Target], cli: Cli, gated: Path,
                                          tmp_path: Path) -> None:
    t = launch(gated, str(tmp_path), "fork", flags=("--mode", "off"))
    c = forked_child(t, tmp_path)
    r = cli("set", str(c), "sample_interval=-1")
    assert r.returncode == 0, r.stderr
    (tmp_path / f"go-{c}").touch()
    assert wait_for(lambda: (tmp_path / f"done-{c}").exists())
    assert cli.stats(c)["total_allocations"] >= 2000
    # the parent saw neither the request nor the child's gate
    assert cli.ok("get", str(t.pid), "sample_interval").strip() == "0"
    (tmp_path / f"go-{t.pid}").touch()
    assert wait_for(lambda: (tmp_path / f"done-{t.pid}").exists())
    assert cli.stats(t.pid)["total_allocations"] == 0
    assert threads(t.pid) == 1
    (tmp_path / "stop").touch()


def test_fork_child_starts_its_thread_at_its_first_allocation(launch: Callable[..., Target], cli: Cli,
                                                              gated: Path, tmp_path: Path) -> None:
    """A child of a sampling process gets its control thread only once it allocates (a fork-heavy
    program's children that never allocate stay single-threaded, so glibc keeps its fast paths)."""
    t = launch(gated, str(tmp_path), "fork", flags=("--sample-interval", "10"))
    c = forked_child(t, tmp_path)
    assert threads(t.pid) == 2, "interval sampling runs the control thread"
    assert threads(c) == 1, "the child started a thread before its first allocation"
    (tmp_path / f"go-{c}").touch()
    assert wait_for(lambda: (tmp_path / f"done-{c}").exists())
    assert wait_for(lambda: threads(c) == 2), "the child's first allocation did not start its thread"
    # the child's own thread answers at once
    r = cli("set", str(c), "sample_interval=1")
    assert r.returncode == 0 and "queued" not in r.stderr, r.stderr
    (tmp_path / f"go-{t.pid}").touch()
    assert wait_for(lambda: (tmp_path / f"done-{t.pid}").exists())
