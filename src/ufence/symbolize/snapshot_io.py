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
import gzip
import json
import os
import tempfile
from pathlib import Path

from ufence.errors import UfenceError
from ufence.model import Frame, Snapshot, Track


def _same_frame(a: Frame, b: Frame) -> None:
    """Copy the symbolizer's fields from ``a`` into ``b`` (same module, offset, build id)."""
    b.function, b.function_offset, b.function_size = a.function, a.function_offset, a.function_size
    b.file, b.line, b.column = a.file, a.line, a.column
    b.inlined = [Frame(**{k: v for k, v in vars(x).items() if k != "inlined"}) for x in a.inlined]
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
    tracks: list[Track] = [t for o in snap.objects for t in (o.alloc, o.free) if t is not None]
    for t in tracks:
        for f in t.frames:
            if f.module is None or f.offset is None:
                continue
            k = (f.module, f.offset, f.build_id)
            first = reps.setdefault(k, f)
            if first is not f:
                copies.append((first, f))
    sym.clear_notices()
    sym.symbolize(reps.values())
    for a, b in copies:
        _same_frame(a, b)
    return sym.notices()


def dumps(snap: Snapshot) -> bytes:
    return json.dumps(snap.to_dict(), separators=(",", ":")).encode()


def save_snapshot(snap: Snapshot, path: str | Path) -> None:
    """Write atomically with mode 0600; gzip when ``path`` ends in ``.gz``."""
    p = Path(path)
    data = dumps(snap)
    if p.name.endswith(".gz"):
        data = gzip.compress(data, compresslevel=6, mtime=0)
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
