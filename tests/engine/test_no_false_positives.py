"""No false positives: real correct programs run to completion under --mode full with zero reports.

Each program also checks its own results (contents, alignment, zeroing), so
an engine that corrupts memory fails even if it stays silent.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from checks import Expect, check_engine_info, check_no_reports, check_one_report
from enginelib import GUARDS, Run, RunFn

HERE = Path(__file__).resolve().parent

Prog = Callable[..., Path]


def clean(run: Run) -> None:
    assert run.rc == 0, run.describe()
    assert "done" in run.proc.stdout.splitlines(), run.describe()
    check_no_reports(run)


@pytest.mark.slow
@pytest.mark.parametrize("guard", GUARDS)
@pytest.mark.parametrize("pool", ["512", "4095"])
def test_threaded_stress(prog: Prog, run_ufence: RunFn, guard: str, pool: str) -> None:
    """8 threads, every allocation function, cross-thread frees; a small pool also exercises reuse and fallback."""
    exe = prog("stress.c")
    run = run_ufence([exe, "15000"], "--mode", "full", "--guard", guard, "--pool", pool, timeout=120)
    clean(run)
    check_engine_info(run, guard, sample_interval="-1", num_objects=pool)
    assert run.value("guarded") > 1000, f"too few guarded allocations: {run.info}"
    assert run.value("total") > run.value("guarded"), "large allocations must go to the next allocator"


@pytest.mark.parametrize("guard", GUARDS)
def test_fork(prog: Prog, run_ufence: RunFn, guard: str) -> None:
    exe = prog("forker.c")
    run = run_ufence([exe, "clean"], "--mode", "full", "--guard", guard)
    clean(run)
    assert run.value("children_ok") == 8, run.describe()


def test_fork_child_bug_reported_with_child_pid(prog: Prog, run_ufence: RunFn) -> None:
    """A bug in a forked child is reported once per child, with the child's pid; the parent is unaffected."""
    exe = prog("forker.c")
    run = run_ufence([exe, "child_bug"], "--mode", "full")
    assert run.rc == 0 and run.value("children_ok") == 8, run.describe()
    children = {}
    for ln in run.proc.stdout.splitlines():
        if ln.startswith("child pid="):
            f = dict(t.split("=") for t in ln.split()[1:])
            children[int(f["pid"])] = int(f["buf"], 0)
    assert len(children) == 8
    assert sorted(r.pid for r in run.json) == sorted(children), run.describe()
    for r in run.json:
        assert r.bug.value == "out-of-bounds" and r.access == "read"
        assert r.address == children[r.pid] + 32 and r.distance == 32 and r.side == "right"
        assert r.function is not None and r.function.startswith("child_oob")
    assert len(run.text) == 8
    parent = run.value("pid")
    assert all(t.proc is not None and int(t.proc["pid"]) != parent for t in run.text)


def test_fork_child_reports_a_site_its_parent_reported(prog: Prog, run_ufence: RunFn) -> None:
    """dedup_reports is per process: the parent's report of a bug site does not silence its children's."""
    exe = prog("forker.c")
    run = run_ufence([exe, "parent_first"], "--mode", "full")
    assert run.rc == 0 and run.value("children_ok") == 8, run.describe()
    parent = run.value("pid")
    pids = [r.pid for r in run.json]
    assert pids.count(parent) == 1 and len(set(pids)) == 9 and len(pids) == 9, run.describe()
    assert {r.function.split("+")[0] for r in run.json if r.function} == {"child_oob"}, run.describe()


@pytest.mark.slow
def test_cxx(prog: Prog, run_ufence: RunFn) -> None:
    exe = prog("cxx_churn.cc", "-std=c++17")
    clean(run_ufence([exe], "--mode", "full"))


def test_cxx_small_pool_mprotect(prog: Prog, run_ufence: RunFn) -> None:
    exe = prog("cxx_churn.cc", "-std=c++17")
    clean(run_ufence([exe], "--mode", "full", "--pool", "64", "--guard", "mprotect"))


def test_exec_followed(prog: Prog, run_ufence: RunFn) -> None:
    """A child that CMD executes runs under the engine too: its bug is reported with its own pid."""
    execer, kunit = prog("execer.c"), prog("kunit.c")
    run = run_ufence([execer, kunit, "oob_read_right"], "--mode", "full")
    assert run.rc == 0, run.describe()
    assert run.value("child_exit") == 0, f"child not under the engine\n{run.describe()}"
    child = run.value("child_pid")
    assert len(run.json) == 1 and run.json[0].pid == child and run.json[0].comm == "kunit", run.describe()
    assert len(run.text) == 1 and run.text[0].title.startswith("BUG: UFENCE: out-of-bounds read in "
                                                                "test_out_of_bounds_read_right+")


def test_exec_direct_followed(prog: Prog, run_ufence: RunFn) -> None:
    """CMD replacing itself with exec keeps the engine (and its settings)."""
    execer, kunit = prog("execer.c"), prog("kunit.c")
    run = run_ufence([execer, "--direct", kunit, "uaf_write"], "--mode", "full", "--guard", "mprotect")
    assert run.rc == 0, run.describe()
    check_engine_info(run, "mprotect", sample_interval="-1")
    assert len(run.json) == 1 and run.json[0].bug.value == "use-after-free", run.describe()


