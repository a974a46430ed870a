"""Stats parsing: upstream 5.12-5.15, 5.16+/6.x (captured) and both Anolis paddings."""

from __future__ import annotations

import pytest
from kernellib import fixture_text

from ufence.backends.kernel.stats_parse import parse_stats
from ufence.errors import UfenceError
from ufence.model import STAT_KEYS


def test_captured_6x() -> None:
    st = parse_stats(fixture_text("stats-after-6-bugs.txt"))
    assert st.enabled and not st.anolis and not st.nodes
    assert st.counters == {"currently_allocated": 94, "total_allocations": 265, "total_frees": 171,
                           "zombie_allocations": 0, "total_bugs": 6, "skipped_incompatible": 10,
                           "skipped_capacity": 0, "skipped_covered": 0}
    assert set(st.counters) <= set(STAT_KEYS)


def test_captured_boot_consistent() -> None:
    st = parse_stats(fixture_text("stats-at-boot.txt"))
    c = st.counters
    assert c["currently_allocated"] == c["total_allocations"] - c["total_frees"] == 88


def test_512_five_counters() -> None:
    st = parse_stats(fixture_text("stats-5.12-handwritten.txt"))
    assert list(st.counters) == ["currently_allocated", "total_allocations", "total_frees", "zombie_allocations",
                                 "total_bugs"]
    assert st.counters["total_bugs"] == 1


def test_anolis_510_padding_and_node_table() -> None:
    st = parse_stats(fixture_text("stats-anolis-5.10-handwritten.txt"))
    c = st.counters
    assert st.anolis
    assert c["currently_slab_allocated"] == 100000 and c["currently_page_allocated"] == 96000
    assert c["currently_allocated"] == 196000
    assert c["total_allocations"] == 2500000 + 700000 and c["total_frees"] == 2400000 + 604000
    assert c["zombie_allocations"] == 3 and c["total_bugs"] == 2
    assert [(n.node, n.objects, n.bytes) for n in st.nodes] == [(0, 131071, 1 << 30), (1, 131071, 1 << 30)]
    assert st.labels["currently_slab_allocated"] == "currently slab allocated"


def test_anolis_6x_padding_skipped_and_mb() -> None:
    st = parse_stats(fixture_text("stats-anolis-6x-handwritten.txt"))
    c = st.counters
    assert c["skipped_capacity"] == 340 and c["skipped_covered"] == 7 and c["skipped_incompatible"] == 12
    assert c["currently_allocated"] == 200 and c["total_allocations"] == 9700
    assert [(n.node, n.objects, n.bytes) for n in st.nodes] == [(0, 255, 2 << 20)]


@pytest.mark.parametrize("text,part", [
    ("", "no 'enabled:'"),
    ("currently allocated: 3\n", "expected 'enabled: N' first"),
    ("enabled: 1\ncurrently allocated: three\n", "stats:2"),
    ("enabled: 1\n\nnode\tobject_size\tpool_size\n0 x y\n", "pool table"),
    ("kfence-#0 unused\n", "stats:1"),
])
def test_bad_stats(text: str, part: str) -> None:
    with pytest.raises(UfenceError) as e:
        parse_stats(text, "stats")
    assert part in str(e.value) and "\n" not in str(e.value)
