"""More than 100,000 live guarded objects in one process, with guard regions (no VMA per guard page)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from checks import check_engine_info, check_no_reports
from enginelib import RunFn


@pytest.mark.slow
def test_120k_live_guarded_objects(prog: Callable[..., Path], run_ufence: RunFn) -> None:
    exe = prog("many.c")
    run = run_ufence([exe, "120000", "16"], "--mode", "full", "--guard", "madvise", "--pool", "150000",
                     timeout=180)
    assert run.rc == 0, run.describe()
    check_engine_info(run, "madvise", num_objects="150000")
    assert run.value("guarded") == 120000, f"not every object in the pool: {run.info}"
    assert run.value("live") >= 120000, f"engine counts {run.info.get('live')} live guarded objects"
    assert run.value("distinct_pages") == 120000, "each object has its own page"
    assert run.value("after_free_live") < 100, run.info
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
