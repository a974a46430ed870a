"""Stacks through code built without frame pointers, as distributions build libraries (engine/src/unwind.c).

The frame-pointer walk alone lost every frameless function's caller: programs
built -O2 got one frame, and in C++ "allocated by" jumped from operator new
(libstdc++) over the function that called it. Each stack here must name
every level, in order, and keep going through the C library to _start.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from enginelib import Run, RunFn

from ufence.model import BugType, Frame

Prog = Callable[..., Path]
FRAMELESS = ("-O2", "-fomit-frame-pointer")
HERE = Path(__file__).resolve().parent


def rustc() -> str | None:
    """rustc on PATH, or rustup's default place (CI's PATH may not have ~/.cargo/bin)."""
    return shutil.which("rustc") or next(
        (p for p in (os.path.expanduser("~/.cargo/bin/rustc"), "/root/.cargo/bin/rustc") if os.access(p, os.X_OK)),
        None)


def funcs(frames: list[Frame]) -> list[str]:
    return [f.function or "?" for f in frames]


def one_report(run: Run) -> None:
    assert run.rc == 0 and "done" in run.proc.stdout.splitlines(), run.describe()
    assert len(run.json) == 1 and len(run.text) == 1, run.describe()


def test_frameless_program_full_stacks(prog: Prog, run_ufence: RunFn) -> None:
    exe = prog("frameless.c", *FRAMELESS, out="frameless")
    run = run_ufence([exe], "--mode", "full")
    one_report(run)
    r = run.json[0]
    d = run.describe()
    assert r.bug is BugType.USE_AFTER_FREE and r.access == "read" and r.address == run.value("buf"), d
    assert funcs(r.stack)[:3] == ["level2_read", "level1_read", "main"], d
    assert r.object is not None and r.object.alloc is not None and r.object.free is not None
    alloc = funcs(r.object.alloc.frames)
    assert alloc[:4] == ["level3_alloc", "level2_alloc", "level1_alloc", "main"], d
    assert funcs(r.object.free.frames)[:3] == ["level2_free", "level1_free", "main"], d
    # on through the (frameless) C library to the program's entry point
    assert "__libc_start_main" in alloc and alloc[-1] == "_start", alloc
    # the text report says the same
    t = run.text[0]
    assert [f.func for f in t.tracks["allocated"].frames][:4] == alloc[:4], d


def test_caller_of_operator_new_is_kept(prog: Prog, run_ufence: RunFn) -> None:
    """`new` in libstdc++ has no frame pointer: the function that called it must follow it."""
    exe = prog("cxx_new.cc", "-O2", out="cxx_new")
    run = run_ufence([exe], "--mode", "full")
    one_report(run)
    r = run.json[0]
    d = run.describe()
    # an 8-byte write past a 32-byte Order: the guard page (right-placed) or the canary (left-placed)
    assert r.bug in (BugType.OUT_OF_BOUNDS, BugType.MEMORY_CORRUPTION), d
    assert r.object is not None and r.object.alloc is not None and r.object.start == run.value("buf")
    alloc = r.object.alloc.frames
    assert alloc[0].module is not None and "libstdc++" in alloc[0].module, d
    assert funcs(alloc)[1:3] == ["_Z10make_orderl", "main"], d
    # the text report names them as a C++ programmer writes them (the JSON keeps the symbols)
    text = [f.func for f in run.text[0].tracks["allocated"].frames]
    assert text[:3] == ["operator new(unsigned long)", "make_order(long)", "main"], run.proc.stderr


def test_unwind_fp_walks_frame_pointers_only(prog: Prog, run_ufence: RunFn) -> None:
    """unwind=fp: allocation and free stacks by frame pointers alone (the frameless callers are lost, as the
    setting says); the bug site's own stack is still walked by call-frame information."""
    exe = prog("frameless.c", *FRAMELESS, out="frameless")
    run = run_ufence([exe], "--mode", "full", "--set", "unwind=fp")
    one_report(run)
    r = run.json[0]
    assert r.object is not None and r.object.alloc is not None
    alloc = funcs(r.object.alloc.frames)
    assert alloc[0] == "level3_alloc" and "level2_alloc" not in alloc, alloc
    assert funcs(r.stack)[:3] == ["level2_read", "level1_read", "main"], run.describe()


