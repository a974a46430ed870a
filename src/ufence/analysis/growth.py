"""Leaks judged by growth across snapshots, not by one snapshot.

A program holding a steady cache has many live objects but is not leaking;
a leak is a stack whose live count keeps rising. For every stack seen in any
snapshot we fit a least-squares line to (time, live count) and call it
growing only if all of these hold, so noise and steady state show nothing:

- the slope is positive;
- the count rose in most intervals (more than ``min_fraction`` of them) --
  a single jump (start-up, one burst) is not a trend;
- the count grew by at least ``min_growth`` guarded objects from the first
  snapshot to the last.
"""

from __future__ import annotations

import itertools
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

from ufence.analysis.leaks import Group, LeakReport

DEFAULT_MIN_GROWTH = 3
DEFAULT_MIN_FRACTION = 0.5


@dataclass
class Growing:
    group: Group  # from the last snapshot it appears in (frames, name, ages)
    counts: list[int]  # guarded live objects per snapshot
    bytes: list[int]
    slope_count: float  # guarded objects / s
    slope_bytes: float  # guarded bytes / s
    rises: int  # intervals where the count went up
    est_slope_count: float | None = None  # scaled by the estimate factor
    est_slope_bytes: float | None = None


@dataclass
class GrowthResult:
    times: list[float]  # seconds since the first snapshot
    interval: float
    growing: list[Growing]  # fastest first (by estimated or raw objects/s)
    min_growth: int
    min_fraction: float


def slope(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Least-squares slope of ys over xs (0 when xs do not vary)."""
    n = len(xs)
    if n < 2:
        return 0.0
    mx = sum(xs) / n
    my = sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        return 0.0
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx


def find_growth(reports: Sequence[LeakReport], min_growth: int = DEFAULT_MIN_GROWTH,
                min_fraction: float = DEFAULT_MIN_FRACTION, interval: float = 0.0) -> GrowthResult:
    if len(reports) < 2:
        raise ValueError("growth needs at least two snapshots")
    t0 = reports[0].taken_at or 0.0
    times = [(r.taken_at or 0.0) - t0 for r in reports]
    n = len(reports)
    counts: dict[Hashable, list[int]] = {}
    nbytes: dict[Hashable, list[int]] = {}
    last: dict[Hashable, Group] = {}
    for i, r in enumerate(reports):
        for g in r.groups:
            counts.setdefault(g.key, [0] * n)[i] = g.count
            nbytes.setdefault(g.key, [0] * n)[i] = g.bytes
            last[g.key] = g
    factor = reports[-1].estimate.factor
    growing = []
    for key, cs in counts.items():
        rises = sum(1 for a, b in itertools.pairwise(cs) if b > a)
        if cs[-1] - cs[0] < min_growth or rises <= min_fraction * (n - 1):
            continue
        sc = slope(times, cs)
        if sc <= 0:
            continue
        sb = slope(times, nbytes[key])
        gr = Growing(group=last[key], counts=cs, bytes=nbytes[key], slope_count=sc, slope_bytes=sb, rises=rises)
        if factor is not None:
            gr.est_slope_count = sc * factor
            gr.est_slope_bytes = sb * factor
        growing.append(gr)
    growing.sort(key=lambda g: (-g.slope_count, -g.slope_bytes, g.group.name))
    return GrowthResult(times=times, interval=interval, growing=growing, min_growth=min_growth,
                        min_fraction=min_fraction)
