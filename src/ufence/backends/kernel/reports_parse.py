"""KFENCE bug reports in kernel log text -> model.Report (kfence-kernel.md 1.4).

A report runs from ``BUG: KFENCE: <what> in <func>`` to the closing line of
``=`` signs: the access line (address, distance/side or object index,
canary dump), the access/free stack, the object block (parsed by the
objects-file parser), the dump_stack footer (``CPU: N [UID: N] PID: N
Comm: ...``, taint, ``Hardware name:``) and, with no_hash_pointers, a
register dump. A report cut off by the end of the log is still returned,
marked ``extra["truncated"]``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from ufence.backends.kernel.frames import is_unreliable, parse_frame
from ufence.backends.kernel.objects_parse import parse_record
from ufence.model import BugType, CorruptionByte, Frame, Object, ObjectState, Report

_BUG = "BUG: KFENCE: "
_TITLE = re.compile(
    r"^BUG: KFENCE: (?P<what>out-of-bounds (?:read|write)|use-after-free (?:read|write)|memory corruption"
    r"|invalid (?:read|write)|invalid free) in (?P<where>.+?)\s*$"
)
_P = r"0x(?P<addr>\(____ptrval____\)|[0-9a-f]+)"
_ACCESS = [
    re.compile(rf"^Out-of-bounds (?:read|write) at {_P} "
               r"\((?P<dist>\d+)B (?P<side>left|right) of kfence-#(?P<idx>\d+)\):"),
    re.compile(rf"^Use-after-free (?:read|write) at {_P} \(in kfence-#(?P<idx>\d+)\):"),
    re.compile(rf"^Corrupted memory at {_P} \[(?P<dump>[^\]]*)\] \(in kfence-#(?P<idx>\d+)\):"),
    re.compile(rf"^Invalid (?:read|write) at {_P}:"),
    re.compile(rf"^Invalid free of {_P} \(in kfence-#(?P<idx>\d+)\):"),
]
_CPU = re.compile(
    r"^CPU: (?P<cpu>\d+) (?:UID: (?P<uid>\d+) )?PID: (?P<pid>\d+) Comm: (?P<comm>.{1,20}?) "
    r"(?P<taint>Not tainted|Tainted: [A-Z ]*?) +(?P<release>\d+\.\d+\S*)(?P<rest>.*)$"
)
_REG = re.compile(r"\b([A-Z][A-Z0-9]{1,4}): ?(\S+)")
_END = "=" * 20  # the closing line is 66 '=': match a prefix to tolerate trimming
_MAX_LINES = 4000  # a report longer than this is not a report: stop collecting

_BUGS = {
    "out-of-bounds": BugType.OUT_OF_BOUNDS,
    "use-after-free": BugType.USE_AFTER_FREE,
    "memory corruption": BugType.MEMORY_CORRUPTION,
    "invalid free": BugType.INVALID_FREE,
    "invalid": BugType.INVALID_ACCESS,
}


def _bug_of(what: str) -> tuple[BugType, str | None]:
    for prefix, bug in _BUGS.items():
        if what == prefix:
            return bug, None
        if what.startswith(prefix + " ") and prefix not in ("memory corruption", "invalid free"):
            return bug, what[len(prefix) + 1 :]
    raise ValueError(what)


def _addr(text: str) -> tuple[int | None, bool]:
    if text.startswith("("):
        return None, False
    return int(text, 16), len(text) == 16 and text.startswith("00000000")


def _dump(text: str) -> list[CorruptionByte]:
    out = []
    for tok in text.split():
        if tok == ".":
            out.append(CorruptionByte(None))
        elif tok == "!":
            out.append(CorruptionByte(None, hidden=True))
        else:
            try:
                out.append(CorruptionByte(int(tok, 16)))
            except ValueError:
                continue
    return out


def iter_reports(msgs: Iterable[tuple[float | None, str]]) -> Iterator[Report]:
    """Every KFENCE report in a stream of (timestamp, message) pairs."""
    cur: list[tuple[float | None, str]] | None = None
    for ts, msg in msgs:
        if msg.startswith(_BUG):
            if cur:
                rep = build_report(cur, truncated=True)
                if rep:
                    yield rep
            cur = [(ts, msg)]
            continue
        if cur is None:
            continue
        if msg.startswith(_END):
            rep = build_report(cur, truncated=False)
            if rep:
                yield rep
            cur = None
            continue
        cur.append((ts, msg))
        if len(cur) > _MAX_LINES:
            rep = build_report(cur, truncated=True)
            if rep:
                yield rep
            cur = None
    if cur:
        rep = build_report(cur, truncated=True)
        if rep:
            yield rep


def build_report(lines: list[tuple[float | None, str]], truncated: bool = False) -> Report | None:
    """One report's lines (title first, closing '=' line excluded) -> Report.

    Returns None for a title of an unknown bug kind (a future kernel).
    """
    ts0, title = lines[0]
    m = _TITLE.match(title)
    if not m:
        return None
    bug, access = _bug_of(m["what"])
    where = parse_frame(m["where"])
    rep = Report(source="kernel", bug=bug, access=access,
                 function=where.function if where and where.function else m["where"], timestamp=ts0)
    rep.extra["title"] = title.strip()
    if where and where.module:
        rep.extra["module"] = where.module
    body = [msg for _, msg in lines[1:]]
    rep.raw = "\n".join(["=" * 66, *(msg for _, msg in lines), "=" * 66])
    if truncated:
        rep.extra["truncated"] = True
    i = 0
    n = len(body)
    while i < n and not body[i].strip():
        i += 1
    # access line
    obj_index = None
    if i < n:
        for rx in _ACCESS:
            am = rx.match(body[i])
            if am:
                rep.address, rep.hashed = _addr(am["addr"])
                if am["addr"].startswith("("):
                    rep.extra["pointers"] = "hidden"
                gd = am.groupdict()
                if gd.get("dist"):
                    rep.distance, rep.side = int(gd["dist"]), gd["side"]
                if gd.get("dump") is not None:
                    rep.corruption = _dump(gd["dump"])
                if gd.get("idx"):
                    obj_index = int(gd["idx"])
                i += 1
                break
    # access (or free-call) stack: frames until a blank line
    while i < n and body[i].strip():
        f = parse_frame(body[i])
        if f is not None:
            rep.stack.append(f)
        i += 1
    # object block: from 'kfence-#' up to the dump_stack footer
    while i < n and not body[i].strip():
        i += 1
    if i < n and body[i].startswith("kfence-#"):
        j = i
        while j < n and not body[j].startswith(("CPU: ", "Hardware name:", "RIP: ")):
            j += 1
        try:
            rep.object = parse_record("\n".join(body[i:j]))
        except ValueError as e:
            rep.extra["object_error"] = str(e)
        i = j
    if rep.object is None and obj_index is not None:
        rep.object = Object(index=obj_index, state=ObjectState.ALLOCATED)
        rep.extra.setdefault("object_error", "object block missing")
    _footer(rep, body[i:])
    if (rep.bug is BugType.INVALID_FREE and rep.object is not None and rep.object.state is ObjectState.FREED
            and rep.address is not None and rep.address == rep.object.start):
        rep.bug = BugType.DOUBLE_FREE  # freeing the start of an already freed object
    return rep


def _footer(rep: Report, rest: list[str]) -> None:
    regs: dict[str, str] = {}
    trace: list[Frame] = []
    in_trace = seen_trace = False
    for line in rest:
        cm = _CPU.match(line)
        if cm:
            rep.cpu, rep.pid, rep.tid = int(cm["cpu"]), int(cm["pid"]), int(cm["pid"])
            rep.comm = cm["comm"]
            rep.kernel = cm["release"]
            if cm["uid"] is not None:
                rep.extra["uid"] = int(cm["uid"])
            if cm["taint"] != "Not tainted":
                rep.extra["taint"] = cm["taint"].split(":", 1)[1].replace(" ", "")
            rep.extra["build"] = cm["rest"].strip()
            continue
        if line.startswith("Tainted: ["):
            rep.extra["taint_flags"] = line.split(":", 1)[1].strip()
        elif line.startswith("Hardware name: "):
            rep.extra["hardware"] = line[len("Hardware name: "):].strip()
        elif line.startswith("Call Trace:"):
            in_trace = seen_trace = True
        elif in_trace:
            s = line.strip()
            if s in ("<TASK>", "<IRQ>", "</IRQ>", "<NMI>", "</NMI>", "<SOFTIRQ>", "</SOFTIRQ>"):
                continue
            if s == "</TASK>" or not s:
                in_trace = False
                continue
            f = parse_frame(line)
            if f is not None and not is_unreliable(line):
                trace.append(f)
            elif f is None:
                in_trace = False  # user-space register block follows
        elif not seen_trace and (line.startswith(("RIP: ", "RSP: ", "RAX: ", "RDX: ", "RBP: ", "R10: ",
                                                         "R13: ", "FS: ", "CS: ", "CR2: ", "PKRU: "))):
            if line.startswith("RIP: "):
                regs["RIP"] = line[5:].strip()
                continue
            for k, v in _REG.findall(line):
                regs[k] = v
    if regs:
        rep.extra["registers"] = regs
    if trace:
        rep.extra["call_trace"] = [f.to_dict() for f in trace]
