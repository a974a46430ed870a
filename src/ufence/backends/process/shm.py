"""Read (and request changes in) one engine's shared-memory state file.

Reads go through a read-only mapping and never lock against the engine, so
reading never stops or slows the target. Everything the file says about
itself (offsets, counts, record sizes, stack ids) is checked against the
mapping before use: a corrupt, truncated or hostile file gives one
UfenceError, never an exception from deep inside, and never a read outside
the mapping. Slot records are read under their seqlock.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import struct
import time
from collections.abc import Iterator
from pathlib import Path

from ufence.backends.process import layout as L
from ufence.backends.process.rundir import check_file
from ufence.errors import TargetGone, UfenceError

_SEQ_TRIES = 200
_HDR = ctypes.sizeof(L.Header)
# The header as version 1 first shipped ends with report_dir; fields added after it read as 0
# in a file whose header_size says it has not got them (an older engine).
_HDR_MIN = L.Header.report_dir.offset + L.Header.report_dir.size
# struct uf_shm_slot field by field (native order, no padding: every field is naturally aligned),
# in the order of L.Slot._fields_; the tail of a longer (newer) record is skipped.
_SLOT_FMT = "=IIIIQQIIIIQQ"
_SLOT_LEN = struct.calcsize(_SLOT_FMT)
# slots copied per bulk read: short enough that few records change during one copy
_BATCH = 4096

SlotRecord = tuple[int, ...]  # the fields of L.Slot, in order (seq, state, flags, alloc_stack, addr, ...)


class CorruptFile(UfenceError):
    pass


class ShmFile:
    """One ``<pid>.shm``; ``writable`` maps it shared read-write (for change requests)."""

    def __init__(self, path: Path, uid: int, writable: bool = False) -> None:
        self.path = path
        self.uid = uid
        self.writable = writable
        flags = (os.O_RDWR if writable else os.O_RDONLY) | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
        try:
            self.fd = os.open(path, flags)
        except FileNotFoundError:
            raise TargetGone(f"{path} vanished: the process exited and its state was removed") from None
        except PermissionError:
            raise UfenceError(f"{path}: permission denied (the state of another user's process is private)") from None
        except OSError as e:
            raise UfenceError(f"{path}: {e.strerror}") from None
        self.mm: mmap.mmap | None = None
        try:
            check_file(self.fd, path, uid)
            self._map()
        except BaseException:
            self.close()
            raise

    # -- mapping -------------------------------------------------------

    def _map(self) -> None:
        size = os.fstat(self.fd).st_size
        if size < _HDR_MIN:
            raise CorruptFile(f"{self.path}: truncated state file ({size} bytes, header needs {_HDR_MIN})")
        if self.mm is not None:
            self.mm.close()
        prot = mmap.PROT_READ | (mmap.PROT_WRITE if self.writable else 0)
        self.mm = mmap.mmap(self.fd, size, mmap.MAP_SHARED, prot)
        self.size = size

    def close(self) -> None:
        if self.mm is not None:
            self.mm.close()
            self.mm = None
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> ShmFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _bad(self, what: str) -> CorruptFile:
        return CorruptFile(f"{self.path}: corrupt state file: {what}")

    def _check_span(self, what: str, off: int, count: int, rec: int) -> None:
        if off < _HDR_MIN or count < 0 or rec < 0 or off + count * rec > self.size:
            raise self._bad(f"{what} (offset {off}, {count} x {rec} bytes) lies outside the {self.size}-byte file")

    def _u32(self, off: int) -> int:
        assert self.mm is not None
        return int.from_bytes(self.mm[off:off + 4], "little")

    def _u64(self, off: int) -> int:
        assert self.mm is not None
        return int.from_bytes(self.mm[off:off + 8], "little")

    # -- header --------------------------------------------------------

    def header(self) -> L.Header:
        """A validated copy of the header (the mapping is refreshed if the file grew)."""
        assert self.mm is not None
        try:
            if os.fstat(self.fd).st_size != self.size:
                self._map()
        except OSError as e:
            raise UfenceError(f"{self.path}: {e.strerror}") from None
        hs = self._u32(L.Header.header_size.offset)
        n = min(max(hs, _HDR_MIN), _HDR, self.size)  # what this file's header has of ours
        raw = self.mm[:n] + bytes(_HDR - n)
        h = L.Header.from_buffer_copy(raw)
        if self.mm[:8] != L.MAGIC:
            raise self._bad("bad magic (not a ufence state file)")
        if h.version != L.VERSION:
            raise UfenceError(f"{self.path}: state file version {h.version}, this ufence reads {L.VERSION}: "
                              "use the ufence that started the process")
        if h.header_size < _HDR_MIN or h.header_size > self.size:
            raise self._bad(f"header size {h.header_size}")
        if h.file_size > self.size:
            raise self._bad(f"truncated: header says {h.file_size} bytes, file has {self.size}")
        if not 1 <= h.settings_count <= L.MAX_SETTINGS or h.setting_size < ctypes.sizeof(L.Setting):
            raise self._bad(f"settings table ({h.settings_count} x {h.setting_size} bytes)")
        self._check_span("settings", h.settings_off, h.settings_count, h.setting_size)
        self._check_span("requests", h.request_off, h.settings_count, h.setting_size)
        if h.stats_count > L.MAX_STATS:
            raise self._bad(f"{h.stats_count} statistics")
        self._check_span("statistics", h.stats_off, h.stats_count, 8)
        if h.slot_size < ctypes.sizeof(L.Slot):
            raise self._bad(f"slot size {h.slot_size}")
        self._check_span("slots", h.slots_off, h.slots_capacity, h.slot_size)
        self._check_span("depot arena", h.depot_arena_off, 1, h.depot_arena_size)
        if h.module_size < ctypes.sizeof(L.Module) or h.modules_count > h.modules_capacity:
            raise self._bad(f"module table ({h.modules_count}/{h.modules_capacity} x {h.module_size} bytes)")
        self._check_span("modules", h.modules_off, h.modules_capacity, h.module_size)
        if h.page_size == 0 or h.page_size & (h.page_size - 1):
            raise self._bad(f"page size {h.page_size}")
        return h

    # -- sections ------------------------------------------------------

    def settings_raw(self, h: L.Header) -> list[tuple[int, str]]:
        assert self.mm is not None
        out = []
        for i in range(h.settings_count):
            o = h.settings_off + i * h.setting_size
            s = L.Setting.from_buffer_copy(self.mm[o:o + ctypes.sizeof(L.Setting)])
            out.append((s.value, L.cstr(s.text)))
        return out

    def stats_raw(self, h: L.Header) -> list[int]:
        return [self._u64(h.stats_off + 8 * i) for i in range(h.stats_count)]

    def slot(self, h: L.Header, i: int) -> L.Slot | None:
        """Slot ``i`` read consistently under its seqlock; None if it kept changing."""
        assert self.mm is not None
        o = h.slots_off + i * h.slot_size
        n = ctypes.sizeof(L.Slot)
        for _ in range(_SEQ_TRIES):
            s1 = self._u32(o)
            if s1 & 1:
                continue
            data = self.mm[o:o + n]
            if self._u32(o) == s1:
                return L.Slot.from_buffer_copy(data)
        return None

    def slots(self, h: L.Header, count: int) -> Iterator[tuple[int, L.Slot | None]]:
        for i in range(min(count, h.slots_capacity)):
            yield i, self.slot(h, i)

    def slot_batches(self, h: L.Header, count: int) -> Iterator[tuple[int, list[tuple[int, SlotRecord | None]]]]:
        """Slots ``0..count-1`` as field tuples, a batch at a time, each record consistent
        under its seqlock (None: it kept changing); with each batch, the CLOCK_MONOTONIC
        time by which all of its records had been read (for ages).

        One batch is three copies of its part of the slot array: the sequence numbers of
        the first copy were read before the data of the second and those of the third after
        it, so a record whose number is even and the same in the first and third copies was
        not written while its data was copied. Only the others (the engine was writing them)
        are read again one by one. This reads the array at memcpy speed instead of four
        mapping reads and a ctypes copy per slot.
        """
        assert self.mm is not None
        n = min(count, h.slots_capacity)
        size = h.slot_size  # >= _SLOT_LEN, checked by header()
        rec = struct.Struct(f"{_SLOT_FMT}{size - _SLOT_LEN}x")
        seqs = struct.Struct(f"=I{size - 4}x")
        mm = self.mm
        for first in range(0, n, _BATCH):
            k = min(_BATCH, n - first)
            o = h.slots_off + first * size
            before = mm[o:o + k * size]
            data = mm[o:o + k * size]
            after = mm[o:o + k * size]
            now = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
            out: list[tuple[int, SlotRecord | None]] = list(enumerate(rec.iter_unpack(data), first))
            if before != after or any(s & 1 for (s,) in seqs.iter_unpack(before)):
                changed = [j for j, (a, b) in enumerate(zip(seqs.iter_unpack(before), seqs.iter_unpack(after),
                                                            strict=True)) if a != b or a[0] & 1]
                for j in changed:
                    out[j] = (first + j, self.slot_record(h, first + j))
                now = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
            yield now, out

    def slot_record(self, h: L.Header, i: int) -> SlotRecord | None:
        """Slot ``i`` as a field tuple, read under its seqlock; None if it kept changing."""
        assert self.mm is not None
        o = h.slots_off + i * h.slot_size
        for _ in range(_SEQ_TRIES):
            s1 = self._u32(o)
            if s1 & 1:
                continue
            data = self.mm[o:o + _SLOT_LEN]
            if self._u32(o) == s1:
                return struct.unpack(_SLOT_FMT, data)
        return None

    def stack(self, h: L.Header, stack_id: int) -> list[int] | None:
        """Return addresses of depot record ``stack_id``; None if the id points nowhere valid."""
        assert self.mm is not None
        if stack_id == 0:
            return None
        used = min(self._u64(_off("depot_arena_used")), h.depot_arena_size)
        rel = stack_id * 8
        if rel + ctypes.sizeof(L.DepotRec) > used:
            return None
        o = h.depot_arena_off + rel
        rec = L.DepotRec.from_buffer_copy(self.mm[o:o + ctypes.sizeof(L.DepotRec)])
        if rec.nframes > L.MAX_STACK_DEPTH or rel + 8 + 8 * rec.nframes > used:
            return None
        o += ctypes.sizeof(L.DepotRec)
        return [self._u64(o + 8 * k) for k in range(rec.nframes)]

    def modules(self, h: L.Header) -> list[L.Module]:
        """The module table, consistent under its seqlock (empty if it kept changing)."""
        assert self.mm is not None
        seq_off = _off("modules_seq")
        n = ctypes.sizeof(L.Module)
        for _ in range(_SEQ_TRIES):
            s1 = self._u32(seq_off)
            if s1 & 1:
                continue
            count = min(self._u32(_off("modules_count")), h.modules_capacity)
            mods = [L.Module.from_buffer_copy(self.mm[o:o + n])
                    for o in (h.modules_off + i * h.module_size for i in range(count))]
            if self._u32(seq_off) == s1:
                return mods
        return []

    # -- change requests (writable only) -------------------------------

    def field_address(self, name: str) -> int:
        """Address of a header field in our shared mapping (for futex wake)."""
        assert self.mm is not None and self.writable
        return ctypes.addressof(ctypes.c_char.from_buffer(self.mm)) + _off(name)

    def write_request(self, h: L.Header, index: int, value: int, text: str) -> None:
        assert self.mm is not None and self.writable
        o = h.request_off + index * h.setting_size
        raw = text.encode()[: L.SETTING_TEXT - 1]
        self.mm[o:o + 8] = value.to_bytes(8, "little", signed=True)
        self.mm[o + 8:o + 8 + L.SETTING_TEXT] = raw + b"\0" * (L.SETTING_TEXT - len(raw))

    def put_u64(self, name: str, value: int) -> None:
        assert self.mm is not None and self.writable
        o = _off(name)
        self.mm[o:o + 8] = value.to_bytes(8, "little")

    def get(self, name: str) -> int:
        """A live read of one integer header field (not the validated copy)."""
        assert self.mm is not None
        field = getattr(L.Header, name)
        raw = self.mm[field.offset:field.offset + field.size]
        return int.from_bytes(raw, "little", signed=name == "response_status")

    def put_u32(self, name: str, value: int) -> None:
        assert self.mm is not None and self.writable
        o = _off(name)
        self.mm[o:o + 4] = (value & 0xFFFFFFFF).to_bytes(4, "little")

    def response_msg(self) -> str:
        assert self.mm is not None
        o = _off("response_msg")
        return L.cstr(self.mm[o:o + L.MSG_LEN])


def _off(name: str) -> int:
    return int(getattr(L.Header, name).offset)
