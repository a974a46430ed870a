"""The objects-file parser over captured files and hand-written variants."""

from __future__ import annotations

import io
import re

import pytest
from kernellib import FIXTURES, fixture_text

from ufence.backends.kernel import objects_parse
from ufence.backends.kernel.objects_parse import SEPARATOR, iter_objects, parse_objects_text, parse_record
from ufence.errors import UfenceError
from ufence.model import ObjectState

CAPTURED = ["objects-after-excerpt.txt", "objects-nohash-excerpt.txt", "objects-ptrval-unused-excerpt.txt"]
HANDWRITTEN = ["objects-5.12-handwritten.txt", "objects-5.14-noago-handwritten.txt",
               "objects-anolis-5.10-handwritten.txt", "objects-anolis-6x-handwritten.txt"]


def _expected_headers(text: str) -> list[int]:
    return [int(m) for m in re.findall(r"^kfence-#(\d+)", text, re.MULTILINE)]


@pytest.mark.parametrize("name", CAPTURED + HANDWRITTEN)
def test_every_record_parsed(name: str) -> None:
    text = fixture_text(name)
    assert text.startswith("#"), "fixtures keep their provenance comment"
    objs = parse_objects_text(text, name)
    assert [o.index for o in objs] == _expected_headers(text)
    for o in objs:
        if o.state is ObjectState.UNUSED:
            assert o.alloc is None and o.size is None
            continue
        assert o.alloc is not None and o.alloc.kind == "allocated"
        assert o.size and o.size > 0
        assert (o.free is not None) == (o.state in (ObjectState.FREED, ObjectState.RCU_FREEING))


@pytest.mark.parametrize("name", CAPTURED + HANDWRITTEN)
def test_fast_path_equals_record_parser(name: str) -> None:
    """The whole-record regex and the line-by-line record parser agree."""
    text = fixture_text(name)
    body = "".join(line for line in text.splitlines(True) if not line.startswith("#"))
    slow = [o for o in (parse_record(r) for r in body.split(SEPARATOR + "\n")) if o is not None]
    assert [o.to_dict() for o in parse_objects_text(text)] == [o.to_dict() for o in slow]


def test_captured_hashed_pointers_and_ago() -> None:
    objs = parse_objects_text(fixture_text("objects-after-excerpt.txt"))
    o = objs[0]
    assert o.hashed and o.start == 0xB182B2EC and o.cache == "kmalloc-1k" and o.size == 768
    assert o.alloc.tid == 1 and o.alloc.cpu == 0
    assert o.alloc.timestamp == pytest.approx(1.301539) and o.alloc.age == pytest.approx(5.086327)
    f = o.alloc.frames[0]
    assert (f.function, f.function_offset, f.function_size, f.module) == ("tty_register_device_attr", 0xA8, 0x230, None)
    mod = [fr for ob in objs if ob.alloc for fr in ob.alloc.frames if fr.module]
    assert mod and all(fr.module == "kq_kfence" for fr in mod)


def test_captured_raw_pointers() -> None:
    objs = parse_objects_text(fixture_text("objects-nohash-excerpt.txt"))
    live = [o for o in objs if o.state is not ObjectState.UNUSED]
    assert live and not any(o.hashed for o in live)
    for o in live:
        assert o.start >= 0xFF00000000000000 and o.end == o.start + o.size - 1


def test_captured_ptrval_and_unused() -> None:
    objs = parse_objects_text(fixture_text("objects-ptrval-unused-excerpt.txt"))
    unused = [o for o in objs if o.state is ObjectState.UNUSED]
    assert unused and objs[3].index == 3 and objs[3].state is ObjectState.UNUSED
    hidden = [o for o in objs if o.state is not ObjectState.UNUSED]
    assert hidden and all(o.start is None and o.end is None and "pointers-hidden" in o.flags for o in hidden)


def test_512_old_header() -> None:
    objs = parse_objects_text(fixture_text("objects-5.12-handwritten.txt"))
    a, u, f = objs
    assert a.state is ObjectState.ALLOCATED and a.cache == "kmalloc-64" and a.size == 64 and a.alloc.tid == 1
    assert a.alloc.cpu is None and a.alloc.timestamp is None
    assert a.alloc.frames[0].function == "__kmalloc" and len(a.alloc.frames) == 6
    assert u.state is ObjectState.UNUSED
    assert f.state is ObjectState.FREED and f.free.tid == 484 and f.free.frames[-1].pc == 0xFFFFFFFFC04C00A6
    assert f.alloc.frames[0].module == "kfence_test"


