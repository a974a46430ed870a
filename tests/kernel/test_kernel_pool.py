"""Pool sizing against the Anolis rules (kfence-kernel.md 3.2)."""

from __future__ import annotations

import pytest

from ufence.backends.kernel.pool import OBJECTS_PER_AREA, anolis_plan, objects_for_pool, parse_size, pool_bytes
from ufence.errors import UfenceError

GIB = 1 << 30


def test_area_constant() -> None:
    assert OBJECTS_PER_AREA == 131071 == GIB // 4096 // 2 - 1
    assert pool_bytes(OBJECTS_PER_AREA) == GIB  # (nr + 1) * 2 * PAGE_SIZE
    assert pool_bytes(255) == 2 * 1024 * 1024  # upstream default: 2 MiB


def test_one_gib() -> None:
    n = objects_for_pool(parse_size("1G"))
    assert n == 131071
    p = anolis_plan(n, enlarge_at_runtime=True)
    assert (p.objects, p.areas, p.bytes, p.mode) == (131071, 1, GIB, "areas")


def test_ten_gib() -> None:
    n = objects_for_pool(parse_size("10GiB"))
    assert n == 1310710
    p = anolis_plan(n)
    assert (p.objects, p.areas, p.bytes) == (1310710, 10, 10 * GIB)


def test_131070_objects() -> None:
    boot = anolis_plan(131070)  # below one area at boot: upstream mode, one small pool
    assert (boot.objects, boot.areas, boot.bytes, boot.mode) == (131070, 1, 131071 * 2 * 4096, "upstream")
    assert boot.bytes == GIB - 8192
    grown = anolis_plan(131070, enlarge_at_runtime=True)  # enlarged at run time: rounded up to an area
    assert (grown.objects, grown.bytes, grown.mode) == (131071, GIB, "areas")


def test_rounding_up() -> None:
    assert objects_for_pool(parse_size("1.5G")) == 2 * 131071
    assert anolis_plan(131072).objects == 2 * 131071
    assert objects_for_pool(1) == 131071  # anything smaller is still one area in full mode


@pytest.mark.parametrize("text,val", [("1073741824", GIB), ("512M", 512 << 20), ("2t", 2 << 40), ("64KiB", 65536)])
def test_parse_size(text: str, val: int) -> None:
    assert parse_size(text) == val


@pytest.mark.parametrize("text", ["", "ten", "1X", "-1G"])
def test_parse_size_bad(text: str) -> None:
    with pytest.raises(UfenceError):
        parse_size(text)


def test_zero_objects_refused() -> None:
    with pytest.raises(UfenceError, match="at least 1"):
        anolis_plan(0)
