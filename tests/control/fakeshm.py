"""Build state files by hand, byte for byte, for the reader's hostile-input tests.

Only the reader's defences are tested with these: every behaviour of the
engine itself is tested against the real engine.
"""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

from ufence.backends.process import layout as L
from ufence.settings import table


def starttime(pid: int) -> int:
    data = Path(f"/proc/{pid}/stat").read_bytes()
    return int(data[data.rfind(b")") + 2:].split()[19])


def build(pid: int, slots: int = 4, stack: tuple[int, ...] = (0x401000, 0x7F0000001234)) -> bytearray:
    """A valid file for ``pid``: two used slots sharing one stack, one module (a fake /bin/prog)."""
    hs, ss, sl, md = (ctypes.sizeof(t) for t in (L.Header, L.Setting, L.Slot, L.Module))
    ntab = len(table())
    off = hs
    settings_off = off
    off += ntab * ss
    request_off = off
    off += ntab * ss
    stats_off = off
    off += 8 * len(L.STAT_NAMES)
    slots_off = off
    off += slots * sl
    table_off = off
    off += 4 * 16
    arena_off = off
    arena_size = 1024
    off += arena_size
    modules_off = off
    off += 4 * md
    size = off
    buf = bytearray(size)
    h = L.Header.from_buffer(buf)
    h.magic = L.MAGIC
    h.version, h.header_size, h.file_size = L.VERSION, hs, size
    h.pid, h.ppid, h.uid, h.page_size = pid, 1, os.geteuid(), 4096
    h.proc_starttime = starttime(pid)
    h.start_monotonic_ns = 1_000_000_000
    h.comm, h.exe, h.cmdline = b"fake", b"/bin/prog", b"prog --fake"
    h.settings_count, h.setting_size, h.settings_off, h.request_off = ntab, ss, settings_off, request_off
    h.stats_count, h.stats_off = len(L.STAT_NAMES), stats_off
    h.slot_size, h.slots_off, h.slots_capacity = sl, slots_off, slots
    h.depot_table_off, h.depot_table_len = table_off, 16
    h.depot_arena_off, h.depot_arena_size = arena_off, arena_size
    h.module_size, h.modules_count, h.modules_off, h.modules_capacity = md, 1, modules_off, 4
    for s in table():
        st = L.Setting.from_buffer(buf, settings_off + s.index * ss)
        st.text = s.default.encode()
    stats = dict.fromkeys(L.STAT_NAMES, 0) | {"currently_allocated": 1, "total_allocations": 2, "total_frees": 1,
                                              "pool_slots": slots, "pool_reserved_bytes": (2 * slots + 2) * 4096}
    for i, name in enumerate(L.STAT_NAMES):
        ctypes.c_uint64.from_buffer(buf, stats_off + 8 * i).value = stats[name]
    # depot record at arena offset 8 -> stack id 1
    rec = L.DepotRec.from_buffer(buf, arena_off + 8)
    rec.nframes = len(stack)
    for k, pc in enumerate(stack):
        ctypes.c_uint64.from_buffer(buf, arena_off + 16 + 8 * k).value = pc
    h.depot_arena_used = 16 + 8 * len(stack)
    for i, state in ((0, L.SLOT_ALLOCATED), (1, L.SLOT_FREED)):
        s = L.Slot.from_buffer(buf, slots_off + i * sl)
        s.state, s.addr, s.size = state, 0x10000000 + 0x2000 * i + 0x10, 13 + i
        s.alloc_tid, s.alloc_stack, s.alloc_ns = 100 + i, 1, 1_500_000_000
        if state == L.SLOT_FREED:
            s.free_tid, s.free_stack, s.free_ns = 200, 1, 1_750_000_000
    m = L.Module.from_buffer(buf, modules_off)
    m.base, m.start, m.end, m.path = 0, 0x400000, 0x500000, b"/bin/prog"
    m.build_id_len = 4
    m.build_id[:4] = [0xDE, 0xAD, 0xBE, 0xEF]
    return buf


def header(buf: bytearray) -> L.Header:
    return L.Header.from_buffer(buf)


def write(run_dir: Path, pid: int, buf: bytes | bytearray, mode: int = 0o600) -> Path:
    run_dir.mkdir(mode=0o700, exist_ok=True)
    os.chmod(run_dir, 0o700)
    p = run_dir / f"{pid}.shm"
    p.write_bytes(bytes(buf))
    os.chmod(p, mode)
    return p
