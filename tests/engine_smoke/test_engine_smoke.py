"""Smoke tests of libufence.so run directly with LD_PRELOAD (no CLI).

The full matrix lives in tests/engine/; these only guard the engine's own
basics: reports for the main bug types under both guard mechanisms, no false
positive under threads and fork, and the 13-byte off-by-one caught every run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from ufence.engine import library_path

PROGS = Path(__file__).parent / "progs"


def run(binary: Path, *args: str, options: str, tmp: Path) -> tuple[subprocess.CompletedProcess[str], list[dict]]:
    reports = tmp / "reports"
    env = dict(os.environ)
    env.update({
        "LD_PRELOAD": str(library_path()),
        "UFENCE_OPTIONS": options,
        "UFENCE_REPORT_DIR": str(reports),
        "UFENCE_RUN_DIR": str(tmp / "run"),
    })
    proc = subprocess.run([str(binary), *args], capture_output=True, text=True, timeout=120, env=env)
    found = [json.loads(p.read_text()) for p in sorted(reports.glob("*.json"))] if reports.exists() else []
    return proc, found


@pytest.mark.parametrize("guard", ["uffd", "madvise", "mprotect"])
@pytest.mark.parametrize(("case", "title", "bug"), [
    ("oob-right", "BUG: UFENCE: out-of-bounds write in write_past", "out-of-bounds"),
    ("oob-left", "BUG: UFENCE: out-of-bounds read in read_before", "out-of-bounds"),
    ("uaf-write", "BUG: UFENCE: use-after-free write in main", "use-after-free"),
    ("double-free", "BUG: UFENCE: double free in main", "double free"),
    ("invalid-free", "BUG: UFENCE: invalid free in main", "invalid free"),
])
def test_bug_reported(cc: Callable[..., Path], tmp_path: Path, guard: str, case: str, title: str, bug: str) -> None:
    binary = cc(PROGS / "bugs.c")
    proc, reports = run(binary, case, options=f"sample_interval=-1:guard={guard}", tmp=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert title in proc.stderr
    assert any(r["bug"] == bug for r in reports)
    r = next(r for r in reports if r["bug"] == bug)
    assert r["source"] == "process" and r["pid"] > 0
    assert r["extra"]["guard"] == guard
    assert r["object"]["alloc"]["frames"][0]["function"] == "main"
    if case == "oob-right":
        assert r["side"] == "right" and r["distance"] == 32 and "(32B right of ufence-#" in proc.stderr
    if case == "oob-left":
        assert r["side"] == "left" and r["distance"] == 1


@pytest.mark.parametrize("free_it", [True, False])
def test_off_by_one_every_run(cc: Callable[..., Path], tmp_path: Path, free_it: bool) -> None:
    """malloc(13); p[13] = 'x' is reported in every run: at the guard page,
    from the canary at free, or at exit for an object never freed."""
    binary = cc(PROGS / "bugs.c")
    extra = ["free"] if free_it else []
    for i in range(6):
        proc, reports = run(binary, "off-by-one-13", *extra, options="sample_interval=-1", tmp=tmp_path / str(i))
        assert len(reports) == 1, proc.stderr
        r = reports[0]
        assert r["bug"] in ("out-of-bounds", "memory corruption")
        assert int(r["address"], 16) == int(r["object"]["start"], 16) + 13
        assert r["extra"].get("at_exit", False) is not free_it or r["bug"] == "out-of-bounds"


def test_no_false_positive_threads_and_fork(cc: Callable[..., Path], tmp_path: Path) -> None:
    binary = cc(PROGS / "stress.c")
    for guard in ("uffd", "madvise", "mprotect"):
        proc, reports = run(binary, "4", options=f"sample_interval=-1:guard={guard}", tmp=tmp_path / guard)
        assert proc.returncode == 0, proc.stderr
        assert "done child=0" in proc.stdout
        assert "UFENCE" not in proc.stderr and reports == []
    assert not list((tmp_path / "madvise" / "run").glob("*.shm")), "shm files are removed at exit"


def test_bad_option_keeps_default(cc: Callable[..., Path], tmp_path: Path) -> None:
    binary = cc(PROGS / "bugs.c")
    options = "sample_interval=banana:nonsense=1:sample_interval=-1"
    proc, reports = run(binary, "uaf-write", options=options, tmp=tmp_path)
    assert "ufence: bad option sample_interval=banana" in proc.stderr
    assert "ufence: bad option nonsense=1: unknown setting" in proc.stderr
    assert [r["bug"] for r in reports] == ["use-after-free"]


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="inline asm for x86-64")
def test_garbage_frame_pointer_never_faults(cc: Callable[..., Path], tmp_path: Path) -> None:
    """rbp = -8 (seen in gcc's cc1) and other junk: the stack walk stops instead of faulting."""
    binary = cc(PROGS / "badfp.c")
    proc, reports = run(binary, options="sample_interval=-1", tmp=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "badfp ok" in proc.stdout and reports == []


def test_closed_and_reused_fd_survives_fork(cc: Callable[..., Path], tmp_path: Path) -> None:
    binary = cc(PROGS / "closefds.c")
    proc, reports = run(binary, options="sample_interval=-1", tmp=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "child 0, parent fd intact" in proc.stdout, proc.stdout + proc.stderr
    assert reports == []


@pytest.mark.parametrize("options", ["sample_interval=-1", "sample_rate=1", "sample_rate=2"])
def test_program_asking_its_stack_bounds_does_not_deadlock(cc: Callable[..., Path], tmp_path: Path,
                                                           options: str) -> None:
    """Regression: stack-bound discovery through pthread_getattr_np deadlocked in mariadbd."""
    binary = cc(PROGS / "getattr.c")
    proc, reports = run(binary, options=options, tmp=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "done"
    assert reports == []


def test_mprotect_fallback_leaves_map_count_to_the_program(cc: Callable[..., Path], tmp_path: Path) -> None:
    """Regression: guarding 40k objects with mprotect took every VMA and the program's own mmap failed."""
    binary = cc(PROGS / "mapcap.c")
    proc, reports = run(binary, options="sample_interval=-1:guard=mprotect:num_objects=50000", tmp=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "own mappings failed: 0" in proc.stdout
    assert reports == []


def _start(binary: Path, arg: str, options: str, tmp: Path) -> subprocess.Popen[str]:
    env = dict(os.environ)
    env.update({"LD_PRELOAD": str(library_path()), "UFENCE_OPTIONS": options,
                "UFENCE_REPORT_DIR": str(tmp / "reports"), "UFENCE_RUN_DIR": str(tmp / "run")})
    proc = subprocess.Popen([str(binary), arg], stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


def _spawn(binary: Path, arg: str, options: str, tmp: Path) -> subprocess.Popen[str]:
    """The program under the engine with stdin and stdout piped (it waits on stdin)."""
    env = dict(os.environ)
    env.update({"LD_PRELOAD": str(library_path()), "UFENCE_OPTIONS": options,
                "UFENCE_REPORT_DIR": str(tmp / "reports"), "UFENCE_RUN_DIR": str(tmp / "run")})
    return subprocess.Popen([str(binary), arg], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)


def _live_stats(pid: int, tmp: Path) -> subprocess.CompletedProcess[str]:
    """`ufence stats PID --json` against the run dir of a program started by the test."""
    return subprocess.run([sys.executable, "-m", "ufence", "stats", str(pid), "--json"],
                          capture_output=True, text=True, timeout=30,
                          env={**os.environ, "UFENCE_RUN_DIR": str(tmp / "run")})


def _voluntary_switches(pid: int) -> int:
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        for line in (task / "status").read_text().splitlines():
            if line.startswith("voluntary_ctxt_switches:"):
                total += int(line.split()[1])
    return total


def test_interval_gate_waits_to_be_taken(cc: Callable[..., Path], tmp_path: Path) -> None:
    """An idle process at sample_interval=1 is not woken a thousand times a second (KFENCE's gate)."""
    proc = _start(cc(PROGS / "interval.c"), "idle", "sample_interval=1", tmp_path)
    try:
        before = _voluntary_switches(proc.pid)
        time.sleep(1.0)
        woken = _voluntary_switches(proc.pid) - before
    finally:
        proc.kill()
        proc.wait()
    assert woken < 200, f"{woken} wake-ups in 1 s of idling"


def test_interval_sampling_guards_about_one_per_interval(cc: Callable[..., Path], tmp_path: Path) -> None:
    """1 s of allocations at sample_interval=5: about 200 guarded, never much more."""
    proc = _start(cc(PROGS / "interval.c"), "busy", "sample_interval=5", tmp_path)
    try:
        out = _live_stats(proc.pid, tmp_path)
    finally:
        proc.kill()
        proc.wait()
    assert out.returncode == 0, out.stderr
    guarded = json.loads(out.stdout)["counters"]["total_allocations"]
    assert 20 <= guarded <= 1.3 * 200 + 2, guarded


def test_metadata_memory_is_what_the_state_file_really_holds(cc: Callable[..., Path], tmp_path: Path) -> None:
    """The state file is sparse (room for 16M slots): the stat must count its pages, not its extent."""
    proc = _start(cc(PROGS / "interval.c"), "idle", "sample_interval=-1", tmp_path)
    try:
        out = _live_stats(proc.pid, tmp_path)
        shm = tmp_path / "run" / f"{proc.pid}.shm"
        real = shm.stat().st_blocks * 512
    finally:
        proc.kill()
        proc.wait()
    assert out.returncode == 0, out.stderr
    meta = json.loads(out.stdout)["extra"]["metadata_bytes"]
    assert 4096 <= meta <= 1 << 20, meta
    assert abs(meta - real) <= 64 * 1024, (meta, real)


@pytest.mark.parametrize("mode", ["churn", "fork", "rawclone", "closeall"])
def test_page_recycling_survives_the_program(cc: Callable[..., Path], tmp_path: Path, mode: str) -> None:
    """guard=uffd moves freed pages into the next slot: contents stay right, the parent's pages are
    never moved by a child (fork or a raw clone), closing every descriptor degrades to guard regions,
    and each process still reports its one use-after-free."""
    binary = cc(PROGS / "recycle.c")
    proc, reports = run(binary, mode, options="sample_interval=-1:guard=uffd", tmp=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "done" in proc.stdout.splitlines(), proc.stdout + proc.stderr
    uaf_pids = sorted(int(line.split()[1]) for line in proc.stdout.splitlines() if line.startswith("uaf "))
    assert sorted(r["pid"] for r in reports) == uaf_pids, proc.stdout + proc.stderr
    assert all(r["bug"] == "use-after-free" and r["access"] == "read" for r in reports), reports
    assert len(uaf_pids) == (2 if mode == "fork" else 1)


def test_page_recycling_counts_its_moves(cc: Callable[..., Path], tmp_path: Path) -> None:
    """Live stats name the mechanism and count the recycled pages; resident pool pages stay a
    page per live object plus the few kept ready (at most 64)."""
    proc = _spawn(cc(PROGS / "recycle.c"), "wait", "sample_interval=-1:guard=uffd", tmp_path)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        out = _live_stats(proc.pid, tmp_path)
    finally:
        proc.kill()
        proc.wait()
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    c = doc["counters"]
    assert doc["extra"]["guard"] == "uffd", doc["extra"]
    # 2000 replacements of 200 live objects: nearly every free hands its page on
    assert c["total_frees"] >= 1800 and c["pages_recycled"] >= 0.9 * c["total_frees"], c
    live_pages = c["currently_allocated"]
    assert live_pages * 4096 <= c["pool_resident_bytes"] <= (live_pages + 64) * 4096, c



BATCH = "sample_interval=-1:guard=uffd:revoke_batch=64"


def _run_batched(binary: Path, *args: str, tmp: Path) -> tuple[subprocess.CompletedProcess[str], list[dict]]:
    proc, reports = run(binary, *args, options=BATCH, tmp=tmp)
    if proc.stdout.strip() == "skip":
        pytest.skip("batched revocation needs frees on two CPUs")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.splitlines()[-1] == "done", proc.stdout + proc.stderr
    return proc, reports


LATE = ("memory corruption", None)   # batched: found at revocation
AT_ONCE = ("use-after-free", "write")


def _kind(r: dict) -> tuple[str, str | None]:
    assert r["bug"] != "memory corruption" or r["extra"].get("after_free") is True, r
    return r["bug"], r["access"]


def test_batched_revocation_reports_a_late_write(cc: Callable[..., Path], tmp_path: Path) -> None:
    """revoke_batch: a write into a freed object is caught when its batch is revoked (memory
    corruption after free, blamed on the free); with the default it faults at the write. A
    batched free that itself fills its batch (1 in 64) revokes at once: a run may then see the
    fault, so up to 4 runs are made and every one must report the write exactly once."""
    binary = cc(PROGS / "revoke.c")
    for attempt in range(4):
        tmp = tmp_path / f"batch{attempt}"
        proc, reports = _run_batched(binary, "late-write", tmp=tmp)
        assert len(reports) == 1 and _kind(reports[0]) in (LATE, AT_ONCE), proc.stderr
        if _kind(reports[0]) == LATE:
            break
    assert _kind(reports[0]) == LATE, "never batched in 4 runs"
    r = reports[0]
    assert r["bug"] == "memory corruption" and r["extra"].get("after_free") is True, r
    assert "(in ufence-#" in proc.stderr and ", after free, found at revocation):" in proc.stderr
    assert int(r["address"], 16) == int(r["object"]["start"], 16) + 3
    assert r["corruption"][0]["value"] == ord("X")
    assert r["stack"][0]["function"] == "late_write" == r["object"]["free"]["frames"][0]["function"]
    assert r["object"]["state"] == "freed"
    again = subprocess.run([sys.executable, "-m", "ufence", "report", str(tmp / "reports")],
                           capture_output=True, text=True, timeout=60)
    assert again.returncode == 0 and ", after free, found at revocation):" in again.stdout, again.stderr

    proc, reports = run(binary, "late-write", options="sample_interval=-1:guard=uffd", tmp=tmp_path / "now")
    assert [(r["bug"], r["access"]) for r in reports] == [("use-after-free", "write")], proc.stderr


def test_batched_revocation_pending_at_exit_is_checked(cc: Callable[..., Path], tmp_path: Path) -> None:
    """A late write whose batch is still waiting when the program exits is found by the exit check."""
    proc, reports = _run_batched(cc(PROGS / "revoke.c"), "late-exit", tmp=tmp_path)
    assert len(reports) == 1 and _kind(reports[0]) in (LATE, AT_ONCE), proc.stderr


def test_batched_revocation_ages_out(cc: Callable[..., Path], tmp_path: Path) -> None:
    """A batch that never fills is revoked within ~100 ms: a write 400 ms after the free faults
    (had the page still been waiting, the write would only be found at exit, as a corruption)."""
    proc, reports = _run_batched(cc(PROGS / "revoke.c"), "aged", tmp=tmp_path)
    assert [_kind(r) for r in reports] == [AT_ONCE], proc.stderr


@pytest.mark.parametrize("args", [("churn", "2"), ("churn", "4"), ("fork",)])
def test_batched_revocation_keeps_contents(cc: Callable[..., Path], tmp_path: Path, args: tuple[str, ...]) -> None:
    """Pages waiting for their batch never show through in live objects, under threads and across
    fork (the child revokes its own copies); the only reports are the deliberate late writes."""
    proc, reports = _run_batched(cc(PROGS / "revoke.c"), *args, tmp=tmp_path)
    late = sorted(int(line.split()[1]) for line in proc.stdout.splitlines() if line.startswith("late "))
    assert sorted(r["pid"] for r in reports) == late, proc.stderr
    assert all(_kind(r) in (LATE, AT_ONCE) for r in reports), reports
    assert len(late) == (2 if args[0] == "fork" else 0)


def _waiting_stats(binary: Path, options: str, tmp: Path) -> dict:
    proc = _spawn(binary, "wait", options, tmp)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        if line == "skip":
            pytest.skip("batched revocation needs frees on two CPUs")
        assert line == "ready"
        out = _live_stats(proc.pid, tmp)
    finally:
        proc.kill()
        proc.wait()
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)["counters"]


def test_batched_revocation_only_with_frees_on_two_cpus(cc: Callable[..., Path], tmp_path: Path) -> None:
    """Two threads on two CPUs: most frees go out in batches. One thread: every free revokes at
    once (a page move), as without the setting. Resident pool pages stay a page per live object
    plus the ready pages and at most one batch."""
    c = _waiting_stats(cc(PROGS / "revoke.c"), BATCH, tmp_path / "two")
    assert c["total_frees"] >= 30000 and c["pages_revoked_batched"] >= c["total_frees"] // 2, c
    assert c["pool_resident_bytes"] <= (c["currently_allocated"] + 64 + 256) * 4096, c
    c = _waiting_stats(cc(PROGS / "recycle.c"), BATCH, tmp_path / "one")
    assert c["total_frees"] >= 1800 and c["pages_revoked_batched"] == 0, c
    assert c["pages_recycled"] >= 0.9 * c["total_frees"], c


def test_batched_revocation_switched_on_while_running(cc: Callable[..., Path], tmp_path: Path) -> None:
    """`ufence set PID revoke_batch=64` takes effect in a running process: no page batched before,
    most of the next round's frees after, and no report either way."""
    proc = _spawn(cc(PROGS / "revoke.c"), "switch", "sample_interval=-1:guard=uffd", tmp_path)
    try:
        assert proc.stdout is not None and proc.stdin is not None
        line = proc.stdout.readline().strip()
        if line == "skip":
            pytest.skip("batched revocation needs frees on two CPUs")
        assert line == "round 1"
        before = json.loads(_live_stats(proc.pid, tmp_path).stdout)["counters"]
        r = subprocess.run([sys.executable, "-m", "ufence", "set", str(proc.pid), "revoke_batch=64"],
                           capture_output=True, text=True, timeout=30,
                           env={**os.environ, "UFENCE_RUN_DIR": str(tmp_path / "run")})
        assert r.returncode == 0, r.stderr
        proc.stdin.write("go\n")
        proc.stdin.flush()
        assert proc.stdout.readline().strip() == "round 2"
        after = json.loads(_live_stats(proc.pid, tmp_path).stdout)["counters"]
    finally:
        proc.kill()
        proc.wait()
    assert before["total_frees"] >= 30000 and before["pages_revoked_batched"] == 0, before
    frees = after["total_frees"] - before["total_frees"]
    assert frees >= 30000 and after["pages_revoked_batched"] >= frees // 2, (before, after)
    assert not (tmp_path / "reports").exists() or not list((tmp_path / "reports").glob("*.json"))
