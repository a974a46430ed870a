"""Streaming parser for /sys/kernel/debug/kfence/objects, every version.

The file is one record per pool slot, each ended by a line of 33 dashes.
Variants handled (kfence-kernel.md sections 1.3 and 3.4):

- 5.12/5.13 header ``kfence-#N [0x..-0x.., size=S, cache=C] allocated by task T:``
  and ``freed by task T:``;
- 5.14+ header ``kfence-#N: 0x..-0x.., size=S, cache=C`` and track headers
  ``allocated by task T on cpu C at S.Us:``, 6.12+ with `` (X.Ys ago)`` and
  ``rcu freeing``;
- ``kfence-#N unused`` slots, `` no allocation stack`` lines;
- hashed (``0x00000000xxxxxxxx``), raw and ``0x(____ptrval____)`` pointers;
- Anolis ``node N:`` lines before each record, indices that restart in every
  1 GiB area and a doubled separator at area boundaries.

The parser reads fixed-size chunks and works record by record with string
methods running in C, so a 1.3-million-object file streams in a few seconds
with memory bounded by the chunk size and a capped cache of stack texts
(kernel stacks repeat a lot; one parse per distinct stack).
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterator
from typing import IO

from ufence.backends.kernel.frames import parse_frame
from ufence.errors import UfenceError
from ufence.model import Frame, Object, ObjectState, Track

SEPARATOR = "-" * 33
_SEP_LINE = SEPARATOR + "\n"
_PTR = r"0x(\(____ptrval____\)|[0-9a-f]+)"
_HEADER = re.compile(
    r"kfence-#(\d+)(?:(?P<unused> unused)"
    rf"|: {_PTR}-{_PTR}, size=(\d+), cache=(.*)"
    rf"| \[{_PTR}-{_PTR}, size=(\d+), cache=([^\]]*)\] allocated by task (-?\d+):)\s*$"
)
_TRACK = re.compile(
    r"(allocated|freed|rcu freeing) by task (-?\d+)"
    r"(?: on cpu (-?\d+) at (\d+\.\d+)s(?: \((\d+\.\d+)s ago\))?)?:\s*$"
)
_NO_STACK = (" no allocation stack", " no deallocation stack")
_CHUNK = 1 << 22  # 4 MiB of text per read: bounds memory, amortises Python overhead
_MAX_RECORD = 1 << 20  # no real record is near 1 MiB (64 frames max per track)
_STACK_CACHE_MAX = 65536

_ALLOCATED, _UNUSED = ObjectState.ALLOCATED, ObjectState.UNUSED
_STATE = {"freed": ObjectState.FREED, "rcu freeing": ObjectState.RCU_FREEING}


class _Ints(dict[str, int]):
    """Decimal text -> int, memoised: indices, sizes, pids and cpus repeat
    across a million records and a dict hit is several times cheaper than
    int(). Capped so a hostile file cannot grow it without bound."""

    def __missing__(self, key: str) -> int:
        v = int(key)
        if len(self) < 400_000:
            self[key] = v
        return v


class _StackCache:
    """Distinct stack texts -> parsed frames, capped so memory stays bounded.

    The same list is handed to every track with that stack text (kernel
    stacks repeat heavily); callers treat Track.frames as read-only.
    """

    def __init__(self) -> None:
        self._d: dict[str, list[Frame]] = {}

    def frames(self, text: str) -> list[Frame]:
        got = self._d.get(text)
        if got is None:
            out: list[Frame] = []
            for line in text.split("\n"):
                if not line.strip() or line in _NO_STACK:
                    continue
                f = parse_frame(line)
                if f is None:
                    raise ValueError(f"not a stack frame: {line.strip()[:80]!r}")
                out.append(f)
            got = out
            if len(self._d) >= _STACK_CACHE_MAX:
                self._d.clear()
            self._d[text] = got
        return got


def _ptr(text: str) -> tuple[int | None, bool]:
    """Pointer text after ``0x`` -> (value or None if hidden, hashed?).

    Hashed pointers are 32-bit hashes printed zero-padded to 16 digits; real
    kernel addresses on 64-bit machines have their top bits set.
    """
    if text.startswith("("):
        return None, False
    return int(text, 16), len(text) == 16 and text.startswith("00000000")


def _track(line: str) -> Track:
    m = _TRACK.match(line)
    if not m:
        raise ValueError(f"not an allocation/free track header: {line.strip()[:80]!r}")
    kind, task, cpu, ts, age = m.groups()
    return Track(
        kind=kind, tid=int(task), cpu=int(cpu) if cpu is not None else None,
        timestamp=float(ts) if ts is not None else None, age=float(age) if age is not None else None,
    )


def parse_record(text: str, cache: _StackCache | None = None) -> Object | None:
    """One record (without its separator) -> Object; None for an empty record.

    Raises ValueError with the reason when the text is not a KFENCE record.
    """
    cache = cache or _StackCache()
    text = text.strip("\n")
    if not text.strip():
        return None
    node = None
    if text.startswith("node "):
        nl = text.find("\n")
        head = text[5:nl] if nl >= 0 else text[5:]
        try:
            node = int(head.rstrip().rstrip(":"))
        except ValueError:
            raise ValueError(f"bad node line: {head[:40]!r}") from None
        text = text[nl + 1 :] if nl >= 0 else ""
        if not text.strip("\n"):
            raise ValueError(f"node {node}: record has no object header (truncated?)")
        text = text.lstrip("\n")
    sections = text.split("\n\n")
    first = sections[0]
    nl = first.find("\n")
    header = first if nl < 0 else first[:nl]
    m = _HEADER.match(header)
    if not m:
        raise ValueError(f"not a KFENCE object header: {header.strip()[:80]!r}")
    g = m.groups()
    index = int(g[0])
    if g[1]:
        if len(sections) > 1 or nl >= 0:
            raise ValueError(f"kfence-#{index} unused slot has extra lines")
        return Object(index=index, state=ObjectState.UNUSED, node=node)
    tracks: list[Track] = []
    if g[2] is not None:  # 5.14+
        s_txt, e_txt, size, cache_name = g[2], g[3], g[4], g[5]
        if nl >= 0:
            raise ValueError(f"kfence-#{index}: expected a blank line after the header")
        rest = sections[1:]
    else:  # 5.12/5.13: header carries the alloc track, its stack follows directly
        s_txt, e_txt, size, cache_name = g[6], g[7], g[8], g[9]
        trk = Track(kind="allocated", tid=int(g[10]))
        trk.frames = cache.frames(first[nl + 1 :]) if nl >= 0 else []
        tracks.append(trk)
        rest = sections[1:]
    for sec in rest:
        sec = sec.strip("\n")
        if not sec:
            continue
        nl2 = sec.find("\n")
        trk = _track(sec if nl2 < 0 else sec[:nl2])
        trk.frames = cache.frames(sec[nl2 + 1 :]) if nl2 >= 0 else []
        tracks.append(trk)
    start, hashed = _ptr(s_txt)
    end, _ = _ptr(e_txt)
    obj = Object(
        index=index, state=ObjectState.ALLOCATED, start=start, end=end, size=int(size),
        cache=cache_name.strip(), node=node, hashed=hashed,
    )
    if start is None:
        obj.flags.append("pointers-hidden")
    if obj.cache == "<destroyed>":
        obj.flags.append("cache-destroyed")
    for trk in tracks:
        if trk.kind == "allocated":
            if obj.alloc is not None:
                raise ValueError(f"kfence-#{index}: two allocation tracks")
            obj.alloc = trk
        else:
            obj.free = trk
            obj.state = _STATE[trk.kind]
    if obj.alloc is None:
        raise ValueError(f"kfence-#{index}: no allocation track (truncated?)")
    return obj


# Fast path: one regex matches a whole modern (5.14+, Anolis) record and its
# separator(s), so the per-character work runs in C. The tracks after the
# allocation header are taken as one run of non-dash text (kernel symbols,
# module names and track headers never contain '-'), split in Python. Any
# text it does not match (5.12 headers, corrupt records) goes through
# parse_record(), which gives the precise error.
_PTR_RE = r"0x([0-9a-f]+|\(____ptrval____\))"
_TRK_RE = r"by task (-?\d+) on cpu (-?\d+) at (\d+\.\d+)s(?: \((\d+\.\d+)s ago\))?:\n"
_FAST = re.compile(
    r"(?:node (\d+):\n)?kfence-#(\d+)(?: unused\n|: " + _PTR_RE + "-" + _PTR_RE
    + r", size=(\d+), cache=([^\n]*)\n\nallocated " + _TRK_RE + r"([^-]*))(?:" + SEPARATOR + r"\n)+"
)
_FREE_HDR = re.compile(r"(freed|rcu freeing) " + _TRK_RE)


def _slow(text: str, line_no: int, name: str, cache: _StackCache, last: bool) -> Iterator[Object]:
    parts = text.split(_SEP_LINE)
    for i, rec in enumerate(parts):
        try:
            obj = parse_record(rec, cache)
        except ValueError as e:
            at = line_no + sum(p.count("\n") + 1 for p in parts[:i])
            if last and i == len(parts) - 1:
                raise UfenceError(f"{name}:{at}: truncated last record: {e}") from None
            raise UfenceError(f"{name}:{at}: {e}") from None
        if obj is not None:
            yield obj


def _block(block: str, line_no: int, name: str, cache: _StackCache, ints: _Ints, last: bool) -> Iterator[Object]:
    pos = 0
    stacks = cache._d
    frames_of = cache.frames
    # locals, not globals: this loop body runs once per slot, a million times
    free_hdr, new_track, new_object, to_float = _FREE_HDR, Track, Object, float
    for m in _FAST.finditer(block):
        mstart = m.start()
        if mstart != pos:
            gap = block[pos:mstart]
            at = line_no + block.count("\n", 0, pos)
            if not gap.endswith(_SEP_LINE):  # the match began mid-record: parse that record slowly too
                yield from _slow(block[pos : m.end()], at, name, cache, False)
                pos = m.end()
                continue
            yield from _slow(gap, at, name, cache, False)
        pos = m.end()
        node, index, s_txt, e_txt, size, cname, tid, cpu, ts, age, rest = m.groups()
        if node is not None:
            node = ints[node]
        if s_txt is None:
            yield new_object(ints[index], _UNUSED, node=node)
            continue
        free = None
        brk = rest.find("\n\n")
        try:
            if brk >= 0:
                fm = free_hdr.match(rest, brk + 2)
                if fm is None:  # odd free-track text: let the record parser judge it
                    yield from _slow(m.group(0), line_no + block.count("\n", 0, mstart), name, cache, False)
                    continue
                fk, ftid, fcpu, fts, fage = fm.groups()
                fstack = rest[fm.end() :]
                free = new_track(fk, ints[ftid], ints[fcpu], to_float(fts), None if fage is None else to_float(fage),
                         (stacks.get(fstack) or frames_of(fstack)) if fstack else [])
                rest = rest[: brk + 1]
            alloc = new_track("allocated", ints[tid], ints[cpu], to_float(ts), None if age is None else to_float(age),
                      (stacks.get(rest) or frames_of(rest)) if rest else [])
        except ValueError as e:  # a frame line the fast regex let through but parse_frame rejects
            raise UfenceError(f"{name}:{line_no + block.count(chr(10), 0, mstart)}: {e}") from None
        nbytes = ints[size]
        if s_txt[0] == "(":
            obj = new_object(ints[index], _ALLOCATED, None, None, nbytes, cname, node, False, alloc,
                             flags=["pointers-hidden"])
        elif len(s_txt) == 16 and s_txt.startswith("00000000"):  # hashed: end is its own hash
            obj = new_object(ints[index], _ALLOCATED, int(s_txt, 16), int(e_txt, 16), nbytes, cname, node, True, alloc)
        else:  # raw address: the kernel prints start..start+size-1
            start = int(s_txt, 16)
            obj = new_object(ints[index], _ALLOCATED, start, start + nbytes - 1, nbytes, cname, node, False, alloc)
        if free is not None:
            obj.free = free
            obj.state = _STATE[free.kind]
        if cname == "<destroyed>":
            obj.flags.append("cache-destroyed")
        yield obj
    if pos < len(block):
        yield from _slow(block[pos:], line_no + block.count("\n", 0, pos), name, cache, last)


def iter_objects(fp: IO[str] | IO[bytes], name: str = "objects") -> Iterator[Object]:
    """Stream every slot of an objects file (text or binary mode).

    Binary is faster: chunks are decoded here without TextIOWrapper's
    newline translation (CRLF copies are still accepted).
    Errors name the file and line: ``UfenceError("objects:812: ...")``.
    Leading ``#`` comment lines (saved excerpts) are skipped.
    """
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    cache = _StackCache()
    ints = _Ints()
    buf = ""
    line_no = 1  # line number where ``buf`` starts
    at_start = True
    eof = cr = False
    while not eof:
        raw = fp.read(_CHUNK)
        data = decoder.decode(raw, final=not raw) if isinstance(raw, bytes) else raw
        if cr:
            data, cr = "\r" + data, False
        if "\r" in data:
            if raw and data.endswith("\r"):  # its "\n" may start the next chunk
                data, cr = data[:-1], True
            data = data.replace("\r\n", "\n")
        if not raw:
            eof = True
            block, buf = buf + data, ""  # data: what the decoder still held (a cut UTF-8 sequence)
            if block and not block.endswith("\n"):
                block += "\n"
        else:
            buf += data
            if at_start:
                while buf.startswith("#") and "\n" in buf:
                    buf = buf[buf.index("\n") + 1 :]
                    line_no += 1
                if buf.startswith("#"):
                    continue
                at_start = False
            cut = buf.rfind("\n" + _SEP_LINE)
            if cut < 0:
                if buf.startswith(_SEP_LINE):
                    cut = -1
                elif len(buf) > _MAX_RECORD:
                    raise UfenceError(f"{name}:{line_no}: no '{SEPARATOR}' separator in 1 MiB: "
                                      "not a KFENCE objects file")
                else:
                    continue
            end = cut + 1 + len(_SEP_LINE)
            # take following separators too, so a doubled one never starts a block
            while buf.startswith(_SEP_LINE, end):
                end += len(_SEP_LINE)
            block, buf = buf[:end], buf[end:]
        if block:
            yield from _block(block, line_no, name, cache, ints, eof)
            line_no += block.count("\n")


def parse_objects_text(text: str, name: str = "objects") -> list[Object]:
    import io

    return list(iter_objects(io.StringIO(text), name))
