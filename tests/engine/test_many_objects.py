"""More than 100,000 live guarded objects in one process, with guard regions (no VMA per guard page)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from checks import check_engine_info, check_no_reports
from enginelib import RunFn


@pytest.mark.slow
def test_more_than_100k_live_guarded_objects(prog: Callable[..., Path], run_ufence: RunFn) -> None:
    """120k live objects, default settings: more than 100k of them guarded at once, no crash."""
    exe = prog("many.c")
    run = run_ufence([exe, "120000", "16"], "--mode", "full", "--guard", "madvise", "--pool", "150000",
                     timeout=180)
    assert run.rc == 0, run.describe()
    check_engine_info(run, "madvise", num_objects="150000")
    guarded = run.value("guarded")
    assert guarded > 100_000, f"only {guarded} objects in the pool: {run.info}"
    assert run.value("live") >= guarded, f"engine counts {run.info.get('live')} live guarded objects"
    assert run.value("after_free_live") < 100, run.info
    check_no_reports(run)


@pytest.mark.slow
def test_full_mode_fills_the_pool(prog: Callable[..., Path], run_ufence: RunFn) -> None:
    """--mode full guards every eligible allocation while the pool lasts: all 120k, one page each.

    (KFENCE's skip-covered heuristic is a sampling device; full mode promises every allocation.)
    """
    exe = prog("many.c")
    run = run_ufence([exe, "120000", "16"], "--mode", "full", "--guard", "madvise", "--pool", "150000",
                     timeout=180)
    assert run.rc == 0, run.describe()
    assert run.value("guarded") == 120000, f"not every object in the pool: {run.info}"
    assert run.value("live") >= 120000, f"engine counts {run.info.get('live')} live guarded objects"
    assert run.value("distinct_pages") == 120000, "each object has its own page"
    check_no_reports(run)


@pytest.mark.slow
def test_120k_with_skip_covered_off(prog: Callable[..., Path], run_ufence: RunFn) -> None:
    """With the skip-covered heuristic off, all 120k identical-stack objects are guarded."""
    exe = prog("many.c")
    run = run_ufence([exe, "120000", "16"], "--mode", "full", "--guard", "madvise", "--pool", "150000",
                     "--set", "skip_covered_thresh=100", timeout=180)
    assert run.rc == 0, run.describe()
    check_engine_info(run, "madvise", num_objects="150000", skip_covered_thresh="100")
    assert run.value("guarded") == 120000, f"not every object in the pool: {run.info}"
    assert run.value("live") >= 120000, run.info
    assert run.value("distinct_pages") == 120000, "each object has its own page"
    check_no_reports(run)


def test_sample_rate_guards_one_in_n(prog: Callable[..., Path], run_ufence: RunFn) -> None:
    """--sample-rate 3 guards about a third of the allocations, not all and not none."""
    exe = prog("many.c")
    run = run_ufence([exe, "3000", "16"], "--mode", "sample", "--sample-rate", "3")
    assert run.rc == 0, run.describe()
    check_engine_info(run, sample_rate="3")
    assert 800 <= run.value("guarded") <= 1200, run.info
    check_no_reports(run)


def test_sample_interval_guards_few(prog: Callable[..., Path], run_ufence: RunFn) -> None:
    """--sample-interval 2000: a burst of 3000 allocations gets at most a couple of guarded objects."""
    exe = prog("many.c")
    run = run_ufence([exe, "3000", "16"], "--mode", "sample", "--sample-interval", "2000")
    assert run.rc == 0, run.describe()
    check_engine_info(run, sample_interval="2000")
    assert run.value("guarded") <= 3, run.info
    check_no_reports(run)


def test_full_mode_guards_every_small_allocation(prog: Callable[..., Path], run_ufence: RunFn) -> None:
    exe = prog("many.c")
    run = run_ufence([exe, "3000", "100"], "--mode", "full")
    assert run.rc == 0, run.describe()
    assert run.value("guarded") == 3000, run.info
    check_no_reports(run)


POOL_FULL = "ufence: pool full: "


def test_full_mode_grows_a_full_pool(prog: Callable[..., Path], run_ufence: RunFn) -> None:
    """No --pool: full mode doubles the default 4095-slot pool while every slot is live, so all 20,000 are guarded."""
    exe = prog("many.c")
    run = run_ufence([exe, "20000", "16"], "--mode", "full")
    assert run.rc == 0, run.describe()
    check_engine_info(run, num_objects="4095", max_objects="1048576")
    assert run.value("guarded") == 20000, run.info
    assert run.value("skipped_capacity") == 0, run.info
    assert run.value("pool_slots") == 4095 * 8, f"4095 doubled three times: {run.info}"
    assert POOL_FULL not in run.proc.stderr, run.describe()
    check_no_reports(run)


def test_full_mode_growth_stops_at_max_objects(prog: Callable[..., Path], run_ufence: RunFn) -> None:
    """max_objects is the ceiling: the last doubling is cut to it, then allocations go unguarded, said once."""
    exe = prog("many.c")
    run = run_ufence([exe, "20000", "16"], "--mode", "full", "--set", "max_objects=10000")
    assert run.rc == 0, run.describe()
    # every slot live (the program's stdout buffer takes one too), the rest unguarded
    assert run.value("pool_slots") == 10000 and run.value("live") == 10000, run.info
    assert run.value("skipped_capacity") == 20000 - run.value("guarded") > 10000 - 8, run.info
    notices = [ln for ln in run.proc.stderr.splitlines() if ln.startswith(POOL_FULL)]
    assert len(notices) == 1, run.describe()
    assert notices[0].startswith(f"{POOL_FULL}10000 guarded objects live (max_objects=10000)"), notices
    assert f"ufence set {run.value('pid')} max_objects=N" in notices[0], notices
    check_no_reports(run)


@pytest.mark.parametrize("how", [("--set", "max_objects=0"), ("--pool", "4095")])
def test_full_mode_fixed_pool(prog: Callable[..., Path], run_ufence: RunFn, how: tuple[str, str]) -> None:
    """max_objects=0, or an explicit --pool N, keeps the pool at its size (Anolis' hand-sized pool)."""
    exe = prog("many.c")
    run = run_ufence([exe, "6000", "16"], "--mode", "full", *how)
    assert run.rc == 0, run.describe()
    assert run.value("pool_slots") == 4095 and run.value("live") == 4095, run.info
    assert run.value("skipped_capacity") == 6000 - run.value("guarded") > 6000 - 4095 - 8, run.info
    assert sum(ln.startswith(POOL_FULL + "4095 guarded objects live") for ln in run.proc.stderr.splitlines()) == 1, \
        run.describe()
    check_no_reports(run)


def test_sampling_keeps_the_pool_size(prog: Callable[..., Path], run_ufence: RunFn) -> None:
    """Sampling every allocation fills the pool as KFENCE does: no growth, no notice (a full pool is normal there)."""
    exe = prog("many.c")
    run = run_ufence([exe, "6000", "16"], "--mode", "sample", "--sample-rate", "1", "--set", "skip_covered_thresh=100")
    assert run.rc == 0, run.describe()
    assert run.value("pool_slots") == 4095 and run.value("live") == 4095, run.info
    assert POOL_FULL not in run.proc.stderr, run.describe()
    check_no_reports(run)
