"""KFENCE's KUnit detection cases, in user space, under every guard mechanism, in full and sample mode.

Each case runs progs/kunit.c under ``ufence run`` and asserts the one report
it must produce, exactly: title function, access line with KFENCE's
distance, object line, allocation/free stacks naming the program's own
functions, process line, and the JSON report with raw frames that
symbolize offline to the same functions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from checks import Expect, check_engine_info, check_no_reports, check_one_report
from enginelib import GUARDS, MODES, Run, RunFn


@dataclass(frozen=True)
class Case:
    name: str
    expect: Callable[[int], Expect] | None  # buf -> expected report; None = no report
    quiet_before: str | None = None  # checkpoint marker: no report may come before it
    quiet_after: str | None = None  # ... or after it
    args: tuple[str, ...] = ()


def _oob(fn: str, access: str, off: int, side: str, size: int = 32) -> Callable[[int], Expect]:
    return lambda b: Expect("out-of-bounds", fn, b + off, access, b, size, side)


def _uaf(fn: str, access: str, off: int) -> Callable[[int], Expect]:
    return lambda b: Expect("use-after-free", fn, b + off, access, b, 32, freed_by=fn)


# Each program case once per guard mechanism and mode (KUnit's list plus its user-space twins).


def _corrupt(fn: str, off: int, size: int, dump: tuple[int | None, ...]) -> Callable[[int], Expect]:
    return lambda b: Expect("memory corruption", fn, b + off, None, b, size, corruption=dump)


CASES = [
    Case("oob_read_left", _oob("test_out_of_bounds_read_left", "read", -1, "left")),
    Case("oob_read_right", _oob("test_out_of_bounds_read_right", "read", 32, "right")),
    Case("oob_write_left", _oob("test_out_of_bounds_write_left", "write", -1, "left")),
    Case("oob_write_right", _oob("test_out_of_bounds_write_right", "write", 40, "right")),
    Case("uaf_read", _uaf("test_use_after_free_read", "read", 5)),
    Case("uaf_write", _uaf("test_use_after_free_write", "write", 7)),
    Case("double_free", lambda b: Expect("double free", "test_double_free", b, None, b, 32,
                                         freed_by="test_double_free")),
    Case("invalid_free", lambda b: Expect("invalid free", "test_invalid_addr_free", b + 1, None, b, 32),
         quiet_after="checkpoint: freeing the real pointer"),
    Case("corruption_left", _corrupt("test_corruption_left", 32, 32, (0x42,) + (None,) * 15),
         quiet_before="checkpoint: free"),
    Case("corruption_right", _corrupt("test_corruption_right", -1, 32, (0x42,)),
         quiet_before="checkpoint: free"),
    Case("corruption_both", _corrupt("test_corruption_both_sides", -1, 24, (0x42,)),
         quiet_before="checkpoint: free", args=("--align", "default")),
    Case("aligned_oob_read", _oob("test_aligned_oob_read", "read", 73 + 16, "right", 73),
         quiet_before="checkpoint: past alignment gap", args=("--align", "default")),
    Case("aligned_oob_write", _corrupt("test_aligned_oob_write", 73, 73, (0x42,) + (None,) * 6),
         quiet_before="checkpoint: free", args=("--align", "default")),
    # the original object is freed at whichever realloc moved it: size 32 (the grow), 96 (grown in
    # place, moved at the shrink) or 64 (grown and shrunk in place, freed by realloc(p, 0)); see verify
    Case("realloc", lambda b: Expect("use-after-free", "test_realloc", b, "read", b, 32, freed_by="test_realloc"),
         quiet_before="checkpoint: read original"),
    Case("realloc_moves", None),
    Case("calloc_zero", None, args=("--pool", "16")),
    Case("calloc_zero_page", None, args=("--pool", "16")),
    Case("invalid_access", lambda b: Expect("invalid", "test_invalid_access", b, "read")),
    Case("invalid_access_write", lambda b: Expect("invalid", "test_invalid_access_write", b, "write")),
    Case("invalid_access_unused", lambda b: Expect("invalid", "test_invalid_access_unused", b, "write")),
    Case("one_report", _oob("test_one_report_per_object", "read", 32, "right")),
    Case("uaf_nofault", None),
    Case("free_sized", _uaf("test_free_sized", "read", 3)),
    Case("free_aligned_sized", lambda b: Expect("use-after-free", "test_free_aligned_sized", b + 9, "write", b, 64,
                                                freed_by="test_free_aligned_sized",
                                                alloc_by=("test_free_aligned_sized", "main"))),
    Case("clean", None),
]


def mode_settings(mode: str) -> dict[str, str]:
    return {"full": {"sample_interval": "-1"}, "interval": {"sample_interval": "1", "sample_rate": "0"},
            "rate": {"sample_rate": "3"}}[mode]


def run_case(run_ufence: RunFn, exe: Path, case: Case, mode: str, guard: str, *extra: str) -> Run:
    run = run_ufence([exe, case.name], *MODES[mode], "--guard", guard, *case.args, *extra)
    check_engine_info(run, None if guard == "auto" else guard, **mode_settings(mode))
    return run


def verify(run: Run, exe: Path, case: Case) -> None:
    assert run.rc == 0, f"program did not continue after the report\n{run.describe()}"
    assert "done" in run.proc.stdout.splitlines(), run.describe()
    if case.expect is None:
        check_no_reports(run)
        return
    base = run.value("buf") if "buf" in run.info else run.value("addr")
    expect = case.expect(base)
    if case.name == "realloc" and base % 4096 == 0 and run.json and run.json[0].object \
            and run.json[0].object.size in (64, 96):
        expect = replace(expect, obj_size=run.json[0].object.size)  # grown in place (left-placed only)
    check_one_report(run, exe, expect)
    if case.quiet_before:
        assert "BUG: UFENCE" not in run.stderr_before(case.quiet_before), f"early report\n{run.describe()}"
    if case.quiet_after:
        idx = run.proc.stderr.find(case.quiet_after)
        assert idx >= 0 and "BUG: UFENCE" not in run.proc.stderr[idx:], f"late report\n{run.describe()}"


@pytest.mark.parametrize("guard", GUARDS)
@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_kunit_case(prog: Callable[..., Path], run_ufence: RunFn, case: Case, mode: str, guard: str) -> None:
    exe = prog("kunit.c")
    verify(run_case(run_ufence, exe, case, mode, guard), exe, case)


@pytest.mark.parametrize("guard", GUARDS)
def test_precise_align_odd_size_faults_at_once(prog: Callable[..., Path], run_ufence: RunFn, guard: str) -> None:
    """align=precise: a right-placed 73-byte object ends at the guard page, so buf[73] faults."""
    exe = prog("kunit.c")
    case = Case("oob_read_right_odd", _oob("test_out_of_bounds_read_right_odd", "read", 73, "right", 73))
    run = run_case(run_ufence, exe, case, "full", guard, "--align", "precise")
    check_engine_info(run, guard, align="precise")
    verify(run, exe, case)


@pytest.mark.parametrize("guard", GUARDS)
def test_default_align_keeps_16_byte_alignment(prog: Callable[..., Path], run_ufence: RunFn, guard: str) -> None:
    """align=default: the right-placed 73-byte object is 16-byte aligned, leaving a 7-byte gap."""
    exe = prog("kunit.c")
    run = run_case(run_ufence, exe, CASES[[c.name for c in CASES].index("aligned_oob_read")], "full", guard)
    buf = run.value("buf")
    assert buf % 16 == 0 and (buf + 73 + 15) // 16 * 16 % 4096 == 0, hex(buf)


@pytest.mark.parametrize("guard", GUARDS)
@pytest.mark.parametrize("case", ["oob_write_right", "uaf_read", "invalid_access", "double_free", "corruption_left"])
def test_on_bug_abort(prog: Callable[..., Path], run_ufence: RunFn, case: str, guard: str) -> None:
    """--on-bug=abort: the report is written, then the program dies with the original signal.

    Faulting accesses die by SIGSEGV; bad frees have no original signal, so
    the engine raises SIGABRT (not a normal exit).
    """
    exe = prog("kunit.c")
    run = run_ufence([exe, case], "--mode", "full", "--guard", guard, "--on-bug", "abort")
    check_engine_info(run, guard, fault="abort")
    if case in ("double_free", "corruption_left"):  # no original signal: the engine aborts
        assert run.rc == -6, f"want death by SIGABRT\n{run.describe()}"
    else:
        assert run.rc == -11, f"want death by SIGSEGV\n{run.describe()}"
    assert "done" not in run.proc.stdout.splitlines()
    assert len(run.text) == 1 and len(run.json) == 1, run.describe()
    assert run.text[0].title.startswith("BUG: UFENCE: ")


def test_guard_auto_prefers_page_recycling(prog: Callable[..., Path], run_ufence: RunFn) -> None:
    """--guard auto picks uffd (guard regions + UFFDIO_MOVE) where userfaultfd may be used and the
    kernel has guard regions (6.13+), else MADV_GUARD_INSTALL, else mprotect."""
    import os

    major, minor = (int(x) for x in os.uname().release.split(".")[:2])
    exe = prog("kunit.c")
    run = run_case(run_ufence, exe, CASES[[c.name for c in CASES].index("clean")], "full", "auto")
    verify(run, exe, CASES[[c.name for c in CASES].index("clean")])
    # unprivileged_userfaultfd=0 still allows user-mode-only descriptors, which is all the engine asks
    want = 3 if (major, minor) >= (6, 13) and Path("/proc/sys/vm/unprivileged_userfaultfd").exists() else (
        1 if (major, minor) >= (6, 13) else 2)
    assert run.value("guard") == want, run.info
