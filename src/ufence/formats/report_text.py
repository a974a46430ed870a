"""A bug report as KFENCE-shaped text, with source lines and inlined frames.

The same layout as the engine's stderr report (docs/design.md), so people
who know KFENCE read it at once; symbolized frames add ``file:line`` after
the module, and functions inlined at a pc get their own ``(inlined)`` lines
above the function they were inlined into, as the kernel's
decode_stacktrace.sh shows them.
"""

from __future__ import annotations

import os

from ufence.model import BugType, Frame, Object, Report, Track

RULE = "=" * 66


def _base(path: str | None) -> str | None:
    return path.rsplit("/", 1)[-1] if path else None


def _source(f: Frame) -> str:
    if not f.file:
        return ""
    loc = os.path.normpath(f.file)
    if f.line:
        loc += f":{f.line}"
    return " " + loc


def _symbol(f: Frame) -> str:
    s = f.function or "?"
    if f.function_offset is not None:
        s += f"+{f.function_offset:#x}"
        if f.function_size is not None:
            s += f"/{f.function_size:#x}"
    return s


def frame_lines(f: Frame) -> list[str]:
    """One line per source function at this pc: inlined ones first, innermost first."""
    mod = _base(f.module)
    if not f.function:
        if mod and f.offset is not None:
            return [f" {mod}+{f.offset:#x}"]
        return [f" {f.pc:#x}" if f.pc is not None else " ?"]
    tag = f" [{mod}]" if mod else ""
    chain = [f, *f.inlined]
    lines = [f" {fr.function or '?'}{tag}{_source(fr)} (inlined)" for fr in chain[:-1]]
    last = chain[-1]
    lines.append(f" {_symbol(last)}{tag}{_source(last)}")
    return lines


def stack_lines(frames: list[Frame], none: str) -> list[str]:
    if not frames:
        return [f" no {none} stack"]
    return [line for f in frames for line in frame_lines(f)]


def title_function(report: Report) -> str | None:
    """``func+0xoff/0xsize`` of the first frame (the symbol, as %pS), else the report's own."""
    if report.stack and report.stack[0].function:
        return _symbol([report.stack[0], *report.stack[0].inlined][-1])
    return report.function


def _addr(v: int | None) -> str:
    return f"{v:#x}" if v is not None else "0x(____ptrval____)"


def _corruption(report: Report) -> str:
    cells = []
    for b in report.corruption:
        cells.append("!" if b.hidden else "." if b.value is None else f"0x{b.value:02x}")
    return "[ " + " ".join(cells) + " ]" if cells else ""


def access_line(report: Report, name: str) -> str:
    acc = report.access or "access"
    addr = _addr(report.address)
    bug = report.bug
    if bug is BugType.OUT_OF_BOUNDS:
        where = f"{report.distance}B {report.side or '?'} of {name}" if report.distance is not None else name
        return f"Out-of-bounds {acc} at {addr} ({where}):"
    if bug is BugType.USE_AFTER_FREE:
        return f"Use-after-free {acc} at {addr} (in {name}):"
    if bug is BugType.MEMORY_CORRUPTION:
        dump = _corruption(report)
        # as the engine writes it: when the canary was found broken
        when = (", after free, found at revocation" if report.extra.get("after_free")
                else ", found at exit" if report.extra.get("at_exit") else "")
        return f"Corrupted memory at {addr} {dump + ' ' if dump else ''}(in {name}{when}):"
    if bug is BugType.INVALID_ACCESS:
        return f"Invalid {acc} at {addr}:"
    return f"Invalid free of {addr} (in {name}):"


def _track(t: Track, kernel: bool) -> list[str]:
    head = f"{t.kind} by {'task' if kernel else 'thread'} {t.tid if t.tid is not None else '?'}"
    if kernel and t.cpu is not None:
        head += f" on cpu {t.cpu}"
    if t.timestamp is not None:
        head += f" at {t.timestamp:.6f}s"
        if t.age is not None:
            head += f" ({t.age:.6f}s ago)"
    return [head + ":", *stack_lines(t.frames, "allocation" if t.kind == "allocated" else "deallocation")]


def object_lines(o: Object, prefix: str) -> list[str]:
    name = f"{prefix}-#{o.index}"
    size = f", size={o.size}" if o.size is not None else ""
    cache = f", cache={o.cache}" if o.cache else ""
    lines = [f"{name}: {_addr(o.start)}-{_addr(o.end)}{size}{cache}"]
    for t in (o.alloc, o.free):
        if t is not None:
            lines += ["", *_track(t, prefix == "kfence")]
    return lines


def render(report: Report, path: str | None = None) -> str:
    """The whole report, between the two 66-'=' rules, ending in a newline."""
    kernel = report.source == "kernel"
    prefix = "kfence" if kernel else "ufence"
    name = f"{prefix}-#{report.object.index}" if report.object else f"{prefix}-#?"
    head = report.title("KFENCE" if kernel else "UFENCE")
    fn = title_function(report)
    if fn:
        head = head.rsplit(" in ", 1)[0] + f" in {fn}"
    lines = [RULE, head, "", access_line(report, name), *stack_lines(report.stack, "access")]
    if report.object is not None:
        lines += ["", *object_lines(report.object, prefix)]
    ident = []
    for label, v in (("CPU", report.cpu), ("PID", report.pid), ("TID", report.tid), ("Comm", report.comm),
                     ("Exe", report.exe)):
        if v is not None:
            ident.append(f"{label}: {v}")
    if ident:
        lines += ["", " ".join(ident)]
    if report.kernel:
        lines.append(report.kernel)
    if path:
        lines.append(f"Report: {path}")
    lines.append(RULE)
    return "\n".join(lines) + "\n"
