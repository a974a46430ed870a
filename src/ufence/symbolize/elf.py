"""A small ELF reader: build id, debug-info presence, debuglink, symbol tables.

Only what symbolization needs, read straight from the file with ``struct``
(no dependency). Handles ELF32/ELF64, little and big endian. Every failure is
an ``ElfError`` (bad magic, truncated headers, tables out of range) so a
corrupt or foreign file never raises anything else.

Addresses are the file's own virtual addresses (``st_value``/``p_vaddr``
space), which is what ``Frame.offset`` holds (pc - load bias).
"""

from __future__ import annotations

import bisect
import contextlib
import mmap
import os
import stat
import struct
from dataclasses import dataclass, field

SHT_SYMTAB = 2
SHT_NOTE = 7
SHT_NOBITS = 8
SHT_DYNSYM = 11
PT_LOAD = 1
PT_NOTE = 4
NT_GNU_BUILD_ID = 3
STT_FUNC = 2
STT_GNU_IFUNC = 10
PF_X = 1
STB_GLOBAL = 1
STB_WEAK = 2
_MAX_NOTE = 1 << 20  # notes larger than this are not build-id notes
_MAX_SYMBOLS = 5_000_000


class ElfError(Exception):
    """The file is not a readable ELF (or is truncated/corrupt)."""


@dataclass(frozen=True)
class Symbol:
    name: str
    start: int
    size: int  # 0 = unknown (extends to the next symbol)


@dataclass(frozen=True)
class Segment:
    vaddr: int
    memsz: int
    offset: int
    flags: int


@dataclass
class ElfInfo:
    path: str
    build_id: str | None
    has_debug_info: bool  # .debug_info present with contents (DWARF usable)
    debuglink: str | None  # .gnu_debuglink file name
    segments: list[Segment]
    symbols: list[Symbol] = field(default_factory=list)  # sorted by start, functions only
    _starts: list[int] = field(default_factory=list, repr=False)

    def lookup(self, addr: int) -> Symbol | None:
        """The function symbol containing ``addr`` (sized symbols must contain it)."""
        i = bisect.bisect_right(self._starts, addr) - 1
        if i < 0:
            return None
        s = self.symbols[i]
        if not s.size:
            # unsized symbol (hand-written asm): up to the next symbol, inside executable code
            nxt = self._starts[i + 1] if i + 1 < len(self._starts) else None
            if (nxt is None or addr < nxt) and self.in_exec_segment(addr):
                return s
            return None
        # a few symbols back, in case a larger function encloses a smaller one (cold parts, aliases)
        for j in range(i, max(i - 8, -1), -1):
            c = self.symbols[j]
            if c.size and c.start <= addr < c.start + c.size:
                return c
        return None

    def in_exec_segment(self, addr: int) -> bool:
        return any(sg.flags & PF_X and sg.vaddr <= addr < sg.vaddr + sg.memsz for sg in self.segments)


class _Reader:
    def __init__(self, data: bytes | mmap.mmap) -> None:
        self.data = data
        if len(data) < 16 or data[:4] != b"\x7fELF":
            raise ElfError("not an ELF file")
        cls, enc = data[4], data[5]
        if cls not in (1, 2) or enc not in (1, 2):
            raise ElfError("unknown ELF class or byte order")
        self.is64 = cls == 2
        self.end = "<" if enc == 1 else ">"

    def unpack(self, fmt: str, off: int) -> tuple[int, ...]:
        f = self.end + fmt
        if off < 0 or off + struct.calcsize(f) > len(self.data):
            raise ElfError("truncated ELF file")
        return struct.unpack_from(f, self.data, off)

    def blob(self, off: int, size: int) -> bytes:
        if off < 0 or size < 0 or off + size > len(self.data):
            raise ElfError("truncated ELF file")
        return self.data[off:off + size]


def _cstr(table: bytes, off: int) -> str:
    if off >= len(table):
        return ""
    end = table.find(b"\0", off)
    return table[off:end if end >= 0 else len(table)].decode("utf-8", "replace")


def _notes_build_id(r: _Reader, off: int, size: int) -> str | None:
    if size > _MAX_NOTE:
        return None
    blob = r.blob(off, size)
    pos = 0
    while pos + 12 <= len(blob):
        namesz, descsz, ntype = struct.unpack_from(r.end + "III", blob, pos)
        pos += 12
        name = blob[pos:pos + namesz]
        pos += (namesz + 3) & ~3
        desc = blob[pos:pos + descsz]
        pos += (descsz + 3) & ~3
        if ntype == NT_GNU_BUILD_ID and name.rstrip(b"\0") == b"GNU" and desc:
            return desc.hex()
    return None


