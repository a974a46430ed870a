"""A Python service with a buggy C extension, run as its users would: ``ufence run --mode full -- python app.py``.

No --pool: the service keeps more live objects than the default pool holds, so
this also shows full mode growing its pool rather than letting the extension's
allocations go unguarded; and the off-by-one runs 100 times, reported once.
"""

from __future__ import annotations

import sys
import sysconfig
from collections.abc import Callable
from pathlib import Path

import pytest
from enginelib import Run, RunFn

from ufence.model import BugType, Frame, Report

HERE = Path(__file__).resolve().parent
EXT = "ufbuggy.so"


@pytest.fixture(scope="module")
def extension(cc: Callable[..., Path]) -> Path:
    """ufbuggy.so built against the headers of the Python that runs the tests."""
    include = sysconfig.get_paths()["include"]
    if not (Path(include) / "Python.h").exists():
        pytest.fail(f"Python.h not found in {include}: install the Python development headers (python3-dev)")
    return cc(HERE / "progs" / "pyext_ufbuggy.c", "-shared", "-fPIC", f"-I{include}", name=EXT)


def ext_frames(stack: list[Frame]) -> list[str]:
    """Functions of the extension's frames among the first three (CPython may add a frame of its own first)."""
    return [f.function or "?" for f in stack[:3] if f.module and f.module.endswith(EXT)]


def by_bug(run: Run) -> dict[BugType, Report]:
    got = {r.bug: r for r in run.json}
    assert len(got) == len(run.json), f"two reports of one kind: {[r.title() for r in run.json]}\n{run.describe()}"
    return got


def test_extension_bugs_in_a_python_service(extension: Path, run_ufence: RunFn) -> None:
    run = run_ufence([sys.executable, HERE / "pyscripts" / "with_stats.py", HERE / "pyscripts" / "ext_service.py",
                      extension.parent], "--mode", "full", timeout=300)
    d = run.describe()
    assert run.rc == 0 and "done" in run.proc.stdout.splitlines(), d
    # the live set outgrew the default 4095 slots and the pool followed it
    assert run.value("skipped_capacity") == 0 and run.value("pool_slots") > 4095, run.info

    bugs = by_bug(run)
    assert set(bugs) == {BugType.MEMORY_CORRUPTION, BugType.USE_AFTER_FREE}, d
    assert len(run.text) == 2, d

    # the off-by-one: its NUL in the canary, found when the buffer is freed, blamed on copy_name
    c = bugs[BugType.MEMORY_CORRUPTION]
    buf = run.value("copy_buf")
    assert c.address == buf + 20, f"corruption at {c.address:#x}, the NUL is at {buf + 20:#x}\n{d}"
    assert [b.value for b in c.corruption[:1]] == [0], c.corruption
    assert c.object is not None and c.object.start == buf and c.object.size == 20
    assert ext_frames(c.stack) == ["copy_name"], f"free stack {c.stack[:3]}\n{d}"
    assert c.object.alloc is not None and ext_frames(c.object.alloc.frames) == ["copied", "copy_name"], d
    assert c.object.index >= 4095, "the buffer's slot is one the pool grew"
    # 100 calls, 100 corrupted buffers: one report, 99 counted
    assert run.value("total_bugs") == 101 and run.value("reports_deduplicated") == 99, run.info
    assert sum("a bug at a site already reported is counted" in ln for ln in run.proc.stderr.splitlines()) == 1, d

    # the stale pointer: the read faults at once, with all three stacks
    u = bugs[BugType.USE_AFTER_FREE]
    stale = run.value("stale_buf")
    assert u.access == "read" and u.address == stale, d
    assert u.function is not None and u.function.startswith("recall"), u.function
    assert ext_frames(u.stack) == ["recall"], f"access stack {u.stack[:3]}\n{d}"
    assert u.object is not None and u.object.alloc is not None and u.object.free is not None
    assert ext_frames(u.object.alloc.frames) == ["copied", "remember"], d
    assert ext_frames(u.object.free.frames) == ["forget"], d
    # below the extension: the interpreter that called it
    assert any(f.module and "python" in f.module for f in u.stack[1:4]), f"no interpreter frame: {u.stack[:4]}"


def test_every_repeat_reported_with_dedup_off(extension: Path, run_ufence: RunFn) -> None:
    """dedup_reports=0: each of the 100 corrupted buffers gets its own report, as KFENCE prints every bug."""
    run = run_ufence([sys.executable, HERE / "pyscripts" / "with_stats.py", HERE / "pyscripts" / "ext_service.py",
                      extension.parent], "--mode", "full", "--set", "dedup_reports=0", timeout=300)
    assert run.rc == 0, run.describe()
    assert [r.bug for r in run.json].count(BugType.MEMORY_CORRUPTION) == 100, run.describe()
    assert run.value("reports_deduplicated") == 0, run.info
