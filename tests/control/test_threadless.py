"""Off mode, and sampling in a single-threaded program, run no control thread.

A thread-less engine is woken through the hot page of its state file: a change is queued until
the program allocates, then applied by that allocation, and the control thread starts only with a
mode that needs it (full mode, or sampling once the program has a thread of its own: a second
thread alone makes glibc's malloc take its locked paths). A thread-less interval sampler keeps the
clock on the allocation path and must open the gate as often as the thread would: once per
interval, never more. After fork, each process has its own hot page: a change to the child never
reaches the parent.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from controllib import PROGS, Cli, Target, wait_for


def threads(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def has_control_thread(pid: int) -> bool:
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            if Path(f"/proc/{pid}/task/{tid}/comm").read_text().strip() == "ufence-ctl":
                return True
        except OSError:
            pass
    return False


def forked_child(t: Target, tmp_path: Path, marker: str = "ready") -> int:
    """The pid of the fork child of gated.c (marker "ready") or sampler.c ("count"), once both processes
    have written their marker file and the child has its state file."""

    def child() -> int:
        pids = [int(p.name.split("-")[1]) for p in tmp_path.glob(f"{marker}-*") if not p.name.endswith(".tmp")]
        others = [p for p in pids if p != t.pid]
        return others[0] if others and (t.run_dir / f"{others[0]}.shm").exists() else 0

    assert wait_for(lambda: bool(child()) and (tmp_path / f"{marker}-{t.pid}").exists())
    return child()


@pytest.fixture(scope="module")
def gated(cc: Callable[..., Path]) -> Path:
    return cc(PROGS / "gated.c", "-pthread", name="control-gated")


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


def test_sampling_single_threaded_queues_until_next_allocation(launch: Callable[..., Target], cli: Cli,
                                                               gated: Path, tmp_path: Path) -> None:
    """Sampling a single-threaded program: no thread either, so a change waits for an allocation."""
    t = launch(gated, str(tmp_path), flags=("--sample-interval", "20"))
    assert wait_for(lambda: (tmp_path / f"ready-{t.pid}").exists())
    assert threads(t.pid) == 1, "sampling a single-threaded program started a thread"
    r = cli("set", str(t.pid), "sample_interval=30")
    assert r.returncode == 0, r.stderr
    assert "queued" in r.stderr and "sampling a single-threaded program" in r.stderr, r.stderr
    assert cli.ok("get", str(t.pid), "sample_interval").strip() == "20"
    (tmp_path / f"go-{t.pid}").touch()
    assert wait_for(lambda: (tmp_path / f"done-{t.pid}").exists())
    assert cli.ok("get", str(t.pid), "sample_interval").strip() == "30"
    assert threads(t.pid) == 1
    (tmp_path / "stop").touch()


def test_fork_child_has_its_own_hot_page(launch: Callable[..., Target], cli: Cli, gated: Path,
                                          tmp_path: Path) -> None:
    t = launch(gated, str(tmp_path), "fork", flags=("--mode", "off"))
    c = forked_child(t, tmp_path)
    # the child's file says who it is: "alive" needs its own pid and start time; the cmdline is the
    # parent's, copied with the file
    rows = {r["pid"]: r for r in json.loads(cli.ok("ps", "--json"))}
    assert rows[c]["alive"] and rows[c]["cmdline"] == rows[t.pid]["cmdline"], (rows[c], rows[t.pid])
    assert "control-gated" in rows[c]["cmdline"] and "fork" in rows[c]["cmdline"]
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
    """A child of a full-mode process gets its control thread only once it allocates (a fork-heavy
    program's children that never allocate stay single-threaded, so glibc keeps its fast paths)."""
    t = launch(gated, str(tmp_path), "fork", flags=("--mode", "full"))
    c = forked_child(t, tmp_path)
    assert threads(t.pid) == 2, "full mode runs the control thread"
    assert threads(c) == 1, "the child started a thread before its first allocation"
    (tmp_path / f"go-{c}").touch()
    assert wait_for(lambda: (tmp_path / f"done-{c}").exists())
    assert wait_for(lambda: threads(c) == 2), "the child's first allocation did not start its thread"
    # the child's own thread answers at once
    r = cli("set", str(c), "sample_interval=1")
    assert r.returncode == 0 and "queued" not in r.stderr, r.stderr
    (tmp_path / f"go-{t.pid}").touch()
    assert wait_for(lambda: (tmp_path / f"done-{t.pid}").exists())


# ---- sampling without a thread -------------------------------------------------------------

@pytest.fixture(scope="module")
def sampler(cc: Callable[..., Path]) -> Path:
    return cc(PROGS / "sampler.c", "-pthread", name="control-sampler")


def _count(tmp_path: Path, pid: int) -> int:
    try:
        return int((tmp_path / f"count-{pid}").read_text())
    except (OSError, ValueError):
        return 0


def _sampled_over(cli: Cli, tmp_path: Path, pid: int, seconds: float) -> tuple[int, int, float]:
    """(guarded allocations, allocations made, seconds) over a stretch of the program's run; the
    seconds include both reads of the counters, so they bound the stretch from above."""
    t0 = time.monotonic()
    a0, n0 = cli.stats(pid)["total_allocations"], _count(tmp_path, pid)
    time.sleep(seconds)
    a1, n1 = cli.stats(pid)["total_allocations"], _count(tmp_path, pid)
    return a1 - a0, n1 - n0, time.monotonic() - t0


def _assert_interval(guarded: int, made: int, seconds: float, interval_ms: int) -> None:
    # never more often than the interval (+1 at each end of the stretch); allocations come every
    # ~1 ms, so unless the program was starved the gate opened at least a few times
    assert guarded <= seconds * 1000 / interval_ms + 2, (guarded, made, seconds)
    assert made >= 100 and guarded >= min(3, made // interval_ms // 4), (guarded, made, seconds)


def test_interval_sampling_single_threaded_runs_no_thread(launch: Callable[..., Target], cli: Cli,
                                                          sampler: Path, tmp_path: Path) -> None:
    t = launch(sampler, str(tmp_path), flags=("--sample-interval", "20"))
    assert wait_for(lambda: _count(tmp_path, t.pid) >= 100)
    assert threads(t.pid) == 1, "a single-threaded program got a control thread for interval sampling"
    assert json.loads(cli.ok("stats", str(t.pid), "--json"))["extra"]["control_thread"] is False
    assert "control thread: none (changes apply at the program's next allocation)" in cli.ok("stats", str(t.pid))
    _assert_interval(*_sampled_over(cli, tmp_path, t.pid, 1.5), 20)
    # a change is applied by the next allocation (within a millisecond here), and stays thread-less
    r = cli("set", str(t.pid), "sample_interval=50")
    assert r.returncode == 0, r.stderr
    assert wait_for(lambda: cli.ok("get", str(t.pid), "sample_interval").strip() == "50")
    _assert_interval(*_sampled_over(cli, tmp_path, t.pid, 1.5), 50)
    assert threads(t.pid) == 1
    # full mode needs the thread
    assert cli("set", str(t.pid), "sample_interval=-1").returncode == 0
    assert wait_for(lambda: threads(t.pid) == 2)
    assert wait_for(lambda: cli.stats(t.pid)["mode"] == "full")


def test_interval_holds_for_a_program_that_allocates_flat_out(launch: Callable[..., Target], cli: Cli,
                                                              sampler: Path, tmp_path: Path) -> None:
    """Millions of allocations a second: the clock is read only every poll_stride allocations, and
    the stride must stay short enough that the gate still opens about every interval."""
    t = launch(sampler, str(tmp_path), "busy", flags=("--sample-interval", "20"))
    assert wait_for(lambda: _count(tmp_path, t.pid) >= 100000)
    assert threads(t.pid) == 1
    guarded, made, seconds = _sampled_over(cli, tmp_path, t.pid, 1.5)
    assert made >= 1000000, made
    # the stretch includes two CLI runs: the lower bound allows for the CPU they take from the target
    assert seconds * 1000 / 20 / 3 <= guarded <= seconds * 1000 / 20 + 2, (guarded, made, seconds)


def test_program_thread_hands_the_clock_to_the_control_thread(launch: Callable[..., Target], cli: Cli,
                                                              sampler: Path, tmp_path: Path) -> None:
    t = launch(sampler, str(tmp_path), flags=("--sample-interval", "20"))
    assert wait_for(lambda: _count(tmp_path, t.pid) >= 100)
    assert threads(t.pid) == 1
    (tmp_path / "thread").touch()
    assert wait_for(lambda: (tmp_path / f"threaded-{t.pid}").exists())
    # the program's own thread makes it multi-threaded: the engine's thread joins it
    assert wait_for(lambda: has_control_thread(t.pid)) and threads(t.pid) == 3, threads(t.pid)
    assert json.loads(cli.ok("stats", str(t.pid), "--json"))["extra"]["control_thread"] is True
    assert "control thread: running" in cli.ok("stats", str(t.pid))
    _assert_interval(*_sampled_over(cli, tmp_path, t.pid, 1.5), 20)
    # and answers at once
    r = cli("set", str(t.pid), "sample_interval=30")
    assert r.returncode == 0 and "queued" not in r.stderr, r.stderr
    assert cli.ok("get", str(t.pid), "sample_interval").strip() == "30"


def test_first_thread_starts_the_control_thread_at_once(launch: Callable[..., Target], cli: Cli,
                                                       gated: Path, tmp_path: Path) -> None:
    """The engine's thread comes with the program's first pthread_create, not with a later
    allocation: gated.c starts a sleeping thread, then allocates nothing until told."""
    t = launch(gated, str(tmp_path), "thread", flags=("--sample-interval", "20"))
    assert wait_for(lambda: (tmp_path / f"ready-{t.pid}").exists())
    assert wait_for(lambda: has_control_thread(t.pid)), "no control thread without an allocation"
    r = cli("set", str(t.pid), "sample_interval=30")
    assert r.returncode == 0 and "queued" not in r.stderr, r.stderr
    (tmp_path / "stop").touch()
    (tmp_path / f"go-{t.pid}").touch()


def test_thread_glibc_starts_itself_is_noticed(launch: Callable[..., Target], cli: Cli,
                                               sampler: Path, tmp_path: Path) -> None:
    """A SIGEV_THREAD timer's thread is made inside glibc, not through the pthread_create the engine
    wraps: the thread-less sampler notices the process went multi-threaded and hands over."""
    t = launch(sampler, str(tmp_path), flags=("--sample-interval", "20"))
    assert wait_for(lambda: _count(tmp_path, t.pid) >= 100)
    assert not has_control_thread(t.pid)
    (tmp_path / "timer").touch()
    assert wait_for(lambda: (tmp_path / f"timed-{t.pid}").exists())
    assert wait_for(lambda: has_control_thread(t.pid))
    _assert_interval(*_sampled_over(cli, tmp_path, t.pid, 1.5), 20)


def test_mode_changes_across_the_handover(launch: Callable[..., Target], cli: Cli,
                                          sampler: Path, tmp_path: Path) -> None:
    """Changes keep coming while the program goes from one thread to two: every one is applied
    (by an allocation before, by the thread after), the program runs on, and sampling goes on."""
    t = launch(sampler, str(tmp_path), "busy", flags=("--sample-interval", "5"))
    assert wait_for(lambda: _count(tmp_path, t.pid) >= 100000)
    values = ["sample_interval=1", "sample_rate=5", "sample_rate=0", "sample_interval=0", "sample_interval=3"]
    for n in range(20):
        if n == 8:
            (tmp_path / "thread").touch()
        want = values[n % len(values)]
        assert cli("set", "-q", str(t.pid), want).returncode == 0, want
        key, value = want.split("=")
        assert cli.ok("get", str(t.pid), key).strip() == value
    assert wait_for(lambda: has_control_thread(t.pid)) and t.alive()
    before = cli.stats(t.pid)["total_allocations"]
    assert wait_for(lambda: cli.stats(t.pid)["total_allocations"] > before), "sampling stopped"


def test_rate_sampling_single_threaded_runs_no_thread(launch: Callable[..., Target], cli: Cli,
                                                      sampler: Path, tmp_path: Path) -> None:
    t = launch(sampler, str(tmp_path), flags=("--sample-rate", "10"))
    assert wait_for(lambda: _count(tmp_path, t.pid) >= 100)
    assert threads(t.pid) == 1
    guarded, made, _ = _sampled_over(cli, tmp_path, t.pid, 1.0)
    # 1 in 10 on average (each gap uniform in 1..19): 100+ allocations give a ratio near 0.1
    assert made >= 100 and 0.04 <= guarded / made <= 0.2, (guarded, made)
    (tmp_path / "thread").touch()
    assert wait_for(lambda: threads(t.pid) == 3), threads(t.pid)
    guarded, made, _ = _sampled_over(cli, tmp_path, t.pid, 1.0)
    assert made >= 100 and 0.04 <= guarded / made <= 0.2, (guarded, made)


def test_fork_child_of_a_sampling_process_samples_without_a_thread(launch: Callable[..., Target], cli: Cli,
                                                                   sampler: Path, tmp_path: Path) -> None:
    t = launch(sampler, str(tmp_path), "fork", flags=("--sample-interval", "20"))
    c = forked_child(t, tmp_path, "count")
    assert wait_for(lambda: _count(tmp_path, c) >= 100)
    assert threads(t.pid) == 1 and threads(c) == 1
    _assert_interval(*_sampled_over(cli, tmp_path, c, 1.5), 20)
