"""Report details beyond the KUnit list: threads in the tracks, and bugs that fault inside libc."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from checks import no_engine_frames
from enginelib import GUARDS, RunFn


@pytest.mark.parametrize("guard", GUARDS)
def test_tracks_name_each_thread(prog: Callable[..., Path], run_ufence: RunFn, guard: str) -> None:
    """Allocated on one thread, freed on a second, used on a third: each track says which."""
    exe = prog("threads_uaf.c")
    run = run_ufence([exe], "--mode", "full", "--guard", guard)
    assert run.rc == 0 and "done" in run.proc.stdout, run.describe()
    pid, buf = run.value("pid"), run.value("buf")
    a, f, u = run.value("alloc_tid"), run.value("free_tid"), run.value("use_tid")
    assert len({pid, a, f, u}) == 4
    assert len(run.text) == 1 and len(run.json) == 1, run.describe()
    t, j = run.text[0], run.json[0]
    assert t.title.startswith("BUG: UFENCE: use-after-free read in using_thread+"), t.title
    assert t.access == f"Use-after-free read at {buf + 47:#x} (in ufence-#{j.object.index}):", t.access
    assert t.funcs()[0] == "using_thread"
    assert t.tracks["allocated"].tid == a and t.tracks["allocated"].frames[0].func == "allocator_thread"
    assert t.tracks["freed"].tid == f and t.tracks["freed"].frames[0].func == "freeing_thread"
    assert t.proc is not None and (int(t.proc["pid"]), int(t.proc["tid"])) == (pid, u)
    assert (j.pid, j.tid) == (pid, u)
    assert j.object is not None and j.object.alloc is not None and j.object.free is not None
    assert (j.object.alloc.tid, j.object.free.tid) == (a, f)
    assert j.object.free.timestamp >= j.object.alloc.timestamp  # type: ignore[operator]


@pytest.mark.parametrize("func", ["memcpy", "memset"])
def test_overflow_inside_libc_names_the_caller(prog: Callable[..., Path], run_ufence: RunFn, func: str) -> None:
    """memcpy/memset run past a guarded object: the access stack still shows who called them.

    The faulting pc is in a libc leaf routine with no frame of its own, so a
    plain frame-pointer walk skips its caller; the engine must recover it
    (the return address is at the stack pointer).
    """
    exe = prog("libc_oob.c")
    run = run_ufence([exe, func], "--mode", "full")
    assert run.rc == 0 and "done" in run.proc.stdout, run.describe()
    buf = run.value("buf")
    assert len(run.text) == 1 and len(run.json) == 1, run.describe()
    t, j = run.text[0], run.json[0]
    assert t.title.startswith("BUG: UFENCE: out-of-bounds write in "), t.title
    assert t.access == f"Out-of-bounds write at {buf + 64:#x} (64B right of ufence-#{j.object.index}):", t.access
    caller = "copy_too_much" if func == "memcpy" else "clear_too_much"
    funcs = t.funcs()
    no_engine_frames(funcs + [fr.module for fr in t.stack], "access stack", run)
    assert caller in funcs, f"{caller} missing from the access stack {funcs}\n{run.describe()}"
    i = funcs.index(caller)
    assert i <= 1 and funcs[i + 1] == "main", f"access stack {funcs}"
    assert t.stack[0].module.startswith("libc.so"), f"first frame {t.stack[0]} is not libc's"
    assert (j.bug.value, j.access, j.address, j.distance) == ("out-of-bounds", "write", buf + 64, 64)
