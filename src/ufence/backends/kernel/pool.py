"""KFENCE pool sizing, upstream and Anolis (kfence-kernel.md 2.2 and 3.2).

Upstream: one pool of ``(num_objects + 1) * 2 * PAGE_SIZE`` bytes (every
object page has a guard page; one extra pair keeps the index math simple).
Anolis splits the pool into areas of at most 131071 objects, each
``(nr + 1) * 2 * PAGE_SIZE`` = exactly 1 GiB when full and 1 GiB aligned.
``num_objects`` below 131071 at boot is "upstream mode" (one small area,
sampling only); at or above it, or when enlarged at run time, it is rounded
up to a whole number of areas ("global"/"node" mode, needed for the
negative-interval full mode).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ufence.errors import UfenceError

PAGE_SIZE = 4096
GIB = 1 << 30
# PUD_SIZE / PAGE_SIZE / 2 - 1 on x86-64 with 4 KiB pages
OBJECTS_PER_AREA = GIB // PAGE_SIZE // 2 - 1  # 131071
DEFAULT_NUM_OBJECTS = 255  # CONFIG_KFENCE_NUM_OBJECTS default


def pool_bytes(num_objects: int, page_size: int = PAGE_SIZE) -> int:
    """Upstream pool size (also one Anolis area of ``num_objects``)."""
    return (num_objects + 1) * 2 * page_size


@dataclass(frozen=True)
class PoolPlan:
    objects: int  # num_objects the kernel will end up using
    areas: int
    bytes: int
    mode: str  # "upstream" (single small area) | "areas" (1 GiB areas)

    def describe(self) -> str:
        size = f"{self.bytes / GIB:g} GiB" if self.bytes >= GIB else f"{self.bytes / (1 << 20):g} MiB"
        if self.mode == "upstream":
            return f"{self.objects} objects in one pool of {size} (upstream mode)"
        return f"{self.objects} objects in {self.areas} x 1 GiB area(s) = {size}"


def anolis_plan(num_objects: int, *, enlarge_at_runtime: bool = False, page_size: int = PAGE_SIZE) -> PoolPlan:
    """What Anolis makes of ``num_objects``.

    Below 131071 at boot the pool is a single upstream-style area; a
    run-time enlargement (or any value >= 131071) rounds up to whole areas.
    """
    if num_objects <= 0:
        raise UfenceError("num_objects must be at least 1 (the kernel rejects 0)")
    per_area = (1 << 30) // page_size // 2 - 1
    if num_objects < per_area and not enlarge_at_runtime:
        return PoolPlan(num_objects, 1, pool_bytes(num_objects, page_size), "upstream")
    areas = -(-num_objects // per_area)
    return PoolPlan(areas * per_area, areas, areas * pool_bytes(per_area, page_size), "areas")


def objects_for_pool(size: int, page_size: int = PAGE_SIZE) -> int:
    """num_objects for a full-mode pool of at least ``size`` bytes (whole 1 GiB areas)."""
    if size <= 0:
        raise UfenceError("pool size must be positive")
    per_area = (1 << 30) // page_size // 2 - 1
    area_bytes = pool_bytes(per_area, page_size)
    return -(-size // area_bytes) * per_area


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b)?\s*$", re.IGNORECASE)


def parse_size(text: str) -> int:
    """``10G``, ``512MiB``, ``1.5g``, ``1073741824`` -> bytes (binary units)."""
    m = _SIZE.match(text)
    if not m:
        raise UfenceError(f"bad size {text!r}: use a number with an optional K/M/G/T suffix, e.g. 10G")
    mult = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}[m[2].lower()]
    return int(float(m[1]) * mult)
