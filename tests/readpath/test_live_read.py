"""The bulk, shared-stack reader on a real process under the engine."""

from __future__ import annotations

import ctypes
import json
import os
import struct
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from readpathlib import Held

from ufence.backends.process import layout as L
from ufence.backends.process.backend import ProcessBackend
from ufence.backends.process.shm import ShmFile
from ufence.model import Frame, Object, ObjectState
from ufence.symbolize import symbolize


def _slot_fields(s: L.Slot) -> tuple[int, ...]:
    return tuple(getattr(s, name) for name, *_ in L.Slot._fields_)


def test_bulk_read_equals_slot_by_slot(hold: Callable[..., Held]) -> None:
    t = hold(3000, free_every=7)
    b = ProcessBackend(t.pid)
    try:
        h = b.shm.header()
        count = int(b.counters()["pool_slots"])
        bulk = [(i, rec) for _now, batch in b.shm.slot_batches(h, count) for i, rec in batch]
        one = [(i, None if s is None else _slot_fields(s)) for i, s in b.shm.slots(h, count)]
        assert bulk == one
        live = sum(1 for _i, r in bulk if r and r[1] == L.SLOT_ALLOCATED)
        assert len(bulk) == count and live == b.counters()["currently_allocated"] >= 3000 - (3000 + 6) // 7
    finally:
        b.close()


def _expected_size(names: list[str]) -> set[int] | None:
    """prog.c's sizes per call site (see its comment), from the function names of a stack;
    None for the C library's own allocations (stdio's buffer)."""
    if "deeper" in names:
        return {88 + 8 * names.count("deeper")}
    if "site_b" in names:
        return {56}
    if "site_c" in names:
        return {72}
    if "site_a" in names:
        return {16, 24, 32, 40, 48}
    return None


def test_objects_read_under_churn_are_consistent(hold: Callable[..., Held]) -> None:
    """The target frees and allocates all the time: every object read has the stack of its size,
    and some records were seen changing (so the re-read path ran)."""
    t = hold(20000, churn=True)
    rereads = 0
    orig = ShmFile.slot_record

    def counting(self: ShmFile, h: L.Header, i: int) -> tuple[int, ...] | None:
        nonlocal rereads
        rereads += 1
        return orig(self, h, i)

    b = ProcessBackend(t.pid)
    try:
        ShmFile.slot_record = counting  # type: ignore[method-assign]
        for _ in range(5):
            objs = [o for o in b.objects() if o.state is not ObjectState.UNUSED]
            # objects move between slots while the pool is read (it is not locked), so the
            # count is only about right
            live = [o for o in objs if o.state is ObjectState.ALLOCATED]
            assert t.n // 2 < len(live) < 2 * t.n
            if rereads:
                break
    finally:
        ShmFile.slot_record = orig  # type: ignore[method-assign]
        b.close()
    assert rereads > 0
    symbolize(f for o in objs for tr in (o.alloc, o.free) if tr for f in tr.frames)
    libc = 0
    for o in objs:
        assert o.alloc is not None and o.alloc.frames and o.size is not None
        want = _expected_size([f.function or "" for f in o.alloc.frames])
        libc += want is None
        assert want is None or o.size in want, o
        assert o.alloc.age is None or o.alloc.age >= 0
        assert o.alloc.timestamp is not None and o.alloc.timestamp >= 0
        if o.state is ObjectState.FREED:
            assert o.free is not None and o.free.frames and o.free.stack_id
    assert libc <= 2


def test_tracks_of_one_stack_share_frames(hold: Callable[..., Held]) -> None:
    t = hold(4000, free_every=5)
    b = ProcessBackend(t.pid)
    try:
        objs = [o for o in b.objects() if o.alloc is not None]
    finally:
        b.close()
    by_id: dict[int, list[Frame]] = {}
    by_pc: dict[int, Frame] = {}
    for o in objs:
        assert o.alloc is not None and o.alloc.stack_id is not None
        assert by_id.setdefault(o.alloc.stack_id, o.alloc.frames) is o.alloc.frames
        for f in o.alloc.frames:
            assert f.pc is not None and by_pc.setdefault(f.pc, f) is f
    assert len(by_id) < 20 < len(objs)
    # filling the shared frames once shows in every track
    symbolize(f for fr in by_id.values() for f in fr)
    ours = [o for o in objs if o.alloc and o.alloc.frames[0].function in ("site_a", "site_b", "site_c")]
    assert len(ours) >= len(objs) - 2  # all but stdio's buffer
    assert all(o.flags == [] or o.flags is not objs[0].flags for o in objs[1:])


def test_cli_objects_json_matches_backend(hold: Callable[..., Held]) -> None:
    t = hold(2000, free_every=3)
    out = subprocess.run([sys.executable, "-m", "ufence", "objects", str(t.pid), "--json", "--no-symbolize"],
                         capture_output=True, text=True, timeout=120, check=True,
                         env=dict(os.environ, UFENCE_RUN_DIR=str(t.run_dir))).stdout
    got = [json.loads(line) for line in out.splitlines()]
    b = ProcessBackend(t.pid)
    try:
        want = [o.to_dict() for o in b.objects() if o.state is not ObjectState.UNUSED]
    finally:
        b.close()
    strip = lambda d: {k: v for k, v in d.items() if k not in ("alloc", "free")} | {  # noqa: E731
        k: {kk: vv for kk, vv in d[k].items() if kk != "age"} for k in ("alloc", "free") if k in d}
    assert [strip(d) for d in got] == [strip(d) for d in want]
    assert [Object.from_dict(d).to_dict() for d in got] == got


def test_header_of_an_older_engine_reads(hold: Callable[..., Held], tmp_path: Path) -> None:
    """A file whose header_size predates fields this reader knows reads with those fields 0."""
    from ufence.backends.process import shm as shm_mod

    t = hold(100)
    src = t.run_dir / f"{t.pid}.shm"
    data = bytearray(src.read_bytes())
    old = shm_mod._HDR_MIN
    struct.pack_into("=I", data, L.Header.header_size.offset, old)
    data[old:ctypes.sizeof(L.Header)] = bytes(ctypes.sizeof(L.Header) - old)  # as an older engine leaves it
    copy = tmp_path / "old.shm"
    copy.write_bytes(bytes(data))
    copy.chmod(0o600)
    with ShmFile(copy, os.geteuid()) as f:
        h = f.header()
        assert h.header_size == old and h.pid == t.pid
        assert bytes(h)[old:] == bytes(ctypes.sizeof(L.Header) - old)
        count = int(f.stats_raw(h)[L.STAT_NAMES.index("pool_slots")])
        assert sum(1 for _n, b in f.slot_batches(h, count) for _i, r in b if r and r[1] == L.SLOT_ALLOCATED) >= 100
