"""Python mirror of engine/include/ufence/shm.h.

ctypes lays the structs out with the platform C ABI, so the offsets are the
engine's by construction; tests/control/test_layout.py compiles
engine/tools/layout_dump.c and compares every offset and size. Readers locate
sections through the header's offsets and record sizes, never through
sizeof() here, so a newer engine with longer records stays readable.
"""

from __future__ import annotations

import ctypes

MAGIC = b"UFENCE\x01\x00"
VERSION = 1

SETTING_TEXT = 248
MAX_SETTINGS = 64
MSG_LEN = 256
PATH_LEN = 256
COMM_LEN = 32
BUILD_ID_MAX = 32
MAX_STATS = 64
MAX_STACK_DEPTH = 64

# Order is the ABI (UF_STATS in shm.h).
STAT_NAMES: tuple[str, ...] = (
    "currently_allocated",
    "total_allocations",
    "total_frees",
    "total_bugs",
    "skipped_incompatible",
    "skipped_capacity",
    "skipped_covered",
    "skipped_filtered",
    "reports_written",
    "reports_suppressed",
    "depot_stacks",
    "depot_full",
    "pool_slots",
    "pool_reserved_bytes",
    "pool_resident_bytes",
    "metadata_bytes",
    "guard_mechanism",
    "degraded",
    "settings_refused",
    "fork_children",
    "pages_recycled",
    "pages_revoked_batched",
    "reports_deduplicated",
    "modules_rebuilt",
)

DEGRADED_REASONS = {1: "no pool", 2: "no shared memory", 4: "no SIGSEGV handler", 8: "no guard mechanism"}
GUARD_MECHANISMS = {1: "madvise", 2: "mprotect", 3: "uffd"}

SLOT_UNUSED, SLOT_ALLOCATED, SLOT_FREED = 0, 1, 2
SLOT_FLAGS = {1: "reported", 2: "page_alloc", 4: "right", 8: "unprotected", 16: "short_canary"}

_u8, _u16, _u32, _i32, _u64, _i64 = (ctypes.c_uint8, ctypes.c_uint16, ctypes.c_uint32, ctypes.c_int32,
                                      ctypes.c_uint64, ctypes.c_int64)


class Setting(ctypes.Structure):
    _fields_ = [("value", _i64), ("text", ctypes.c_char * SETTING_TEXT)]


class Slot(ctypes.Structure):
    _fields_ = [
        ("seq", _u32), ("state", _u32), ("flags", _u32), ("alloc_stack", _u32),
        ("addr", _u64), ("size", _u64),
        ("alloc_tid", _u32), ("free_tid", _u32), ("free_stack", _u32), ("alloc_cpu", _u32),
        ("alloc_ns", _u64), ("free_ns", _u64),
    ]


class DepotRec(ctypes.Structure):
    """Record header; ``nframes`` uint64 return addresses follow it."""

    _fields_ = [("hash", _u32), ("nframes", _u16), ("reserved", _u16)]


class Module(ctypes.Structure):
    _fields_ = [
        ("base", _u64), ("start", _u64), ("end", _u64),
        ("build_id_len", _u32), ("build_id", _u8 * BUILD_ID_MAX), ("reserved", _u32),
        ("path", ctypes.c_char * PATH_LEN),
    ]


class Header(ctypes.Structure):
    _fields_ = [
        ("magic", ctypes.c_char * 8), ("version", _u32), ("header_size", _u32), ("file_size", _u64),
        ("pid", _u32), ("ppid", _u32), ("uid", _u32), ("page_size", _u32),
        ("proc_starttime", _u64), ("start_realtime_ns", _u64), ("start_monotonic_ns", _u64),
        ("heartbeat_ns", _u64),
        ("comm", ctypes.c_char * COMM_LEN), ("exe", ctypes.c_char * PATH_LEN),
        ("cmdline", ctypes.c_char * PATH_LEN), ("engine_version", ctypes.c_char * 32),
        ("pool_base", _u64), ("pool_reserved_slots", _u64),
        ("settings_count", _u32), ("setting_size", _u32), ("settings_off", _u64), ("request_off", _u64),
        ("request_mask", _u64), ("request_seq", _u32), ("ack_seq", _u32), ("response_status", _i32),
        ("reserved0", _u32), ("response_msg", ctypes.c_char * MSG_LEN),
        ("stats_count", _u32), ("reserved1", _u32), ("stats_off", _u64),
        ("slot_size", _u32), ("reserved2", _u32), ("slots_off", _u64), ("slots_capacity", _u64),
        ("depot_table_off", _u64), ("depot_table_len", _u64), ("depot_arena_off", _u64),
        ("depot_arena_size", _u64), ("depot_arena_used", _u64),
        ("module_size", _u32), ("modules_count", _u32), ("modules_off", _u64),
        ("modules_capacity", _u32), ("modules_seq", _u32),
        ("bugs_seen", _u64), ("report_dir", ctypes.c_char * PATH_LEN),
        ("hot_off", _u64), ("hot_size", _u32), ("control_thread", _u32),
    ]


STRUCTS: dict[str, type[ctypes.Structure]] = {
    "uf_shm_header": Header, "uf_shm_setting": Setting, "uf_shm_slot": Slot,
    "uf_depot_rec": DepotRec, "uf_shm_module": Module,
}


def offsets() -> dict[str, int]:
    """``{"struct.field": offset, "struct": sizeof}`` for comparison with layout_dump."""
    out: dict[str, int] = {}
    for name, st in STRUCTS.items():
        out[name] = ctypes.sizeof(st)
        for fname, *_ in st._fields_:
            out[f"{name}.{fname}"] = getattr(st, fname).offset
    return out


def cstr(raw: bytes) -> str:
    """A NUL-terminated C char array as text (undecodable bytes escaped, never an error)."""
    return raw.split(b"\0", 1)[0].decode("utf-8", "backslashreplace")


def size_class(size: int) -> str:
    """KFENCE-style cache name of a size: malloc-8 .. malloc-4k (the kmalloc classes)."""
    for c in (8, 16, 32, 64, 96, 128, 192, 256, 512, 1024, 2048, 4096):
        if size <= c:
            return f"malloc-{c // 1024}k" if c >= 1024 else f"malloc-{c}"
    return "malloc-large"