def test_514_no_ago_no_stack_destroyed() -> None:
    objs = parse_objects_text(fixture_text("objects-5.14-noago-handwritten.txt"))
    assert objs[0].alloc.timestamp == pytest.approx(32.91933) and objs[0].alloc.age is None
    d = objs[1]
    assert d.cache == "<destroyed>" and "cache-destroyed" in d.flags
    assert d.alloc.frames[0].pc == 0xFFFFFFFFC04C00A6 and d.alloc.frames[0].function is None
    assert d.state is ObjectState.FREED and d.free.frames == []
    assert objs[2].state is ObjectState.UNUSED and objs[3].state is ObjectState.FREED


def test_anolis_nodes_areas_double_separators() -> None:
    objs = parse_objects_text(fixture_text("objects-anolis-5.10-handwritten.txt"))
    assert [(o.node, o.index) for o in objs] == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1)]
    page = objs[2]
    assert page.size == 4096 and page.cache == "<destroyed>" and page.alloc.age is None
    assert objs[3].state is ObjectState.FREED and objs[3].free.frames[0].function == "foo_release"


def test_anolis_6x_rcu_freeing() -> None:
    objs = parse_objects_text(fixture_text("objects-anolis-6x-handwritten.txt"))
    assert objs[0].state is ObjectState.RCU_FREEING and objs[0].free.kind == "rcu freeing"
    assert objs[0].index == 131070 and objs[0].node == 0 and objs[1].node == 1 and objs[1].index == 0


def test_streams_across_chunk_boundaries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tiny read chunks cut records anywhere; the result must not change."""
    text = fixture_text("objects-after-excerpt.txt") + fixture_text("objects-anolis-5.10-handwritten.txt")
    text = "".join(line for line in text.splitlines(True) if not line.startswith("#"))
    want = [o.to_dict() for o in parse_objects_text(text)]
    for chunk in (7, 64, 333, 4096):
        monkeypatch.setattr(objects_parse, "_CHUNK", chunk)
        assert [o.to_dict() for o in iter_objects(io.StringIO(text))] == want


def test_binary_mode_crlf_and_cut_utf8(monkeypatch: pytest.MonkeyPatch) -> None:
    """Binary files decode chunk by chunk (a UTF-8 sequence may straddle chunks); CRLF copies parse."""
    text = fixture_text("objects-nohash-excerpt.txt").replace("cache=cred", "cache=cr\u00e9d")
    want = [o.to_dict() for o in parse_objects_text(text)]
    assert any(o["cache"] == "cr\u00e9d" for o in want)
    for chunk in (5, 4096):
        monkeypatch.setattr(objects_parse, "_CHUNK", chunk)
        assert [o.to_dict() for o in iter_objects(io.BytesIO(text.encode()))] == want
        assert [o.to_dict() for o in iter_objects(io.BytesIO(text.replace("\n", "\r\n").encode()))] == want


def test_shared_stack_frames_parsed_once() -> None:
    objs = parse_objects_text(fixture_text("objects-after-excerpt.txt"))
    by_text: dict[tuple[str, ...], list] = {}
    for o in objs:
        if o.alloc and o.alloc.frames:
            by_text.setdefault(tuple(f.key() for f in o.alloc.frames), []).append(o.alloc.frames)
    assert any(len(v) > 1 for v in by_text.values())


@pytest.mark.parametrize("bad,where", [
    ("enabled: 1\ncurrently allocated: 3\n", "objects:1"),
    ("kfence-#0: 0x00000000b182b2ec-0x000000008232aff3, size=768, cache=kmalloc-1k\n\nallocated by task 1 on cp",
     "truncated"),
    ("kfence-#0 unused\n" + SEPARATOR + "\nkfence-#1: garbage\n" + SEPARATOR + "\n", "objects:3"),
    ("kfence-#0: 0x1-0x2, size=8, cache=x\n\nallocated by task 1 on cpu 0 at 1.0s:\n not a frame line\n"
     + SEPARATOR + "\n", "not a stack frame"),
    ("\x00\x01binary\xff" * 100, "objects"),
])
def test_bad_input_one_line_error(bad: str, where: str) -> None:
    with pytest.raises(UfenceError) as e:
        parse_objects_text(bad, "objects")
    msg = str(e.value)
    assert where in msg and "\n" not in msg


def test_fixture_dir_has_every_sample() -> None:
    names = {p.name for p in FIXTURES.iterdir()}
    for n in [*CAPTURED, "dmesg-kfence-reports.txt", "dmesg-kfence-reports-nohash.txt", "stats-at-boot.txt"]:
        assert n in names
