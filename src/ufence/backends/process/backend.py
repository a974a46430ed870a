"""ProcessBackend: the Backend protocol over one engine's state file."""

from __future__ import annotations

import ctypes
import errno
import fcntl
import gc
import json
import os
import platform
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ufence import settings as S
from ufence.backends.process import layout as L
from ufence.backends.process.rundir import alive, locate
from ufence.backends.process.shm import ShmFile, SlotRecord
from ufence.errors import TargetGone, UfenceError
from ufence.model import Frame, Object, ObjectState, Report, Snapshot, Stats, Track

ACK_TIMEOUT = 1.0
_FUTEX_WAKE = 1
_SYS_FUTEX = {"x86_64": 202, "aarch64": 98, "arm64": 98}

_STATE = {L.SLOT_UNUSED: ObjectState.UNUSED, L.SLOT_ALLOCATED: ObjectState.ALLOCATED, L.SLOT_FREED: ObjectState.FREED}


def mode_of(sample_interval: int) -> str:
    return "full" if sample_interval < 0 else "off" if sample_interval == 0 else "sample"


def _futex_wake(addr: int) -> None:
    """Wake the engine's control thread waiting on request_seq (shared futex: no PRIVATE flag)."""
    nr = _SYS_FUTEX.get(platform.machine())
    if nr is None:
        return  # the control thread also polls; the change just takes a little longer
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    libc.syscall(ctypes.c_long(nr), ctypes.c_void_p(addr), ctypes.c_int(_FUTEX_WAKE), ctypes.c_int(1),
                 None, None, ctypes.c_int(0))


def _wake(w: ShmFile, h: L.Header) -> bool:
    """Set the wake word of the engine's hot page, so that its next allocation applies the request
    (an engine in off mode, or sampling a single-threaded program, runs no control thread to wake). False if
    the file has no hot page."""
    size = os.fstat(w.fd).st_size
    off = h.hot_off if h.header_size >= ctypes.sizeof(L.Header) else 0
    if not off or off % 4096 or off + 8 > size:
        return False
    assert w.mm is not None
    ctypes.c_uint32.from_buffer(w.mm, off + 4).value = 1  # one aligned 32-bit store
    return True


