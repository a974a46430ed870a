"""pprof heap profile: gzipped ``profile.proto`` (github.com/google/pprof/proto/profile.proto).

Layout follows what ``go tool pprof`` and Pyroscope expect of a heap profile:
sample types ``inuse_objects/count`` and ``inuse_space/bytes`` (the second is
the default), ``period_type space/bytes``; one sample per leak stack with its
location ids leaf first; one location per distinct frame with its lines
(inlined callees first, the function the pc is in last) pointing at
functions; one mapping per module with its file name and GNU build id, so
pprof can symbolize against the same binary elsewhere.

Field numbers are those of profile.proto; the encoder is ufence.formats.protowire.
"""

from __future__ import annotations

import gzip
from typing import Any

from ufence.analysis.leak_values import stack_values, value_unit
from ufence.analysis.leaks import LeakReport
from ufence.analysis.naming import frame_label
from ufence.formats.protowire import Message
from ufence.model import Frame

KERNEL_MAPPING = "[kernel.kallsyms]"


class _Strings:
    """The string table: index 0 is always the empty string."""

    def __init__(self) -> None:
        self.table: list[str] = [""]
        self._ix: dict[str, int] = {"": 0}

    def __call__(self, s: str | None) -> int:
        if not s:
            return 0
        i = self._ix.get(s)
        if i is None:
            i = self._ix[s] = len(self.table)
            self.table.append(s)
        return i


def _value_type(strings: _Strings, typ: str, unit: str) -> Message:
    return Message().num(1, strings(typ)).num(2, strings(unit))


class _Builder:
    def __init__(self, modules: list[dict[str, Any]], kernel: bool = False) -> None:
        # kernel frames name no module for the core kernel: give them one mapping
        # named as perf does, first, so pprof calls the profile's main binary the kernel
        self.default_module = KERNEL_MAPPING if kernel else None
        self.s = _Strings()
        self.functions: dict[tuple[str, str], int] = {}
        self.function_msgs: list[Message] = []
        self.locations: dict[tuple[Any, ...], int] = {}
        self.location_msgs: list[Message] = []
        self.mappings: dict[str, dict[str, Any]] = {}
        if kernel:
            self.mappings[KERNEL_MAPPING] = {"id": 1, "path": KERNEL_MAPPING}
        for m in modules:
            path = m.get("path") or m.get("name")
            if path:
                self.mappings.setdefault(str(path), {"id": len(self.mappings) + 1, **m})

    def function(self, name: str, file: str | None) -> int:
        k = (name, file or "")
        i = self.functions.get(k)
        if i is None:
            i = self.functions[k] = len(self.functions) + 1
            self.function_msgs.append(
                Message().num(1, i).num(2, self.s(name)).num(3, self.s(name)).num(4, self.s(file)))
        return i

    def mapping(self, f: Frame) -> int:
        module = f.module or self.default_module
        if not module:
            return 0
        m = self.mappings.get(module)
        if m is None:
            m = self.mappings[module] = {"id": len(self.mappings) + 1, "path": module}
        if f.build_id and not m.get("build_id"):
            m["build_id"] = f.build_id
        if f.pc is not None and f.offset is not None:
            # no memory map in the data: derive the mapping's range from the frames
            base = f.pc - f.offset
            m["_lo"] = min(m.get("_lo", base), base)
            m["_hi"] = max(m.get("_hi", f.pc + 1), f.pc + 1)
        return int(m["id"])

    def location(self, f: Frame) -> int:
        k = (f.pc, f.module, f.offset, f.function, f.function_offset, f.file, f.line)
        i = self.locations.get(k)
        if i is not None:
            return i
        i = self.locations[k] = len(self.locations) + 1
        loc = Message().num(1, i).num(2, self.mapping(f)).num(3, f.pc or 0)
        # profile.proto: the last line is the caller into which the preceding were inlined
        # Unsymbolized frames get no lines, so pprof symbolizes them itself from
        # the mapping's binary (matched by build id) instead of showing a fake name.
        chain = [f, *f.inlined] if f.function else []
        m = self.mappings.get(f.module or self.default_module or "")
        if m is not None:
            m["_funcs"] = m.get("_funcs", True) and bool(f.function)
            m["_lines"] = m.get("_lines", True) and bool(f.line)
        for fr in chain:
            fid = self.function(frame_label(fr), fr.file)
            loc.sub(4, Message().num(1, fid).num(2, fr.line or 0).num(3, fr.column or 0))
        self.location_msgs.append(loc)
        return i

    def mapping_msgs(self) -> list[Message]:
        out = []
        for path, m in self.mappings.items():
            start = _num(m.get("start"))
            end = _num(m.get("end"))
            if start is None:
                start, end = m.get("_lo", 0), m.get("_hi", 0)
            base = _num(m.get("base"))
            file_offset = _num(m.get("file_offset")) or (start - base if base is not None and start else 0)
            text = _text_segment(path, m.get("build_id")) if base is not None else None
            if base is not None and text is not None:
                # pprof symbolizes by matching a mapping to the executable segment
                # (as perf and the Go runtime record it): describe that segment
                vaddr, memsz, offset = text
                start, end, file_offset = base + (vaddr & ~_PAGE), base + vaddr + memsz, offset & ~_PAGE
            out.append(Message().num(1, m["id"]).num(2, start).num(3, end).num(4, max(file_offset, 0))
                       .num(5, self.s(path)).num(6, self.s(m.get("build_id")))
                       .flag(7, m.get("_funcs", False)).flag(8, m.get("_lines", False))
                       .flag(9, m.get("_lines", False)).flag(10, m.get("_funcs", False)))
        return out


