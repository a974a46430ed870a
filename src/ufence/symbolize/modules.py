"""Find the files that describe a frame's module: binary, debug file, symbols.

A frame names its module by path and, when the engine could read it, by GNU
build id. The file at that path is used only if its build id is the same
(a rebuilt binary would give wrong names silently). Separate debug files are
found like gdb does: ``<root>/.build-id/xx/yyyy.debug`` by build id, then the
binary's ``.gnu_debuglink`` next to it, in ``.debug/`` beside it, and under
``<root>/<dir of the binary>/``. Roots: ``UFENCE_DEBUG_ROOT`` (colon list),
default ``/usr/lib/debug``. Extra directories to look for binaries by file
name (``ufence report --search DIR``) come from ``search_dirs``.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field

from ufence.symbolize import elf


def debug_roots() -> list[str]:
    env = os.environ.get("UFENCE_DEBUG_ROOT")
    roots = [r for r in env.split(":") if r] if env else ["/usr/lib/debug"]
    return roots


@dataclass
class Module:
    """What this machine has for one (path, build id) as recorded in frames."""

    path: str
    build_id: str | None  # the build id the frames were recorded with (or the file's, if they had none)
    binary: elf.ElfInfo | None = None
    dwarf: str | None = None  # file with DWARF to give the line-table symbolizer
    symbols: elf.ElfInfo | None = None  # best symbol table
    notices: list[str] = field(default_factory=list)

    @property
    def usable(self) -> bool:
        return self.symbols is not None or self.dwarf is not None

    @functools.cached_property
    def cache_key(self) -> str:  # computed once, after resolve() filled the module in
        # same build id = same code, whichever file it came from; but a copy without
        # debug info must not borrow lines it cannot give (its notice says so)
        kind = "dwarf" if self.dwarf else "syms"
        if self.build_id:
            return f"id:{self.build_id}:{kind}"
        b = self.binary
        return f"path:{b.path if b else self.path}:{kind}"

    @property
    def base(self) -> str:
        return os.path.basename(self.path)


def _try(path: str) -> elf.ElfInfo | None:
    try:
        return elf.read(path)
    except elf.ElfError:
        return None


def _short(bid: str | None) -> str:
    return (bid[:16] + "..") if bid and len(bid) > 16 else (bid or "none")


def resolve(path: str, build_id: str | None, search_dirs: list[str]) -> Module:
    want = build_id.lower() if build_id else None
    mod = Module(path=path, build_id=want)
    roots = debug_roots()
    base = os.path.basename(path)

    candidates = [path] + [os.path.join(d, base) for d in search_dirs]
    if want and len(want) > 2:
        candidates += [os.path.join(r, ".build-id", want[:2], want[2:]) for r in roots]
    mismatch: tuple[str, str | None] | None = None
    for cand in candidates:
        info = _try(cand)
        if info is None:
            continue
        if want and info.build_id != want:
            mismatch = mismatch or (cand, info.build_id)
            continue
        mod.binary = info
        break
    if mod.binary is not None and not want:
        mod.build_id = mod.binary.build_id

    bid = mod.build_id
    if mod.binary is not None and mod.binary.has_debug_info:
        mod.dwarf = mod.binary.path
        mod.symbols = mod.binary
    else:
        dbg = _find_debug_file(mod.binary, bid, roots)
        if dbg is not None:
            mod.dwarf = dbg.path
            mod.symbols = dbg if dbg.symbols else mod.binary
        else:
            mod.symbols = mod.binary

    if mod.binary is None and mod.dwarf is None:
        if mismatch:
            mod.notices.append(
                f"not symbolizing {base}: {mismatch[0]} has build id {_short(mismatch[1])}, "
                f"the frames were recorded from build id {_short(want)} (a different build)")
        else:
            mod.notices.append(f"cannot symbolize {base}: {path} is not on this machine"
                               + (f" (and no debug file for build id {_short(want)})" if want else ""))
    elif mod.dwarf is None:
        mod.notices.append(f"no debug info for {base} (install its -dbgsym or build with -g)")
    return mod


def _find_debug_file(binary: elf.ElfInfo | None, bid: str | None, roots: list[str]) -> elf.ElfInfo | None:
    cands: list[str] = []
    if bid and len(bid) > 2:
        cands += [os.path.join(r, ".build-id", bid[:2], bid[2:] + ".debug") for r in roots]
    if binary is not None and binary.debuglink and "/" not in binary.debuglink:
        d = os.path.dirname(os.path.realpath(binary.path))
        cands += [os.path.join(d, binary.debuglink), os.path.join(d, ".debug", binary.debuglink)]
        cands += [os.path.join(r + d, binary.debuglink) for r in roots]
    for c in cands:
        if binary is not None and os.path.realpath(c) == os.path.realpath(binary.path):
            continue
        info = _try(c)
        if info is None or not info.has_debug_info:
            continue
        if bid and info.build_id and info.build_id != bid:
            continue  # a debug file for another build: its lines would be wrong
        return info
    return None
