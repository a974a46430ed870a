"""Save and load snapshots (``ufence snapshot``, ``ufence leaks FILE``).

A snapshot file is ``model.Snapshot.to_dict()`` as JSON, gzipped when the
name ends in ``.gz``. It is written atomically (a 0600 temp file in the same
directory, fsync, rename), because it holds addresses of a live process and
a reader must never see half a file. ``presymbolize`` fills function,
file:line and inlined frames here, once per distinct stack, so a machine
without the binaries can still read names; the module table (paths, load
bias, build ids) always goes in, so a machine with them can symbolize later.
"""

from __future__ import annotations

import contextlib
import gc
import gzip
import json
import operator
import os
import tempfile
from pathlib import Path
from typing import Any

from ufence.errors import UfenceError
from ufence.model import Frame, Object, Snapshot, Track


def _same_frame(a: Frame, b: Frame) -> None:
    """Copy the symbolizer's fields from ``a`` into ``b`` (same module, offset, build id).

    The ``inlined`` list is shared, not copied: it is the same source
    information for every frame at that pc, and copying it per object is
    what made large snapshots slow.
    """
    b.function, b.function_offset, b.function_size = a.function, a.function_offset, a.function_size
    b.file, b.line, b.column = a.file, a.line, a.column
    b.inlined = a.inlined
    if b.build_id is None:
        b.build_id = a.build_id


def presymbolize(snap: Snapshot) -> list[str]:
    """Symbolize every object's stacks in place; returns the symbolizer's notices.

    Many objects share a stack, and a stack shares frames with others: one
    representative per (module, offset, build id) is symbolized, and the
    result copied to the rest, so the cost is per distinct frame.
    """
    from ufence import symbolize as sym

    reps: dict[tuple[str, int, str | None], Frame] = {}
    copies: list[tuple[Frame, Frame]] = []
    by_stack: dict[tuple[int, int], Track] = {}  # (stack id, depth) -> first track seen
    same: list[tuple[Track, Track]] = []
    for o in snap.objects:
        for t in (o.alloc, o.free):
            if t is None or not t.frames:
                continue
            if t.stack_id is not None:
                first_t = by_stack.setdefault((t.stack_id, len(t.frames)), t)
                if first_t is not t and all(a.pc == b.pc for a, b in zip(first_t.frames, t.frames, strict=True)):
                    same.append((first_t, t))  # the same depot stack: copy frame by frame afterwards
                    continue
            for f in t.frames:
                if f.module is None or f.offset is None:
                    continue
                first = reps.setdefault((f.module, f.offset, f.build_id), f)
                if first is not f:
                    copies.append((first, f))
    sym.clear_notices()
    sym.symbolize(reps.values())
    for a, b in copies:
        _same_frame(a, b)
    for ta, tb in same:
        for a, b in zip(ta.frames, tb.frames, strict=True):
            if a.module is not None and a.offset is not None:
                _same_frame(a, b)
    return sym.notices()


_FRAME_FIELDS = ("pc", "module", "offset", "build_id", "function", "function_offset", "function_size", "file",
                 "line", "column")
_FrameKey = tuple[Any, ...]


_fields_of = operator.attrgetter(*_FRAME_FIELDS)


def _frame_key(f: Frame) -> _FrameKey:
    key: _FrameKey = _fields_of(f)
    return key + tuple(_frame_key(x) for x in f.inlined) if f.inlined else key


def _frame_dict(f: Frame) -> dict[str, Any]:
    d: dict[str, Any] = {k: v for k in _FRAME_FIELDS if (v := getattr(f, k)) is not None}
    if f.inlined:
        d["inlined"] = [_frame_dict(x) for x in f.inlined]
    return d


class _Dicts:
    """``Snapshot.to_dict()``, fast: a stack shared by many objects is converted once.

    Frame.to_dict goes through dataclasses.asdict (tens of microseconds a
    frame); a snapshot of a million objects would take minutes. The output is
    the same (a test compares it with to_dict on real snapshots); the JSON
    writer serialises a shared list once per place it appears.
    """

    def __init__(self) -> None:
        self.frames: dict[tuple[_FrameKey, ...], list[dict[str, Any]]] = {}

    def frame_list(self, frames: list[Frame]) -> list[dict[str, Any]]:
        key = tuple(_frame_key(f) for f in frames)
        hit = self.frames.get(key)
        if hit is None:
            hit = self.frames[key] = [_frame_dict(f) for f in frames]
        return hit

    def track(self, t: Track) -> dict[str, Any]:
        d: dict[str, Any] = {"kind": t.kind}
        for k in ("tid", "cpu", "timestamp", "age", "stack_id"):
            v = getattr(t, k)
            if v is not None:
                d[k] = v
        d["frames"] = self.frame_list(t.frames)
        return d

    def obj(self, o: Object) -> dict[str, Any]:
        d: dict[str, Any] = {"index": o.index, "state": o.state.value}
        for k in ("start", "end"):
            v = getattr(o, k)
            if v is not None:
                d[k] = f"{v:#x}"
        for k in ("size", "cache", "node"):
            v = getattr(o, k)
            if v is not None:
                d[k] = v
        if o.hashed:
            d["hashed"] = True
        if o.flags:
            d["flags"] = list(o.flags)
        if o.alloc:
            d["alloc"] = self.track(o.alloc)
        if o.free:
            d["free"] = self.track(o.free)
        return d


def snapshot_dict(snap: Snapshot) -> dict[str, Any]:
    """Equal to ``snap.to_dict()``, in time proportional to the distinct stacks' frames."""
    objects, snap.objects = snap.objects, []
    try:
        d = snap.to_dict()  # everything but the objects, by the model's own code
    finally:
        snap.objects = objects
    conv = _Dicts()
    d["objects"] = [conv.obj(o) for o in objects]
    return d


def dumps(snap: Snapshot) -> bytes:
    # millions of small dicts and no cycles: the cyclic GC would rescan the growing heap
    # again and again (that doubled the time of a 200k-object snapshot)
    was = gc.isenabled()
    gc.disable()
    try:
        return json.dumps(snapshot_dict(snap), separators=(",", ":")).encode()
    finally:
        if was:
            gc.enable()


def save_snapshot(snap: Snapshot, path: str | Path) -> None:
    """Write atomically with mode 0600; gzip when ``path`` ends in ``.gz``."""
    p = Path(path)
    data = dumps(snap)
    if p.name.endswith(".gz"):
        data = gzip.compress(data, compresslevel=3, mtime=0)  # snapshots repeat a lot: 3 is near 9 in size, 3x faster
    write_private_atomic(p, data)


def write_private_atomic(p: Path, data: bytes) -> None:
    d = p.parent if str(p.parent) else Path(".")
    if not d.is_dir():
        raise UfenceError(f"cannot write {p}: directory {d} does not exist")
    if p.is_dir():
        raise UfenceError(f"cannot write {p}: it is a directory")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=d)  # mkstemp creates it 0600
    except OSError as e:
        raise UfenceError(f"cannot write {p}: {e.strerror or e}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, p)
    except OSError as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise UfenceError(f"cannot write {p}: {e.strerror or e}") from None


def load_snapshot(path: str | Path) -> Snapshot:
    """Read a snapshot file (plain or gzipped); one-line UfenceError for anything else.

    The reader is the leaks engineer's ``ufence.analysis.snapshot_file``:
    one implementation, so ``ufence leaks FILE`` and this agree on what a
    valid file is.
    """
    from ufence.analysis.snapshot_file import load_snapshot as _load

    return _load(path)
