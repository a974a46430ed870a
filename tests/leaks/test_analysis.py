"""Grouping, naming, ages, estimates and growth on model objects (no process needed)."""

from __future__ import annotations

import pytest

from ufence.analysis.estimate import estimate_for
from ufence.analysis.growth import find_growth, is_growing, slope
from ufence.analysis.leaks import AGE_BUCKETS, age_stats, analyse, group_objects, rank
from ufence.analysis.naming import group_name, is_allocator
from ufence.model import Frame, Object, ObjectState, Snapshot, Stats, Track


def obj(i: int, frames: list[Frame], size: int = 16, age: float | None = 10.0, sid: int | None = None,
        state: ObjectState = ObjectState.ALLOCATED) -> Object:
    return Object(index=i, state=state, size=size,
                  alloc=Track("allocated", age=age, frames=list(frames), stack_id=sid))


def fr(name: str, off: int = 0) -> Frame:
    return Frame(function=name, function_offset=off)


def snap(objects: list[Object], taken_at: float = 0.0, **sampling: object) -> Snapshot:
    return Snapshot(source="process", target="1", taken_at=taken_at, objects=objects, sampling=dict(sampling))


def test_groups_by_stack_id_else_by_frames() -> None:
    a = [fr("malloc"), fr("a")]
    b = [fr("malloc"), fr("b")]
    objs = [obj(0, a, sid=7), obj(1, a, sid=7), obj(2, b), obj(3, b), obj(4, b),
            obj(5, [fr("malloc"), fr("b", 0x10)]),  # another call site in b: another stack
            obj(6, a, state=ObjectState.FREED), Object(index=7, state=ObjectState.UNUSED)]
    groups, totals = group_objects(objs, min_age=0)
    counts = sorted((g.count, g.stack_id) for g in groups)
    assert counts == [(1, None), (2, 7), (3, None)]
    assert totals.live == 6 and totals.count == 6 and totals.bytes == 96


def test_min_age_hides_young_and_keeps_unknown() -> None:
    f = [fr("x")]
    objs = [obj(0, f, age=0.2), obj(1, f, age=0.99), obj(2, f, age=1.0), obj(3, f, age=None)]
    groups, t = group_objects(objs, min_age=1.0)
    assert t.hidden_young == 2 and t.count == 2 and t.unknown_age == 1
    assert groups[0].age.known == 1 and groups[0].age.min == 1.0


def test_age_stats_percentiles_and_buckets() -> None:
    a = age_stats([0.5, 5, 50, 500, 5000, 7])
    assert (a.min, a.p50, a.max) == (0.5, 7 + (50 - 7) / 2, 5000)
    assert a.histogram == [1, 2, 1, 1, 0, 1] and len(a.histogram) == len(AGE_BUCKETS)
    assert age_stats([]).p50 is None


def test_rank_by_count_and_bytes() -> None:
    objs = [obj(i, [fr("many")], size=8, sid=1) for i in range(5)] + [obj(9, [fr("big")], size=1000, sid=2)]
    groups, _ = group_objects(objs, 0)
    for g in groups:
        g.name = group_name(g.frames)
    assert [g.name for g in rank(groups, "count")] == ["many", "big"]
    assert [g.name for g in rank(groups, "bytes")] == ["big", "many"]
    assert {g.name: (g.rank_count, g.rank_bytes) for g in groups} == {"many": (1, 2), "big": (2, 1)}


@pytest.mark.parametrize("frames, name", [
    (["malloc", "leak_here", "main"], "leak_here"),
    (["operator new(unsigned long)", "_Znwm", "Foo::make", "main"], "Foo::make"),
    (["kmalloc_trace_noprof", "__kmalloc_cache_noprof", "kq_leak", "do_one_initcall"], "kq_leak"),
    (["kmem_cache_alloc_noprof", "__d_alloc", "d_alloc"], "__d_alloc"),
    (["strdup", "parse_name"], "parse_name"),
    (["PyObject_Malloc", "_PyObject_GC_Alloc", "list_append"], "list_append"),
    (["__rust_alloc", "alloc::raw_vec::finish_grow", "app::run"], "app::run"),
    (["malloc"], "malloc"),  # nothing but the allocator: name it anyway
])
def test_group_names_skip_allocator_frames(frames: list[str], name: str) -> None:
    assert group_name([fr(n) for n in frames]) == name


