"""KFENCE's text formats rendered from model objects parse as KFENCE's own files do."""

from __future__ import annotations

import re
from pathlib import Path

from ufence.formats.kfence_text import SEPARATOR, pool_warning, render_frame, render_objects, render_stats
from ufence.model import Frame, Object, ObjectState, Stats, Track

SAMPLES = Path("/work/shared/reference/kernel-samples")
STAT_LINE = re.compile(r"^(.*?)\s*:\s*(-?\d+)$")  # the kernel parser's regex (kfence-kernel.md)
HEADER = re.compile(r"^(ufence|kfence)-#(\d+): 0x([0-9a-f]+)-0x([0-9a-f]+), size=(\d+), cache=(\S+)$")
TRACK = re.compile(r"^(allocated|freed) by (thread|task) (\d+)(?: on cpu \d+)?"
                   r" at (\d+\.\d{6})s \((\d+\.\d{6})s ago\):$")


def _stats(**over: int) -> Stats:
    c = {"currently_allocated": 3, "total_allocations": 10, "total_frees": 7, "total_bugs": 1,
         "skipped_incompatible": 2, "skipped_capacity": 0, "skipped_covered": 4, "skipped_filtered": 5}
    c.update(over)
    return Stats(source="process", enabled=True, counters=c, mode="full", pool_objects=4, pool_bytes=40960,
                 extra={"pool_advice": "raise num_objects: ufence set 42 num_objects=N"})


def test_stats_lines_in_kfence_order() -> None:
    text = render_stats(_stats())
    lines = text.splitlines()
    assert lines[:9] == [
        "enabled: 1", "currently allocated: 3", "total allocations: 10", "total frees: 7", "total bugs: 1",
        "skipped allocations (incompatible): 2", "skipped allocations (capacity): 0",
        "skipped allocations (covered): 4", "skipped allocations (filtered): 5",
    ]
    assert "pool capacity: 4 objects" in lines
    assert any(line.startswith("pool memory: 40960 bytes") for line in lines)
    # every counter line parses with the regex used on the kernel's file
    assert all(STAT_LINE.match(line) for line in lines[:9])


def test_kernel_sample_counters_parse_alike() -> None:
    sample = (SAMPLES / "stats-after-6-bugs.txt").read_text().splitlines()
    st = Stats(source="kernel", enabled=True,
               counters={m[1].replace(" ", "_").replace("skipped_allocations_(", "skipped_").rstrip(")"): int(m[2])
                         for line in sample[1:] if (m := STAT_LINE.match(line))})
    assert render_stats(st).splitlines() == sample


def test_pool_warning_names_the_setting() -> None:
    assert pool_warning(_stats(currently_allocated=2)) is None
    w = pool_warning(_stats(currently_allocated=3))
    assert w is not None and "75%" in w and "num_objects" in w
    assert pool_warning(Stats(source="kernel", enabled=True, counters={"currently_allocated": 250},
                              pool_objects=255, extra={"pool_advice": "boot with kfence.num_objects=N"})
                        ) == ("warning: pool 98% full (250 of 255 objects): new allocations go unguarded once it is "
                              "full; boot with kfence.num_objects=N")


def _obj(i: int, state: ObjectState) -> Object:
    frames = [Frame(pc=0x401136, module="/tmp/prog", offset=0x1136, function="main", function_offset=0x1a,
                    function_size=0x80),
              Frame(pc=0x7F00000290, module="/lib/libc.so.6", offset=0x29d90)]
    o = Object(index=i, state=state, start=0x7F3A2C402FF0, end=0x7F3A2C402FFC, size=13, cache="malloc-16",
               alloc=Track(kind="allocated", tid=4242, timestamp=0.001234, age=0.000567, frames=frames))
    if state is ObjectState.FREED:
        o.free = Track(kind="freed", tid=4243, timestamp=0.002, age=0.0001, frames=[])
    return o


def test_objects_format() -> None:
    text = render_objects([_obj(12, ObjectState.ALLOCATED), _obj(13, ObjectState.FREED),
                           Object(index=14, state=ObjectState.UNUSED)])
    blocks = text.split(SEPARATOR + "\n")
    assert blocks[-1] == "" and len(blocks) == 4
    first = blocks[0].splitlines()
    assert first == [
        "ufence-#12: 0x7f3a2c402ff0-0x7f3a2c402ffc, size=13, cache=malloc-16",
        "",
        "allocated by thread 4242 at 0.001234s (0.000567s ago):",
        " main+0x1a/0x80 [prog]",
        " libc.so.6+0x29d90",
    ]
    second = blocks[1].splitlines()
    assert HEADER.match(second[0]) and TRACK.match(second[2])
    assert second[-3:] == ["", "freed by thread 4243 at 0.002000s (0.000100s ago):", " no deallocation stack"]
    assert blocks[2] == "ufence-#14 unused\n"


def test_kernel_prefix_and_hashed_addresses() -> None:
    o = _obj(1, ObjectState.ALLOCATED)
    assert o.alloc is not None
    o.alloc.cpu = 0
    o.alloc.frames = [Frame(function="tty_register_device_attr", function_offset=0xA8, function_size=0x230)]
    text = render_objects([o], prefix="kfence")
    assert text.splitlines()[0] == "kfence-#1: 0x00007f3a2c402ff0-0x00007f3a2c402ffc, size=13, cache=malloc-16"
    assert text.splitlines()[2] == "allocated by task 4242 on cpu 0 at 0.001234s (0.000567s ago):"
    assert text.splitlines()[3] == " tty_register_device_attr+0xa8/0x230"


def test_frame_fallbacks() -> None:
    assert render_frame(Frame(pc=0x10)) == " 0x10"
    assert render_frame(Frame(pc=0x10, module="/usr/lib/libfoo.so", offset=0x1234)) == " libfoo.so+0x1234"
