"""A small, fully known leak report: model objects -> ufence.analysis.leaks.analyse.

Two user sites below malloc (one with an inlined caller), one kernel-style
stack without module, a name with characters every format must escape.
The format tests check each output against these totals; the real-engine
tests (tests/leaks) check the same formats against a live program.
"""

from __future__ import annotations

from ufence.analysis.leaks import LeakReport, analyse
from ufence.model import Frame, Object, ObjectState, Snapshot, Stats, Track

PROG = "/opt/app/bin/app"
BUILD_ID = "0123456789abcdef0123456789abcdef01234567"
WEIRD = 'odd"name\\with;semi<&>'


def _f(fn: str | None, off: int, line: int | None = None, inlined: list[Frame] | None = None,
       module: str | None = PROG) -> Frame:
    return Frame(pc=0x555500000000 + off if module else None, module=module, offset=off if module else None,
                 build_id=BUILD_ID if module == PROG else None, function=fn,
                 file="app.c" if line else None, line=line, inlined=inlined or [])


MALLOC = Frame(pc=0x7F0000010000, module="/usr/lib/libufence.so", offset=0x10000, function="malloc")
STACKS = {
    1: [MALLOC, _f("site_a", 0x1100, 10), _f("main", 0x1200, 50)],
    2: [MALLOC, _f("helper", 0x1300, 20, inlined=[_f("site_b", 0x1300, 30)]), _f("main", 0x1210, 51)],
    3: [_f("kmalloc_trace", 0, module=None), _f(WEIRD, 0, module=None), _f("do_one_initcall", 0, module=None)],
}
# (stack, count, size)
LAYOUT = ((1, 30, 24), (2, 10, 200), (3, 5, 64))
FACTOR = 4


def synthetic_objects() -> list[Object]:
    objs = []
    i = 0
    for sid, n, size in LAYOUT:
        for k in range(n):
            objs.append(Object(index=i, state=ObjectState.ALLOCATED, size=size,
                               alloc=Track("allocated", tid=1, age=5.0 + k, frames=STACKS[sid], stack_id=sid)))
            i += 1
    objs.append(Object(index=i, state=ObjectState.FREED, size=8,
                       alloc=Track("allocated", age=9.0, frames=STACKS[1], stack_id=1)))
    objs.append(Object(index=i + 1, state=ObjectState.UNUSED))
    return objs


def synthetic_report() -> LeakReport:
    snap = Snapshot(source="process", target="4242", taken_at=1_700_000_000.0, objects=synthetic_objects(),
                    stats=Stats(source="process", enabled=True, mode="sample",
                                counters={"currently_allocated": 45, "total_allocations": 100, "total_frees": 55}),
                    modules=[{"path": PROG, "start": 0x555500000000, "end": 0x555500010000,
                              "base": 0x555500000000, "build_id": BUILD_ID}],
                    sampling={"mode": "sample", "sample_rate": FACTOR, "sample_interval": 0})
    return analyse(snap, min_age=1.0, symbolize=False)


def expected_totals() -> tuple[int, int]:
    """(estimated objects, estimated bytes) of the report."""
    return (sum(n for _, n, _ in LAYOUT) * FACTOR, sum(n * s for _, n, s in LAYOUT) * FACTOR)
