"""Symbolization: fill Frame.function/file/line/inlined from module + offset.

Public interface (used by the CLI, report rendering and formats):

    symbolize(frames: Iterable[Frame], *, exact: Collection[Frame] = ()) -> None

fills the frames in place, in one batch per call (llvm-symbolizer, or
addr2line as the fallback, kept running; cached by (build id or path,
offset)). Frames without a module (kernel frames), or whose module is not
on this machine (or has a different build id), are left as they are.
Never raises for missing tools or files: what could not be done is said in
``notices()`` ("no debug info for libfoo.so (install its -dbgsym or build
with -g)"), which the CLI prints to stderr once.

What a frame must hold (see ``ufence.symbolize.core`` for details):
``module`` = absolute path of the ELF file, ``offset`` = pc - load bias
(the address in the file's own virtual address space, as ``nm`` shows it),
``build_id`` = hex GNU build id when known. ``pc`` is a return address
except for frames given in ``exact`` (a faulting instruction), so the
others are looked up at offset-1.

After symbolization: ``function``/``file``/``line``/``column`` = the
innermost source function at the pc and its line; ``inlined`` = the callers
it was inlined into, innermost first, each with its own file:line, the last
being the physical function. ``function_offset``/``function_size`` belong
to the symbol containing the pc (``func+0xoff/0xsize``) and sit on the entry
that names it: the frame itself when nothing was inlined. Frames at the same
pc share one ``inlined`` list (read it, do not append to it).

Settings: ``UFENCE_SYMBOLIZER`` = llvm-symbolizer | addr2line | none | path;
``UFENCE_DEBUG_ROOT`` = colon list of debug roots (default /usr/lib/debug);
``UFENCE_SYMBOLIZER_TIMEOUT`` = seconds without an answer before giving up.
"""

from __future__ import annotations

import atexit
import threading
from collections.abc import Collection, Iterable, Sequence

from ufence.model import BugType, Frame, Report
from ufence.symbolize.core import Symbolizer

__all__ = [
    "Symbolizer",
    "clear_notices",
    "default_symbolizer",
    "notices",
    "set_search_dirs",
    "symbolize",
    "symbolize_report",
]

_default: Symbolizer | None = None
_default_lock = threading.Lock()


def default_symbolizer() -> Symbolizer:
    """The process-wide symbolizer (its tool processes live until exit)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Symbolizer()
            atexit.register(_default.close)
        return _default


def symbolize(frames: Iterable[Frame], *, exact: Collection[Frame] = ()) -> None:
    """Fill ``frames`` in place; frames in ``exact`` are not return addresses."""
    default_symbolizer().symbolize(frames, exact=exact)


# Bugs the engine reports from a fault: the first access-stack frame is the
# faulting instruction itself. The others come from free(), where every frame
# is a return address.
_FAULT_BUGS = (BugType.OUT_OF_BOUNDS, BugType.USE_AFTER_FREE, BugType.INVALID_ACCESS)


def report_frames(report: Report) -> tuple[list[Frame], list[Frame]]:
    """All frames of a report, and the ones that are exact (not return addresses)."""
    frames = list(report.stack)
    exact = [report.stack[0]] if report.stack and report.bug in _FAULT_BUGS else []
    if report.object:
        for t in (report.object.alloc, report.object.free):
            if t:
                frames.extend(t.frames)
    return frames, exact


def symbolize_report(report: Report) -> None:
    """Symbolize the access stack and the object's alloc/free stacks in one batch."""
    frames, exact = report_frames(report)
    symbolize(frames, exact=exact)


def notices() -> list[str]:
    """What symbolization could not do so far (unique, in order of first occurrence)."""
    return default_symbolizer().notices()


def clear_notices() -> None:
    default_symbolizer().clear_notices()


def set_search_dirs(dirs: Sequence[str]) -> None:
    """Extra directories where binaries are looked up by file name (build id still checked)."""
    default_symbolizer().search_dirs = list(dirs)