def test_engine_module_frames_are_allocator_frames() -> None:
    assert is_allocator(Frame(pc=1, module="/opt/ufence/_engine/libufence.so", offset=1))
    assert not is_allocator(Frame(pc=1, module="/usr/bin/app", offset=1))
    assert group_name([Frame(pc=0x1000, module="/lib/libufence.so", offset=0x10),
                       Frame(pc=0x2000, module="/usr/bin/app", offset=0x20)]) == "app+0x20"


def test_estimates() -> None:
    full = estimate_for(snap([], mode="full", sample_interval=-1))
    assert (full.kind, full.factor) == ("exact", 1.0)
    count = estimate_for(snap([], mode="sample", sample_rate=50, sample_interval=0))
    assert (count.kind, count.factor, count.mode) == ("estimated", 50.0, "count")
    timed = estimate_for(snap([], mode="sample", sample_interval=100, sample_rate=0))
    assert timed.kind == "unavailable" and "unavailable" in timed.note
    s = snap([], mode="sample", sample_interval=100)
    s.stats = Stats(source="process", enabled=True, counters={"total_allocations": 20, "seen_allocations": 5000})
    assert estimate_for(s).factor == 250.0
    s2 = snap([], mode="full", sample_interval=-1)
    s2.stats = Stats(source="process", enabled=True, counters={"skipped_capacity": 12})
    e = estimate_for(s2)
    assert not e.exact and "pool was full" in e.describe() and e.kind == "estimated"
    assert estimate_for(snap([])).kind == "unavailable"
    kernel = Snapshot(source="kernel", target="kernel", taken_at=0, objects=[],
                      sampling={"mode": "sample", "interval_ms": 100})
    assert estimate_for(kernel).kind == "unavailable" and estimate_for(kernel).sample_interval == 100


def test_analyse_scales_by_the_sampling_rate() -> None:
    objs = [obj(i, [fr("malloc"), fr("site")], size=10, sid=3) for i in range(7)]
    r = analyse(snap(objs, mode="sample", sample_rate=8), min_age=1, symbolize=False)
    g = r.groups[0]
    assert (g.name, g.count, g.est_count, g.est_bytes) == ("site", 7, 56, 560)
    assert (r.totals.est_count, r.totals.est_bytes) == (56, 560)


def _series(counts: dict[str, list[int]], dt: float = 1.0) -> list[Snapshot]:
    snaps = []
    n = len(next(iter(counts.values())))
    for i in range(n):
        objs = []
        for sid, (name, cs) in enumerate(counts.items(), 1):
            objs += [obj(len(objs), [fr("malloc"), fr(name)], sid=sid) for _ in range(cs[i])]
        snaps.append(snap(objs, taken_at=100 + i * dt, mode="full"))
    return snaps


def test_growth_reports_growing_stacks_only() -> None:
    snaps = _series({
        "leaky": [10, 30, 50, 70, 90, 110],
        "plateau": [100, 100, 100, 100, 100, 100],
        "filled_up": [0, 150, 300, 300, 300, 300],  # rose to a cache size during the window
        "jitter": [200, 204, 199, 205, 201, 206],
        "one_jump": [5, 5, 5, 5, 5, 60],
    }, dt=2.0)
    reports = [analyse(s, min_age=0, symbolize=False) for s in snaps]
    g = find_growth(reports)
    assert [x.group.name for x in g.growing] == ["leaky"]
    x = g.growing[0]
    assert x.slope_count == pytest.approx(10.0) and x.slope_bytes == pytest.approx(160.0)
    assert x.counts == [10, 30, 50, 70, 90, 110] and x.rises == 5 and g.times[-1] == 10.0


def test_steady_state_shows_nothing() -> None:
    reports = [analyse(s, min_age=0, symbolize=False) for s in _series({"steady": [50] * 5})]
    assert find_growth(reports).growing == []


def test_slope_and_is_growing_edges() -> None:
    assert slope([0, 1, 2], [1, 3, 5]) == pytest.approx(2)
    assert slope([1, 1], [0, 5]) == 0
    assert is_growing([0, 1], [0, 10])
    assert not is_growing([0, 1], [0, 2])  # below min_growth
    with pytest.raises(ValueError):
        find_growth([analyse(snap([]), symbolize=False)])
