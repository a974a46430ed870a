"""Filters (issue 3): size classes and caller modules select exactly what they should, live too."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from controllib import Cli, Target, wait_for

SIZES = {8, 16, 24, 100, 200, 300, 1000}


def _guarded(cli: Cli, pid: int) -> list[dict[str, Any]]:
    return cli.objects(pid, "allocated")


def _caller(o: dict[str, Any]) -> str:
    frames = o["alloc"]["frames"]
    return Path(frames[0].get("module", "?")).name if frames else "?"


def _settle(cli: Cli, pid: int) -> None:
    """Wait until the ring of live objects has turned over since the last change."""
    a = cli.stats(pid)["total_frees"] + cli.stats(pid)["skipped_filtered"]
    wait_for(lambda: cli.stats(pid)["skipped_filtered"] + cli.stats(pid)["total_frees"] > a + 200, 5)
    time.sleep(0.2)


def test_callers_and_size_classes(cli: Cli, launch: Callable[..., Target], progs: dict[str, Path]) -> None:
    t = launch(progs["twolibs"], "1000", flags=("--mode", "full", "--set", "callers=libfoo.so"))
    pid = t.pid
    assert wait_for(lambda: len(_guarded(cli, pid)) >= 7, 5)
    objs = _guarded(cli, pid)
    assert {_caller(o) for o in objs} == {"libfoo.so"}, "callers=libfoo.so guards only libfoo's allocations"
    assert {o["size"] for o in objs} == SIZES, "every size allocated by libfoo is guarded"
    assert cli.stats(pid)["skipped_filtered"] > 0

    # live: all callers, only the 16 and 64..256 size classes
    cli.ok("set", str(pid), "callers=", "size_classes=16,64-256")
    # the ring is 42 objects: after a few rounds only newly filtered objects remain guarded and allocated
    _settle(cli, pid)
    objs = _guarded(cli, pid)
    assert {o["size"] for o in objs} == {16, 100, 200}, "16 -> malloc-16, 100 -> malloc-128, 200 -> malloc-256"
    assert {o["cache"] for o in objs} == {"malloc-16", "malloc-128", "malloc-256"}
    assert {_caller(o) for o in objs} == {"libfoo.so", "libbar.so", "control-twolibs"}

    # both together: libbar's objects of the selected classes
    cli.ok("set", str(pid), "callers=libbar.so")
    _settle(cli, pid)
    objs = _guarded(cli, pid)
    assert {(_caller(o), o["size"]) for o in objs} == {("libbar.so", s) for s in (16, 100, 200)}
    assert t.alive()