_PAGE = 0xFFF


def _text_segment(path: str, build_id: str | None) -> tuple[int, int, int] | None:
    """(vaddr, memsz, file offset) of the module's executable PT_LOAD, when the
    same file (same build id) is on this machine; else None."""
    try:
        from ufence.symbolize.elf import PF_X, ElfError, read
    except ImportError:
        return None
    try:
        info = read(path)
    except (ElfError, OSError):
        return None
    if build_id and info.build_id and info.build_id != build_id:
        return None
    for sg in info.segments:
        if sg.flags & PF_X:
            return sg.vaddr, sg.memsz, sg.offset
    return None


def _num(v: Any) -> int | None:
    if v is None:
        return None
    if isinstance(v, str):
        try:
            return int(v, 0)
        except ValueError:
            return None
    return int(v)


def encode(report: LeakReport, modules: list[dict[str, Any]] | None = None) -> bytes:
    """The uncompressed Profile message."""
    b = _Builder(modules or [], kernel=report.source == "kernel")
    s = b.s
    prof = Message()
    prof.sub(1, _value_type(s, "inuse_objects", "count"))
    prof.sub(1, _value_type(s, "inuse_space", "bytes"))
    for sv in stack_values(report):
        sample = Message().packed(1, [b.location(f) for f in sv.frames]).packed(2, [sv.count, sv.bytes])
        sample.sub(3, Message().num(1, s("leak")).num(2, s(sv.group.name)))
        if sv.group.stack_id is not None:
            sample.sub(3, Message().num(1, s("stack_id")).num(3, sv.group.stack_id))
        prof.sub(2, sample)
    for m in b.mapping_msgs():
        prof.sub(3, m)
    for loc in b.location_msgs:
        prof.sub(4, loc)
    for fn in b.function_msgs:
        prof.sub(5, fn)
    # comments and types must be interned before the string table is written
    e = report.estimate
    comments = [s(f"ufence leaks {report.target}: live objects by allocation stack ({value_unit(report)})"),
                s(e.describe())]
    period_type = _value_type(s, "space", "bytes")
    default_type = s("inuse_space")
    for text in s.table:
        prof.text(6, text, always=True)
    if report.taken_at:
        prof.num(9, int(report.taken_at * 1e9))
    prof.sub(11, period_type)
    if report.growth is not None and report.growth.times:
        prof.num(10, int(report.growth.times[-1] * 1e9))  # the --watch window
    prof.num(12, int(e.sample_rate or 1) if e.mode == "count" else 1)
    prof.packed(13, comments)
    prof.num(14, default_type)
    return bytes(prof)


def render(report: LeakReport, modules: list[dict[str, Any]] | None = None) -> bytes:
    # mtime=0: identical input gives identical bytes (reproducible artefacts)
    return gzip.compress(encode(report, modules), mtime=0)
