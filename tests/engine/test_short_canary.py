"""The canary checked at free: the cache lines around the object in full mode, the page when sampling.

`canary=auto` (the default) checks, as Anolis KFENCE's full mode does, only
`[ALIGN_DOWN(addr - 1, 64), ALIGN(addr + size + 1, 64))`: a stray write next
to the object is reported at free; one 1000 bytes out in the slack is not.
Sampling, `canary=page` in full mode, checks the whole page and reports both.
A page that carried a short-canary object must not blame the next object on
it for what the short check did not look at.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from enginelib import Run, RunFn

N = 40
SIZE = 24


def strays(run: Run) -> list[int]:
    return [int(ln.split("=", 1)[1], 16) for ln in run.proc.stdout.splitlines() if ln.startswith("stray=")]


def corruption_at(run: Run) -> list[int]:
    assert all(r.bug.value == "memory corruption" for r in run.json), run.describe()
    return [r.address for r in run.json]


def run_slack(prog: Callable[..., Path], run_ufence: RunFn, where: str, *args: str,
              then: tuple[str, ...] = ()) -> Run:
    run = run_ufence([prog("slack.c"), where, str(N), *then], "--set", "dedup_reports=0", *args)
    assert run.rc == 0 and run.value("guarded") == N, run.describe()
    return run


@pytest.mark.parametrize("canary", ["auto", "page", "short"])
def test_write_next_to_the_object_is_reported_at_free(prog: Callable[..., Path], run_ufence: RunFn,
                                                      canary: str) -> None:
    run = run_slack(prog, run_ufence, "near", "--mode", "full", "--set", f"canary={canary}")
    assert run.settings.get("canary") == canary
    assert sorted(corruption_at(run)) == sorted(strays(run)), run.describe()
    for r in run.json:
        assert r.object is not None and r.object.size == SIZE
        assert r.corruption and r.corruption[0].value == ord("x"), r.corruption
        assert r.stack and r.stack[0].function == "release", r.stack


def test_full_mode_checks_only_the_lines_around_the_object(prog: Callable[..., Path], run_ufence: RunFn) -> None:
    run = run_slack(prog, run_ufence, "far", "--mode", "full")
    assert run.json == [] and run.text == [], run.describe()


@pytest.mark.parametrize("mode", [("--mode", "full", "--set", "canary=page"),
                                  ("--mode", "sample", "--sample-rate", "1")], ids=["full-page", "sampling"])
def test_whole_page_check_reports_a_write_far_in_the_slack(prog: Callable[..., Path], run_ufence: RunFn,
                                                           mode: tuple[str, ...]) -> None:
    run = run_slack(prog, run_ufence, "far", *mode)
    got = corruption_at(run)
    assert sorted(got) == sorted(strays(run)), run.describe()
    for r in run.json:
        assert r.object is not None and abs(r.address - r.object.start) > 900, r


def test_page_check_after_short_canary_blames_no_one(prog: Callable[..., Path], run_ufence: RunFn) -> None:
    """Stray bytes the short check let through stay on pages that move to other slots: once the
    check is the whole page again, the next objects there must be checked against fresh canary."""
    run = run_slack(prog, run_ufence, "far", "--mode", "full", then=(sys.executable, "-m", "ufence", "set"))
    assert run.value("set_rc") == 0 and run.value("clean") == N, run.describe()
    assert run.json == [] and run.text == [], run.describe()


def test_growth_in_place_puts_canary_on_the_new_lines(prog: Callable[..., Path], run_ufence: RunFn) -> None:
    run = run_ufence([prog("slack.c"), "realloc", "300"], "--mode", "full", "--pool", "4",
                     "--set", "dedup_reports=0")
    assert run.rc == 0, run.describe()
    assert run.value("grown_in_place") >= 5, run.describe()
    assert run.json == [] and run.text == [], run.describe()
