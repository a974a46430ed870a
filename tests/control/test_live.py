"""Live control of a running program (issue 3): switch modes, grow the pool, plant a bug after a switch."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from controllib import Cli, Target, wait_for

from ufence.backends.process import ProcessBackend


def _allocs(cli: Cli, pid: int) -> int:
    return cli.stats(pid)["total_allocations"]


def _grows(cli: Cli, pid: int, window: float = 0.4) -> int:
    a = _allocs(cli, pid)
    time.sleep(window)
    return _allocs(cli, pid) - a


def test_switch_off_sample_full_off_full(cli: Cli, launch: Callable[..., Target], progs: dict[str, Path],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    t = launch(progs["loop"], "64", "500", flags=("--mode", "off"))
    pid = t.pid
    st = cli.stats(pid)
    assert st["mode"] == "off" and st["enabled"] == 0
    assert _grows(cli, pid) == 0, "off: nothing may be guarded"

    cli.ok("set", str(pid), "sample_interval=20")
    assert cli.ok("get", str(pid), "sample_interval") == "20\n"
    assert cli.stats(pid)["mode"] == "sample"
    assert wait_for(lambda: _allocs(cli, pid) > 0, 3), "sample: guarded allocations must start"
    n = _grows(cli, pid, 1.0)
    # one guarded allocation per 20 ms interval, at most (plus burst 0): about 50 per second
    assert 5 <= n <= 80, n
    sampled = cli.objects(pid, "allocated")
    assert sampled and not any("short_canary" in o.get("flags", []) for o in sampled), "sampling checks the page"

    cli.ok("set", str(pid), "sample_interval=-1")
    assert cli.stats(pid)["mode"] == "full"
    n_full = _grows(cli, pid, 1.0)
    assert n_full > 3 * n, (n_full, n)  # every allocation (one per 0.5 ms loop) vs one per 20 ms
    live = [o for o in cli.objects(pid, "allocated")]
    assert len(live) >= 32, "full mode: the program's live ring is guarded"
    assert all("short_canary" in o.get("flags", []) for o in live), "full mode checks the lines around each object"

    cli.ok("set", str(pid), "sample_interval=0")
    st = cli.stats(pid)
    assert st["mode"] == "off" and st["enabled"] == 0
    assert _grows(cli, pid) == 0, "off again: guarding stops at once"
    before = cli.stats(pid)
    time.sleep(0.3)
    after = cli.stats(pid)
    # guarded objects still live are freed back through the engine; frees continue, allocations do not
    assert after["total_frees"] >= before["total_frees"]

    cli.ok("set", str(pid), "sample_interval=-1")
    assert _grows(cli, pid) > 50
    bugs = cli.stats(pid)["total_bugs"]
    t.proc.send_signal(signal.SIGUSR1)
    assert wait_for(lambda: cli.stats(pid)["total_bugs"] > bugs, 5), "the planted bug must be reported"
    assert wait_for(lambda: any(r["bug"] in ("out-of-bounds", "memory corruption") for r in t.reports()), 5)
    rep = next(r for r in t.reports() if r["bug"] in ("out-of-bounds", "memory corruption"))
    assert rep["pid"] == pid
    assert t.alive(), "fault=report: the program goes on after the report"
    assert "BUG: UFENCE:" in t.stderr()
    assert len(cli.ok("objects", str(pid), "--no-symbolize").split("-" * 33 + "\n")) > 32
    # the backend finds the same report, and a snapshot carries objects, settings, modules and meta
    monkeypatch.setenv("UFENCE_RUN_DIR", str(t.run_dir))
    b = ProcessBackend(pid)
    reps = list(b.reports())
    assert any(r.bug.value == rep["bug"] and r.pid == pid for r in reps)
    snap = b.snapshot()
    assert snap.meta["pid"] == pid and snap.meta["alive"] and snap.sampling["mode"] == "full"
    assert snap.settings["sample_interval"] == "-1" and len(snap.objects) >= 32
    assert any(m["path"].endswith("control-loop") and m["build_id"] for m in snap.modules)
    assert any(f.module and f.module.endswith("control-loop") for o in snap.objects if o.alloc
               for f in o.alloc.frames)
    b.close()


def test_change_is_acknowledged_within_100ms(launch: Callable[..., Target], progs: dict[str, Path],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    t = launch(progs["loop"], "16", "2000", flags=("--mode", "off"))
    monkeypatch.setenv("UFENCE_RUN_DIR", str(t.run_dir))
    b = ProcessBackend(t.pid)
    worst = 0.0
    for v in ("-1", "0", "100", "0", "-1", "0"):
        t0 = time.monotonic()
        assert b.set({"sample_interval": v}) == {"sample_interval": v}
        worst = max(worst, time.monotonic() - t0)
    b.close()
    assert worst < 0.1, f"a change took {worst * 1000:.1f} ms to apply"


def test_num_objects_grows_in_full_mode(cli: Cli, launch: Callable[..., Target], progs: dict[str, Path]) -> None:
    # full mode guards every allocation while the pool lasts (skip-covered is for sampling, as in Anolis)
    t = launch(progs["loop"], "200", "300", flags=("--mode", "full", "--pool", "64"))
    pid = t.pid
    assert wait_for(lambda: cli.stats(pid)["skipped_capacity"] > 0, 5), "a 64-slot pool with 200 live objects fills"
    st = cli.stats(pid)
    assert st["pool_objects"] == 64 and st["currently_allocated"] <= 64
    warn = cli("stats", str(pid))
    # --pool 64 fixed the ceiling too: the advice is to raise it, so the engine grows the pool itself
    assert f"ufence set {pid} max_objects=128" in warn.stderr and "full" in warn.stderr, warn.stderr
    cli.ok("set", str(pid), "num_objects=512")
    assert cli.ok("get", str(pid), "num_objects") == "512\n"
    assert cli.stats(pid)["pool_objects"] == 512
    assert wait_for(lambda: cli.stats(pid)["currently_allocated"] > 100, 5), "the new slots are used"
    idx = [int(str(o["index"])) for o in cli.objects(pid, "allocated")]
    assert max(idx) >= 64 and len(idx) > 100
    assert cli.stats(pid)["mode"] == "full"  # no switching off needed (Anolis must)
    cli.ok("set", str(pid), "num_objects=300")  # shrinking takes free slots only
    assert int(cli.ok("get", str(pid), "num_objects")) <= 512
    assert t.alive()