def test_exec_not_followed(prog: Prog, run_ufence: RunFn) -> None:
    """--no-follow: CMD is covered, the program it executes is not (no engine, no report)."""
    execer, kunit = prog("execer.c"), prog("kunit.c")
    run = run_ufence([execer, kunit, "oob_read_right"], "--mode", "full", "--no-follow")
    assert run.rc == 0, run.describe()
    assert run.value("child_exit") == 77, f"child still under the engine\n{run.describe()}"
    check_no_reports(run)


@pytest.fixture(scope="session")
def dllib(cc: Callable[..., Path]) -> Path:
    return cc(HERE / "progs" / "dllib.c", "-shared", "-fPIC", name="libdlalloc.so")


def test_dlopen_clean(prog: Prog, run_ufence: RunFn, dllib: Path) -> None:
    exe = prog("dlmain.c")
    clean(run_ufence([exe, dllib, "clean"], "--mode", "full"))


def test_dlopen_bug_names_library(prog: Prog, run_ufence: RunFn, dllib: Path) -> None:
    """A bug inside a dlopen'ed library: its functions and its module appear in the report."""
    from enginelib import addr2line, build_id

    exe = prog("dlmain.c")
    run = run_ufence([exe, dllib, "bug"], "--mode", "full")
    assert run.rc == 0, run.describe()
    assert len(run.text) == 1 and len(run.json) == 1, run.describe()
    t, j = run.text[0], run.json[0]
    buf = run.value("buf")
    assert t.title.startswith("BUG: UFENCE: out-of-bounds read in lib_read+"), t.title
    assert t.access == f"Out-of-bounds read at {buf + 32:#x} (32B right of ufence-#{j.object.index}):"
    assert [(f.func, f.module) for f in t.stack[:2]] == [("lib_read", dllib.name), ("main", exe.name)]
    assert t.tracks["allocated"].frames[0].func == "lib_alloc"
    lib = str(dllib.resolve())
    top = j.stack[0]
    assert top.module == lib and top.build_id == build_id(lib) and top.offset is not None
    assert addr2line(lib, [top.offset]) == ["lib_read"]


@pytest.mark.parametrize("how", ["sigaction", "signal"])
@pytest.mark.parametrize("guard", GUARDS)
def test_own_sigsegv_handler(prog: Prog, run_ufence: RunFn, how: str, guard: str) -> None:
    """The program's SIGSEGV handler gets its own faults; ufence still reports its bug and keeps it."""
    exe = prog("sighandler.c")
    run = run_ufence([exe, how], "--mode", "full", "--guard", guard)
    assert run.rc == 0 and "done" in run.proc.stdout, run.describe()
    assert run.value("own_faults") == 3, run.describe()
    assert run.value("pool_faults") == 0, "a ufence fault reached the program's handler"
    buf = run.value("buf")
    check_one_report(run, exe, Expect("out-of-bounds", "ufence_bug", buf + 32, "read", buf, 32, "right",
                                      alloc_by=("ufence_bug", "main"), caller="main"))


@pytest.mark.slow
@pytest.mark.parametrize("where", ["main", "worker"])
def test_exit_while_threads_allocate(prog: Prog, run_ufence: RunFn, where: str) -> None:
    exe = prog("exit_threads.c")
    for _ in range(4):
        run = run_ufence([exe, where], "--mode", "full", timeout=60)
        assert run.rc == 0, run.describe()
        check_no_reports(run)


def check_python_run(run: Run) -> None:
    assert run.rc == 0, run.describe()
    assert "done" in run.proc.stdout.splitlines(), run.describe()
    assert "PYTHONMALLOC=malloc" in run.proc.stdout.splitlines()
    # CPython's objects really went through the engine: thousands guarded, pool reused
    assert run.value("total_allocations") > 4095 and run.value("total_frees") > 1000, run.info
    check_no_reports(run)


def test_python_stdlib_workload(run_ufence: RunFn) -> None:
    """A real CPython workload with PYTHONMALLOC=malloc, so its objects go through the engine."""
    run = run_ufence([sys.executable, HERE / "pyscripts" / "with_stats.py", HERE / "pyscripts" / "stdlib_workload.py"],
                     "--mode", "full", env={"PYTHONMALLOC": "malloc"}, timeout=180)
    check_python_run(run)


def test_python_full_mode_sets_pythonmalloc(run_ufence: RunFn, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without PYTHONMALLOC set, full mode routes CPython's objects through malloc (and says so)."""
    monkeypatch.delenv("PYTHONMALLOC", raising=False)
    run = run_ufence([sys.executable, HERE / "pyscripts" / "with_stats.py", HERE / "pyscripts" / "stdlib_workload.py"],
                     "--mode", "full", timeout=180)
    assert "PYTHONMALLOC=malloc" in run.proc.stderr, run.describe()
    check_python_run(run)