def test_rust_release_build_full_stacks(build_dir: Path, run_ufence: RunFn) -> None:
    """A Rust release build (no frame pointers): Box's allocation and the stale read, named all the way up."""
    rc = rustc()
    if rc is None:
        pytest.skip("rustc not installed")
    exe = build_dir / "rust_uaf"
    subprocess.run([rc, "-C", "opt-level=2", "-C", "debuginfo=1", "-o", str(exe), str(HERE / "progs" / "rust_uaf.rs")],
                   check=True, capture_output=True, text=True, timeout=300)
    run = run_ufence([exe], "--mode", "full")
    one_report(run)
    r = run.json[0]
    d = run.describe()
    assert r.bug is BugType.USE_AFTER_FREE and r.address == run.value("buf"), d
    access = funcs(r.stack)
    assert "rust_uaf6use_it" in access[0] and "rust_uaf4main" in access[1], access
    assert r.object is not None and r.object.alloc is not None and r.object.free is not None
    alloc = funcs(r.object.alloc.frames)
    at = next(i for i, f in enumerate(alloc) if "rust_uaf13stale_pointer" in f)
    assert at <= 2 and "rust_uaf4main" in alloc[at + 1], alloc
    assert any("lang_start" in f for f in alloc) and alloc[-1] == "_start", alloc
    assert any("rust_uaf4main" in f for f in funcs(r.object.free.frames)), d
    if alloc[at].startswith("_ZN"):        # the legacy scheme (stable rustc's default): demangled in the text
        text = [f.func for f in run.text[0].tracks["allocated"].frames]
        assert "rust_uaf::stale_pointer" in text and "rust_uaf::main" in text, run.proc.stderr
    # the standard library's frames are v0-mangled: demangled in the text too
    if any(f.startswith("_R") for f in alloc):
        text = [f.func for f in run.text[0].tracks["allocated"].frames]
        assert not any(f.startswith("_R") for f in text) and any("::" in f for f in text), run.proc.stderr


def test_stacks_the_engine_does_not_know(prog: Prog, run_ufence: RunFn) -> None:
    """A coroutine on a heap stack and a handler on a sigaltstack: walks by checked reads, stacks from their own
    frames, nothing read past what is mapped (both with and without frame pointers)."""
    for flags, name in (((), "coro"), (FRAMELESS, "coro_frameless")):
        exe = prog("coro.c", *flags, out=name)
        run = run_ufence([exe], "--mode", "full")
        one_report(run)
        r = run.json[0]
        d = run.describe()
        assert r.bug is BugType.USE_AFTER_FREE and r.address == run.value("buf"), d
        assert funcs(r.stack)[:2] == ["coro_read", "coro_entry"], d
        assert r.object is not None and r.object.alloc is not None and r.object.free is not None
        assert funcs(r.object.alloc.frames)[:2] == ["coro_alloc", "coro_entry"], d
        assert funcs(r.object.free.frames)[:1] == ["coro_entry"], d
        assert run.value("handler_guarded") == 64 * 10, run.info


@pytest.mark.parametrize("unwind", ["cfi", "fp"])
def test_frameless_dlopened_library(prog: Prog, run_ufence: RunFn, unwind: str) -> None:
    """A library built without frame pointers, dlopen'ed and dlclose'd twice before the bug: its
    .eh_frame is read with the checks an unloadable module needs, and its functions are named in
    order (with unwind=fp they are lost, as that setting says, which shows the walk is the CFI's)."""
    lib = prog("dlframeless.c", "-shared", "-fPIC", *FRAMELESS, out="libdlframeless.so")
    exe = prog("dlwalk.c")
    run = run_ufence([exe, lib], "--mode", "full", "--set", f"unwind={unwind}")
    one_report(run)
    r = run.json[0]
    d = run.describe()
    assert r.bug is BugType.USE_AFTER_FREE and r.address == run.value("buf") + 3, d
    assert r.object is not None and r.object.alloc is not None
    alloc = funcs(r.object.alloc.frames)
    if unwind == "cfi":
        assert alloc[:3] == ["dl_inner", "dl_outer", "main"], d
        assert r.object.alloc.frames[1].module is not None and "libdlframeless" in r.object.alloc.frames[1].module
    else:
        assert alloc[0] == "dl_inner" and "dl_outer" not in alloc, alloc
    # the module table was rebuilt for the unloads (the control thread's look in each 150 ms pause) and,
    # under cfi, for each load too (the allocation path's refresh for an address in no known module)
    assert run.value("rebuilt_after") - run.value("rebuilt_before") >= (3 if unwind == "cfi" else 2), d


def test_jit_code_walked_by_frame_pointer(prog: Prog, run_ufence: RunFn) -> None:
    """Allocations from JIT code (an executable anonymous mapping: no module, no CFI): the stack goes from
    the JIT frame to main by its frame pointer."""
    exe = prog("jitalloc.c", "-O1", "-fno-omit-frame-pointer", out="jitalloc")
    run = run_ufence([exe], "--mode", "full")
    one_report(run)
    r = run.json[0]
    d = run.describe()
    assert r.bug is BugType.USE_AFTER_FREE and r.address == run.value("buf") + 1, d
    assert r.object is not None and r.object.alloc is not None
    frames = r.object.alloc.frames
    jit = run.value("jit")
    assert frames[0].pc is not None and jit <= frames[0].pc < jit + 32 and frames[0].module is None, d
    assert funcs(frames)[1] == "main", d
    # 0.3 s of allocations from code of no module, past the control thread's 100 ms looks: nothing was
    # loaded, so nothing is rebuilt (a rebuild would make every JIT address's rule be decoded again)
    assert run.value("rebuilt_in_loop") == 0, d
