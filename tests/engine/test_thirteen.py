"""One byte past a 13-byte allocation is reported in every run under --mode full.

Where it is caught depends on placement: with align=precise a right-placed
object ends at its guard page, so the write faults at once; otherwise the
byte lands in the canary (left placement, or the alignment gap) and is found
at free, or at exit for an object never freed (check_on_exit).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from checks import Expect, check_one_report
from enginelib import RunFn

RUNS = 20


@pytest.mark.slow
@pytest.mark.parametrize("align", ["default", "precise"])
@pytest.mark.parametrize("variant", ["free", "leak"])
def test_thirteen_byte_overflow_always_reported(prog: Callable[..., Path], run_ufence: RunFn, align: str,
                                                variant: str) -> None:
    exe = prog("thirteen.c")
    where: dict[str, int] = {}
    for _ in range(RUNS):
        run = run_ufence([exe, variant], "--mode", "full", "--align", align)
        assert run.rc == 0 and run.value("guarded") == 1, run.describe()
        assert run.settings.get("align") == align
        buf = run.value("buf")
        right_at_edge = (buf + 13) % 4096 == 0
        if right_at_edge:  # only possible with precise alignment
            assert align == "precise", hex(buf)
            check_one_report(run, exe, Expect("out-of-bounds", "write_past", buf + 13, "write", buf, 13, "right",
                                              alloc_by=("main",), caller="main"))
            where["fault"] = where.get("fault", 0) + 1
            continue
        if align == "default":
            assert buf % 16 == 0, f"default alignment is 16 bytes: {buf:#x}"
        if variant == "free":
            # the canary after the object: 0x78 ('x'), then intact bytes up to 16 or the page end
            n = min(16, 4096 - (buf + 13) % 4096)
            check_one_report(run, exe, Expect("memory corruption", "release", buf + 13, None, buf, 13,
                                              corruption=(0x78,) + (None,) * (n - 1), alloc_by=("main",),
                                              caller="main"))
            where["free"] = where.get("free", 0) + 1
        else:
            assert len(run.json) == 1 and len(run.text) == 1, run.describe()
            j = run.json[0]
            assert j.bug.value == "memory corruption" and j.address == buf + 13, run.describe()
            assert j.corruption and j.corruption[0].value == 0x78
            assert j.object is not None and j.object.size == 13 and j.object.start == buf
            assert run.text[0].access.startswith(f"Corrupted memory at {buf + 13:#x} [ 0x78 ")
            where["exit"] = where.get("exit", 0) + 1
    print(f"align={align} variant={variant}: {where}")
    if align == "precise":
        assert where.get("fault", 0) > 0, f"no right placement in {RUNS} runs: {where}"
