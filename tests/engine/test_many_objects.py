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