class ProcessBackend:
    name = "process"
    last_set_queued = False  # set(): not yet applied; the target's next allocation applies it

    def __init__(self, pid: int, path: Path | None = None, uid: int | None = None) -> None:
        self.pid = pid
        if path is None:
            path, uid = locate(pid)
        self.path = path
        self.uid = os.geteuid() if uid is None else uid
        self.shm = ShmFile(path, self.uid)
        self.hdr = self.shm.header()
        if self.hdr.pid != pid:
            raise UfenceError(f"{path}: file is for pid {self.hdr.pid}, not {pid}")

    def close(self) -> None:
        self.shm.close()

    # -- identity --------------------------------------------------------

    def alive(self) -> bool:
        return alive(self.pid, self.hdr.proc_starttime)

    def meta(self) -> dict[str, Any]:
        h = self.hdr
        return {
            "pid": h.pid, "ppid": h.ppid, "uid": h.uid, "comm": L.cstr(h.comm), "exe": L.cstr(h.exe),
            "cmdline": L.cstr(h.cmdline), "engine_version": L.cstr(h.engine_version),
            "start_time": h.start_realtime_ns / 1e9, "alive": self.alive(), "state_file": str(self.path),
            "page_size": h.page_size,
        }

    # -- settings --------------------------------------------------------

    def settings(self) -> dict[str, str]:
        self.hdr = self.shm.header()
        raw = self.shm.settings_raw(self.hdr)
        return {s.name: raw[s.index][1] for s in S.table() if s.index < len(raw)}

    def set(self, changes: dict[str, str]) -> dict[str, str]:
        """Apply all changes or none, through the engine; as writing a sysfs parameter."""
        if not changes:
            raise UfenceError("nothing to set")
        table = S.table()
        canon: dict[int, tuple[int, str]] = {}
        for key, value in changes.items():
            st = S.by_name(key)
            text = st.canonical(value)
            if not st.live:
                raise UfenceError(f"{key} can only be chosen at start-up (ufence run --set {key}=...)")
            if st.kind == "INT" or st.kind == "BOOL":
                v = int(text)
            elif st.kind == "ENUM":
                v = st.choices.index(text)
            else:
                v = 0
            canon[st.index] = (v, text)
        if not self.alive():
            raise TargetGone(f"process {self.pid} has exited: its state is read-only (ufence ps --prune removes it)")
        with ShmFile(self.path, self.uid, writable=True) as w:
            try:
                _lock(w.fd)
                h = w.header()
                if max(canon) >= min(h.settings_count, len(table)):
                    raise UfenceError("the engine of this process does not know one of these settings")
                for idx, (v, text) in canon.items():
                    w.write_request(h, idx, v, text)
                mask = 0
                for idx in canon:
                    mask |= 1 << idx
                if w.get("request_seq") != w.get("ack_seq"):
                    mask |= w.get("request_mask")  # an earlier change still queued: it stays in
                w.put_u64("request_mask", mask)
                seq = (w.get("request_seq") + 1) & 0xFFFFFFFF
                w.put_u32("request_seq", seq)
                _futex_wake(w.field_address("request_seq"))
                hot = _wake(w, h)
                deadline = time.monotonic() + ACK_TIMEOUT
                self.last_set_queued = False
                while w.get("ack_seq") != seq:
                    if time.monotonic() > deadline:
                        if not self.alive():
                            raise TargetGone(f"process {self.pid} exited before applying the change")
                        if hot and not w.get("control_thread"):
                            # no thread (off, or sampling a single-threaded program): the next allocation
                            # applies it
                            self.last_set_queued = True
                            return {k: canon[S.by_name(k).index][1] for k in changes}
                        raise UfenceError(f"process {self.pid} did not apply the change within {ACK_TIMEOUT:g} s "
                                          "(its engine's control thread is not running)")
                    time.sleep(0.001)
                status = w.get("response_status")
                if status != 0:
                    msg = w.response_msg() or os.strerror(abs(status))
                    raise UfenceError(f"change refused by process {self.pid}: {msg}")
            finally:
                fcntl.flock(w.fd, fcntl.LOCK_UN)
        now = self.settings()
        return {k: now[k] for k in changes if k in now}

    # -- stats -----------------------------------------------------------

    def counters(self) -> dict[str, int]:
        self.hdr = self.shm.header()
        vals = self.shm.stats_raw(self.hdr)
        names = L.STAT_NAMES + tuple(f"stat_{i}" for i in range(len(L.STAT_NAMES), len(vals)))
        return dict(zip(names, vals, strict=False))

    def stats(self) -> Stats:
        c = self.counters()
        cfg = self.settings()
        iv = _int(cfg.get("sample_interval"))
        mode = mode_of(iv)
        extra: dict[str, Any] = {
            "pid": self.pid, "comm": L.cstr(self.hdr.comm), "alive": self.alive(),
            "num_objects": _int(cfg.get("num_objects")),
            # full mode doubles a full pool up to this (0: never); sampling keeps the pool's size
            "max_objects": _int(cfg.get("max_objects")),
            "sample_interval": iv, "sample_rate": _int(cfg.get("sample_rate")),
            "guard": L.GUARD_MECHANISMS.get(c.get("guard_mechanism", 0), "none"),
            "pool_resident_bytes": c.get("pool_resident_bytes"),
            "metadata_bytes": c.get("metadata_bytes"),
            # off mode and sampling in a single-threaded program run none: a change then applies
            # at the program's next allocation
            "control_thread": bool(self.hdr.control_thread),
            "pool_advice": self._pool_advice(mode, cfg),
        }
        deg = c.get("degraded", 0)
        if deg:
            extra["degraded"] = [n for b, n in L.DEGRADED_REASONS.items() if deg & b] or [str(deg)]
        return Stats(
            source="process", enabled=mode != "off", counters=c, mode=mode,
            pool_objects=c.get("pool_slots") or _int(cfg.get("num_objects")) or None,
            pool_bytes=c.get("pool_reserved_bytes"), extra=extra,
        )

    def _pool_advice(self, mode: str, cfg: dict[str, str]) -> str:
        # full mode grows the pool itself: there the ceiling is what limits it
        key = "max_objects" if mode == "full" else "num_objects"
        grow = min(2 * max(_int(cfg.get(key)), _int(cfg.get("num_objects")), 1), S.by_name(key).max)
        return f"raise {key}, e.g. ufence set {self.pid} {key}={grow}"

    # -- objects -----------------------------------------------------------

    def modules(self) -> list[dict[str, Any]]:
        return [
            {"path": L.cstr(m.path), "start": m.start, "end": m.end, "base": m.base,
             "build_id": bytes(m.build_id[: min(m.build_id_len, L.BUILD_ID_MAX)]).hex() or None}
            for m in self.shm.modules(self.hdr)
        ]

    def objects(self) -> Iterator[Object]:
        h = self.hdr = self.shm.header()
        mods = sorted(self.modules(), key=lambda m: m["start"])
        # The file has room for the largest pool (sparse pages); only slots below the pool size
        # the engine uses now can hold objects (shrinking takes free slots only).
        count = max(self.counters().get("pool_slots", 0), _int(self.settings().get("num_objects")))
        count = min(count or h.slots_capacity, h.slots_capacity)
        frames = _Frames(self.shm, h, mods)
        for now, batch in self.shm.slot_batches(h, count):
            # a batch builds a few thousand objects and no cycles: the cyclic GC would only
            # rescan the growing heap while they are made
            was = gc.isenabled()
            gc.disable()
            try:
                objs = [o for i, rec in batch if rec is not None and (o := self._object(i, rec, now, frames))]
            finally:
                if was:
                    gc.enable()
            yield from objs

    def _object(self, i: int, rec: SlotRecord, now: int, frames: _Frames) -> Object | None:
        """The object of slot ``i`` from its record; ``now`` = when the record was read (for ages:
        a long read of a busy pool meets objects younger than the start of the read)."""
        (_seq, st, flags, alloc_stack, addr, size, alloc_tid, free_tid, free_stack, alloc_cpu,
         alloc_ns, free_ns) = rec
        state = _STATE.get(st)
        if state is None:
            return None
        if state is ObjectState.UNUSED:
            return Object(index=i, state=state)
        t0 = self.hdr.start_monotonic_ns
        obj = Object(
            index=i, state=state, start=addr, end=addr + max(size, 1) - 1, size=size,
            cache=_size_class(size), flags=list(_flags(flags)),
            alloc=Track(kind="allocated", tid=alloc_tid, cpu=alloc_cpu,
                        timestamp=(alloc_ns - t0) / 1e9 if alloc_ns >= t0 else None,
                        age=(now - alloc_ns) / 1e9 if alloc_ns and now >= alloc_ns else None,
                        frames=frames.of(alloc_stack), stack_id=alloc_stack or None),
        )
        if state is ObjectState.FREED:
            obj.free = Track(kind="freed", tid=free_tid, cpu=None,
                             timestamp=(free_ns - t0) / 1e9 if free_ns >= t0 else None,
                             age=(now - free_ns) / 1e9 if free_ns and now >= free_ns else None,
                             frames=frames.of(free_stack), stack_id=free_stack or None)
        return obj

    # -- reports, snapshot ---------------------------------------------------

    def report_dir(self) -> Path | None:
        d = L.cstr(self.hdr.report_dir)
        return Path(d) if d else None

    def reports(self) -> Iterator[Report]:
        d = self.report_dir()
        if d is None or not d.is_dir():
            return
        files = sorted(d.glob(f"{self.pid}-*.json"), key=lambda p: _seq(p.name))
        start = self.hdr.start_realtime_ns / 1e9
        for f in files:
            try:
                data = json.loads(f.read_text())
                rep = Report.from_dict(data)
            except (OSError, ValueError, KeyError, TypeError):
                continue  # a half-written or foreign file is not a report of this process
            # the same pid may have been used by an earlier process: keep only this one's
            if rep.timestamp is not None and start and rep.timestamp < start - 1:
                continue
            yield rep

    def snapshot(self) -> Snapshot:
        st = self.stats()
        cfg = self.settings()
        was = gc.isenabled()
        gc.disable()  # see objects(): the list of objects also only grows, without cycles
        try:
            objs = list(self.objects())
        finally:
            if was:
                gc.enable()
        return Snapshot(
            source="process", target=str(self.pid), taken_at=time.time(), objects=objs, stats=st,
            settings=cfg, modules=self.modules(),
            sampling={"mode": st.mode, "sample_interval": _int(cfg.get("sample_interval")),
                      "sample_rate": _int(cfg.get("sample_rate")), "burst": _int(cfg.get("burst")),
                      "num_objects": _int(cfg.get("num_objects"))},
            meta=self.meta(),
        )


