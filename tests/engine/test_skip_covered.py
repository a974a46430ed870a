"""Skip-covered, KFENCE's sampling heuristic: past skip_covered_thresh% of the pool, a stack that
already has a live object in the pool is not guarded again; full mode keeps out of it."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from checks import check_no_reports
from enginelib import RunFn

FILL = 80  # of a 100-slot pool: 81 live at the switch back (and a few of stdio's), past the default 75%
# the program switches modes with this (not under the engine itself)
SET = ("env", "-u", "LD_PRELOAD", sys.executable, "-m", "ufence", "set")


def test_sampling_skips_covered_stacks_and_full_mode_stays_out(prog: Callable[..., Path],
                                                               run_ufence: RunFn) -> None:
    run = run_ufence([prog("covered.c"), str(FILL), *SET],
                     "--mode", "sample", "--sample-rate", "1", "--pool", "100")
    assert run.rc == 0, run.describe()
    # below the threshold everything is guarded, in either mode
    assert run.info["a_sampled"] == "guarded" and run.value("filled") == FILL, run.describe()
    assert run.info["a_full_freed"] == "guarded", run.describe()
    assert 1 + FILL <= run.value("live_at_switch") < 100, run.describe()
    # past it: A's sampled object still covers A (the full-mode A freed meanwhile did not count)
    assert run.info["a_again"] == "covered", run.describe()
    # full mode's F objects are not in the filter: F is guarded again
    assert run.info["f_again"] == "guarded", run.describe()
    # a new stack is guarded once, then covered by that object
    assert run.info["b_first"] == "guarded" and run.info["b_second"] == "covered", run.describe()
    assert run.value("skipped_covered") == 2, run.describe()
    check_no_reports(run)


def test_full_mode_guards_covered_stacks(prog: Callable[..., Path], run_ufence: RunFn) -> None:
    """The same program under full mode from the start (its two switches go to full mode and back
    to sampling): nothing was sampled before the pool filled, so nothing is covered but B."""
    run = run_ufence([prog("covered.c"), str(FILL), *SET],
                     "--mode", "full", "--pool", "100")
    assert run.rc == 0, run.describe()
    for probe in ("a_sampled", "a_full_freed", "a_again", "f_again", "b_first"):
        assert run.info[probe] == "guarded", (probe, run.describe())
    assert run.info["b_second"] == "covered", run.describe()
    assert run.value("skipped_covered") == 1, run.describe()
    check_no_reports(run)
