"""Leaks judged by growth across snapshots, not by one snapshot.

A program holding a steady cache has many live objects but is not leaking;
a leak is a stack whose live count keeps rising. For every stack seen in any
snapshot we fit a least-squares line to (time, live count) and call it
growing only if all of these hold, so noise and steady state show nothing:

- the slope is positive;
- the count rose in most intervals (more than ``min_fraction`` of them) --
  a single jump (start-up, one burst) is not a trend;
- the count grew by at least ``min_growth`` guarded objects from the first
  snapshot to the last, and by at least ``MIN_REL`` of its first count (a
  stack holding thousands of objects jitters by more than a few);
- it still grows in the second half of the window, at no less than
  ``LATE_RATIO`` of the overall rate: a stack that rose to a plateau during
  the window (start-up, a cache filling, objects ageing past --min-age) has a
  steep start and a flat end;
- with 4+ snapshots, the slope stands out of the scatter around the line
  (t statistic >= ``MIN_T``), so a random walk of a steady count is not a trend.
"""

from __future__ import annotations

import itertools
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

from ufence.analysis.leaks import Group, LeakReport

DEFAULT_MIN_GROWTH = 3
DEFAULT_MIN_FRACTION = 0.5
LATE_RATIO = 0.3
MIN_T = 3.0
MIN_REL = 0.05


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


def t_statistic(xs: Sequence[float], ys: Sequence[float], b: float) -> float:
    """Slope / its standard error (inf for a perfect line)."""
    n = len(xs)
    mx = sum(xs) / n
    my = sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    rss = sum((y - (my + b * (x - mx))) ** 2 for x, y in zip(xs, ys, strict=True))
    if n < 3 or sxx == 0:
        return 0.0
    if rss <= 1e-12:
        return float("inf")
    se = (rss / (n - 2) / sxx) ** 0.5
    return b / se


def is_growing(times: Sequence[float], counts: Sequence[int], min_growth: int = DEFAULT_MIN_GROWTH,
               min_fraction: float = DEFAULT_MIN_FRACTION) -> bool:
    n = len(counts)
    rises = sum(1 for a, b in itertools.pairwise(counts) if b > a)
    growth = counts[-1] - counts[0]
    if growth < min_growth or growth < MIN_REL * counts[0] or rises <= min_fraction * (n - 1):
        return False
    sc = slope(times, counts)
    if sc <= 0:
        return False
    if n >= 3:
        h = (n - 1) // 2  # the later half, including the middle point
        if slope(times[h:], counts[h:]) < LATE_RATIO * sc:
            return False
    return not (n >= 4 and t_statistic(times, counts, sc) < MIN_T)


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
        if not is_growing(times, cs, min_growth, min_fraction):
            continue
        rises = sum(1 for a, b in itertools.pairwise(cs) if b > a)
        sc = slope(times, cs)
        sb = slope(times, nbytes[key])
        gr = Growing(group=last[key], counts=cs, bytes=nbytes[key], slope_count=sc, slope_bytes=sb, rises=rises)
        if factor is not None:
            gr.est_slope_count = sc * factor
            gr.est_slope_bytes = sb * factor
        growing.append(gr)
    growing.sort(key=lambda g: (-g.slope_count, -g.slope_bytes, g.group.name))
    return GrowthResult(times=times, interval=interval, growing=growing, min_growth=min_growth,
                        min_fraction=min_fraction)