class _Frames:
    """Depot stack id -> its frames, resolved once per id while objects are read.

    Thousands of objects share a stack: every track of one id gets the same list, and
    every stack the same Frame per pc. The model's consumers read frames without
    changing them; the symbolizer fills them in place, which then happens once per
    distinct frame and shows in every track that holds it.
    """

    def __init__(self, shm: ShmFile, h: L.Header, mods: list[dict[str, Any]]) -> None:
        self.shm, self.h, self.mods = shm, h, mods
        self.stacks: dict[int, list[Frame]] = {}
        self.by_pc: dict[int, Frame] = {}

    def of(self, stack_id: int) -> list[Frame]:
        got = self.stacks.get(stack_id)
        if got is None:
            pcs = self.shm.stack(self.h, stack_id) or []
            got = self.stacks[stack_id] = [self._frame(pc) for pc in pcs]
        return got if got else []  # no stack: a list of its own

    def _frame(self, pc: int) -> Frame:
        f = self.by_pc.get(pc)
        if f is None:
            f = self.by_pc[pc] = _frame(pc, self.mods)
        return f


_flags_memo: dict[int, tuple[str, ...]] = {}
_class_memo: dict[int, str] = {}


def _flags(bits: int) -> tuple[str, ...]:
    got = _flags_memo.get(bits)
    if got is None:
        got = tuple(n for b, n in L.SLOT_FLAGS.items() if bits & b)
        if len(_flags_memo) < 4096:
            _flags_memo[bits] = got
    return got


def _size_class(size: int) -> str:
    got = _class_memo.get(size)
    if got is None:
        got = L.size_class(size)
        if len(_class_memo) < 65536:
            _class_memo[size] = got
    return got


def _frame(pc: int, mods: list[dict[str, Any]]) -> Frame:
    """Module and file-relative offset of a pc: pc - load bias is the ELF vaddr for PIE,
    shared objects and (bias 0) non-PIE executables alike."""
    for m in mods:
        if m["start"] <= pc < m["end"]:
            return Frame(pc=pc, module=m["path"] or None, offset=pc - m["base"], build_id=m["build_id"])
    return Frame(pc=pc)


def _int(text: str | None) -> int:
    try:
        return int(text or "0", 0)
    except ValueError:
        return 0


def _seq(name: str) -> int:
    try:
        return int(name.rsplit("-", 1)[1].split(".")[0])
    except (IndexError, ValueError):
        return 0


def _lock(fd: int) -> None:
    """flock the file for writers, so two `ufence set` never interleave their requests."""
    deadline = time.monotonic() + 2.0
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except OSError as e:
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN) or time.monotonic() > deadline:
                raise UfenceError("another 'ufence set' holds this process's state file; try again") from None
            time.sleep(0.01)