def parse(data: bytes | mmap.mmap, path: str = "") -> ElfInfo:
    """Parse an ELF image held in memory."""
    r = _Reader(data)
    if r.is64:
        (_t, _m, _v, _e, phoff, shoff, _f, _eh, phentsize, phnum, shentsize, shnum, shstrndx) = r.unpack(
            "HHIQQQIHHHHHH", 16)
    else:
        (_t, _m, _v, _e, phoff, shoff, _f, _eh, phentsize, phnum, shentsize, shnum, shstrndx) = r.unpack(
            "HHIIIIIHHHHHH", 16)

    segments: list[Segment] = []
    build_id: str | None = None
    for i in range(phnum if phoff else 0):
        o = phoff + i * phentsize
        if r.is64:
            ptype, pflags, poff, pvaddr, _pa, pfilesz, pmemsz, _al = r.unpack("IIQQQQQQ", o)
        else:
            ptype, poff, pvaddr, _pa, pfilesz, pmemsz, pflags, _al = r.unpack("IIIIIIII", o)
        if ptype == PT_LOAD:
            segments.append(Segment(pvaddr, pmemsz, poff, pflags))
        elif ptype == PT_NOTE and build_id is None:
            with contextlib.suppress(ElfError):
                build_id = _notes_build_id(r, poff, pfilesz)

    sections: list[tuple[str, int, int, int, int, int]] = []  # name, type, offset, size, link, entsize
    if shoff and shnum:
        raw = []
        for i in range(shnum):
            o = shoff + i * shentsize
            if r.is64:
                name, stype, _fl, _addr, soff, ssize, link, _info, _align, entsize = r.unpack("IIQQQQIIQQ", o)
            else:
                name, stype, _fl, _addr, soff, ssize, link, _info, _align, entsize = r.unpack("IIIIIIIIII", o)
            raw.append((name, stype, soff, ssize, link, entsize))
        names = b""
        if shstrndx < len(raw) and raw[shstrndx][1] != SHT_NOBITS:
            names = r.blob(raw[shstrndx][2], raw[shstrndx][3])
        sections = [(_cstr(names, n), t, o, s, lk, es) for (n, t, o, s, lk, es) in raw]

    has_debug = False
    debuglink = None
    for name, stype, soff, ssize, _lk, _es in sections:
        if name in (".debug_info", ".zdebug_info") and stype != SHT_NOBITS and ssize > 0:
            has_debug = True
        elif name == ".gnu_debuglink" and stype != SHT_NOBITS:
            debuglink = _cstr(r.blob(soff, ssize), 0) or None
        elif stype == SHT_NOTE and build_id is None:
            with contextlib.suppress(ElfError):
                build_id = _notes_build_id(r, soff, ssize)

    info = ElfInfo(path=path, build_id=build_id, has_debug_info=has_debug, debuglink=debuglink, segments=segments)
    _read_symbols(r, sections, info)
    return info


def _rank(name: str, size: int, bind: int) -> tuple[int, int, int, int]:
    """Which alias names an address: sized, then global over weak over local, then the
    plainest name (``free`` over ``__libc_free`` and ``cfree``, ``printf`` over ``_IO_printf``)."""
    binding = {STB_GLOBAL: 2, STB_WEAK: 1}.get(bind, 0)
    return (1 if size else 0, binding, -(len(name) - len(name.lstrip("_"))), -len(name))


def _read_symbols(r: _Reader, sections: list[tuple[str, int, int, int, int, int]], info: ElfInfo) -> None:
    best: dict[int, tuple[tuple[int, int, int, int], Symbol]] = {}
    for _name, stype, soff, ssize, link, entsize in sections:
        if stype not in (SHT_SYMTAB, SHT_DYNSYM) or link >= len(sections):
            continue
        strtab_sec = sections[link]
        if strtab_sec[1] == SHT_NOBITS:
            continue
        strtab = r.blob(strtab_sec[2], strtab_sec[3])
        esz = entsize or (24 if r.is64 else 16)
        if esz < (24 if r.is64 else 16):
            raise ElfError("bad symbol entry size")
        count = ssize // esz
        if count > _MAX_SYMBOLS:
            raise ElfError("symbol table too large")
        table = r.blob(soff, count * esz)
        for k in range(1, count):  # entry 0 is the null symbol
            o = k * esz
            if r.is64:
                name_off, stinfo, _oth, shndx, value, size = struct.unpack_from(r.end + "IBBHQQ", table, o)
            else:
                name_off, value, size, stinfo, _oth, shndx = struct.unpack_from(r.end + "IIIBBH", table, o)
            if (stinfo & 0xF) not in (STT_FUNC, STT_GNU_IFUNC) or shndx == 0 or value == 0:
                continue
            name = _cstr(strtab, name_off).split("@", 1)[0]
            if not name:
                continue
            rank = _rank(name, size, stinfo >> 4)
            old = best.get(value)
            if old is None or rank > old[0]:
                best[value] = (rank, Symbol(name, value, size))
    info.symbols = sorted((sym for _r, sym in best.values()), key=lambda s: s.start)
    info._starts = [s.start for s in info.symbols]


_cache: dict[tuple[str, int, int, int, int], ElfInfo] = {}


def read(path: str) -> ElfInfo:
    """Parse the ELF file at ``path``, cached by (path, device, inode, size, mtime)."""
    try:
        st = os.stat(path)
    except OSError as e:
        raise ElfError(e.strerror or str(e)) from None
    if not stat.S_ISREG(st.st_mode):
        raise ElfError("not a regular file")  # a FIFO or device would block or never end
    key = (path, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    hit = _cache.get(key)
    if hit is not None:
        return hit
    try:
        with open(path, "rb") as f:
            if st.st_size == 0:
                raise ElfError("empty file")
            # mmap: debug-info files can be hundreds of MB; only the headers and tables are touched
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
                info = parse(data, path)
    except OSError as e:
        raise ElfError(e.strerror or str(e)) from None
    except (struct.error, ValueError):
        raise ElfError("corrupt ELF file") from None
    _cache[key] = info
    return info
