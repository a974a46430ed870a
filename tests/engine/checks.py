"""Assertions shared by the engine tests: one report, its KFENCE text and its JSON, checked exactly."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path

from enginelib import GUARD_IDS, Run, TextReport, addr2line, build_id

from ufence.model import BugType, Report


@dataclass(frozen=True)
class Expect:
    """What one report must say."""

    bug: str  # BugType value
    fn: str  # the program's function named in the title and first in the stack
    address: int
    access: str | None = None  # "read" | "write"
    obj_start: int | None = None  # None: no object (invalid access)
    obj_size: int | None = None
    side: str | None = None
    corruption: tuple[int | None, ...] | None = None
    freed_by: str | None = None  # first frame of the "freed by" stack, when the object was freed
    alloc_by: tuple[str, ...] | None = None  # first frames of "allocated by"; default test_alloc, fn
    caller: str = "main"  # frame after fn in the access stack

    @property
    def alloc_prefix(self) -> list[str]:
        return list(self.alloc_by) if self.alloc_by is not None else ["test_alloc", self.fn]

    @property
    def distance(self) -> int | None:
        if self.bug != BugType.OUT_OF_BOUNDS.value or self.obj_start is None:
            return None
        return self.obj_start - self.address if self.side == "left" else self.address - self.obj_start

    def title_what(self) -> str:
        if self.bug in ("out-of-bounds", "use-after-free", "invalid"):
            return f"{self.bug} {self.access}"
        return self.bug


def size_class(size: int) -> str:
    for c in (8, 16, 32, 64, 96, 128, 192, 256, 512, 1024, 2048, 4096):
        if size <= c:
            return f"malloc-{c}" if c < 1024 else f"malloc-{c // 1024}k"
    raise AssertionError(size)


def access_line(e: Expect, idx: int | None) -> str:
    a = f"{e.address:#x}"
    if e.bug == "out-of-bounds":
        return rf"Out-of-bounds {e.access} at {a} \({e.distance}B {e.side} of ufence-#{idx}\):"
    if e.bug == "use-after-free":
        return rf"Use-after-free {e.access} at {a} \(in ufence-#{idx}\):"
    if e.bug == "memory corruption":
        assert e.corruption is not None
        dump = " ".join("." if v is None else f"0x{v:02x}" for v in e.corruption)
        return rf"Corrupted memory at {a} \[ {re.escape(dump)} \] \(in ufence-#{idx}\):"
    if e.bug == "invalid":
        return rf"Invalid {e.access} at {a}:"
    if e.bug == "invalid free":
        return rf"Invalid free of {a} \(in ufence-#{idx}\):"
    if e.bug == "double free":  # KFENCE says "Invalid free of"; ufence names it as in the title
        return rf"Double free of {a} \(in ufence-#{idx}\):"
    raise AssertionError(e.bug)


def no_engine_frames(frames: list[str], what: str, run: Run) -> None:
    bad = [f for f in frames if "libufence" in f or f.startswith("uf_")]
    assert not bad, f"engine frames in {what}: {bad}\n{run.describe()}"


def check_engine_info(run: Run, guard: str | None = None, **settings: str) -> None:
    """The program saw the engine with the guard mechanism and settings the flags asked for."""
    assert "guard" in run.info, f"program did not describe the engine\n{run.describe()}"
    if guard is not None:
        assert run.value("guard") == GUARD_IDS[guard], f"guard mechanism {run.info['guard']}, want {guard}"
    for k, v in settings.items():
        assert run.settings.get(k) == v, f"setting {k}={run.settings.get(k)!r}, want {v!r}"


def check_no_reports(run: Run) -> None:
    assert not run.text, f"unexpected report\n{run.describe()}"
    assert not run.json, f"unexpected JSON report {run.json_paths}\n{run.describe()}"


def check_one_report(run: Run, exe: Path, e: Expect) -> tuple[TextReport, Report]:
    """Exactly one report, text and JSON, saying exactly what ``e`` says."""
    d = run.describe()
    assert len(run.text) == 1, f"{len(run.text)} text reports, want 1\n{d}"
    assert len(run.json) == 1, f"{len(run.json)} JSON reports ({run.json_paths}), want 1\n{d}"
    t, j = run.text[0], run.json[0]
    exe_path = str(exe.resolve())
    pid = run.value("pid")

    # --- text: title, access line, access stack
    title = rf"BUG: UFENCE: {e.title_what()} in {e.fn}\+0x[0-9a-f]+/0x[0-9a-f]+"
    assert re.fullmatch(title, t.title), f"title {t.title!r}, want /{title}/\n{d}"
    idx = j.object.index if j.object else None
    if e.obj_start is not None:
        assert t.object is not None, f"no object line\n{d}"
        idx = int(t.object["index"])
    line = access_line(e, idx)
    assert re.fullmatch(line, t.access), f"access line {t.access!r}, want /{line}/\n{d}"
    funcs = t.funcs()
    assert funcs[:2] == [e.fn, e.caller], f"access stack {funcs}, want [{e.fn}, {e.caller}, ...]\n{d}"
    assert t.stack[0].module == exe.name, f"module {t.stack[0].module!r}, want {exe.name!r}"
    no_engine_frames(funcs + [f.module for f in t.stack], "access stack", run)

    # --- text: object line and tracks
    if e.obj_start is not None:
        assert e.obj_size is not None and t.object is not None
        assert int(t.object["start"], 16) == e.obj_start, f"object start {t.object['start']}\n{d}"
        assert int(t.object["end"], 16) == e.obj_start + e.obj_size - 1, f"object end {t.object['end']}\n{d}"
        assert int(t.object["size"]) == e.obj_size
        assert t.object["cache"] == size_class(e.obj_size)
        alloc = t.tracks.get("allocated")
        assert alloc is not None, f"no 'allocated by' track\n{d}"
        got = [f.func for f in alloc.frames]
        want = e.alloc_prefix
        assert got[:len(want)] == want, f"allocated-by stack {got}, want {want}...\n{d}"
        assert alloc.ago >= 0 and alloc.at >= 0
        assert alloc.tid == pid, f"allocated by thread {alloc.tid}, the program is single-threaded ({pid})"
        no_engine_frames(got + [f.module for f in alloc.frames], "allocated-by stack", run)
        if e.freed_by is not None:
            freed = t.tracks.get("freed")
            assert freed is not None, f"no 'freed by' track\n{d}"
            got = [f.func for f in freed.frames]
            assert got[:1] == [e.freed_by], f"freed-by stack {got}, want [{e.freed_by}, ...]\n{d}"
            assert freed.at >= alloc.at
            no_engine_frames(got + [f.module for f in freed.frames], "freed-by stack", run)
    else:
        assert t.object is None, f"object line for a bug without object\n{d}"
    assert t.proc is not None, f"no PID/Comm/Exe line\n{d}"
    assert int(t.proc["pid"]) == pid and int(t.proc["tid"]) == pid
    assert t.proc["comm"] == exe.name[:15]
    assert t.proc["exe"] == exe_path
    assert t.report_path is not None and Path(t.report_path) == run.json_paths[0], \
        f"Report: line {t.report_path!r} vs {run.json_paths}"

    # --- JSON: private files in a private directory (docs/design.md)
    st = run.json_paths[0].stat()
    assert st.st_mode & 0o777 == 0o600, f"report file mode {st.st_mode & 0o777:o}"
    assert run.report_dir.stat().st_mode & 0o777 == 0o700, f"report dir mode {run.report_dir.stat().st_mode:o}"
    assert run.json_paths[0].name == f"{pid}-1.json", run.json_paths[0].name
    assert j.source == "process"
    assert j.bug is BugType(e.bug), f"JSON bug {j.bug}, want {e.bug}"
    assert j.access == e.access, f"JSON access {j.access}, want {e.access}"
    assert j.function is not None and re.fullmatch(rf"{e.fn}(\+0x[0-9a-f]+/0x[0-9a-f]+)?", j.function), j.function
    assert j.address == e.address, f"JSON address {j.address:#x}, want {e.address:#x}"
    assert j.distance == e.distance, f"JSON distance {j.distance}, want {e.distance}"
    if e.side is not None:
        assert j.side == e.side
    assert j.pid == pid and j.tid == pid and j.comm == exe.name[:15] and j.exe == exe_path, (j.pid, j.comm, j.exe)
    assert j.timestamp is not None and abs(time.time() - j.timestamp) < 600, f"JSON timestamp {j.timestamp}"
    if e.corruption is not None:
        assert [b.value for b in j.corruption] == list(e.corruption), f"JSON corruption {j.corruption}"
    check_frames(j.stack, exe_path, [e.fn, e.caller], "JSON stack", run)
    if e.obj_start is not None:
        assert j.object is not None, f"JSON without object\n{d}"
        assert j.object.index == idx
        assert (j.object.start, j.object.end, j.object.size) == (e.obj_start, e.obj_start + e.obj_size - 1,
                                                                 e.obj_size)
        assert j.object.cache == size_class(e.obj_size)
        assert j.object.alloc is not None and j.object.alloc.tid == pid
        check_frames(j.object.alloc.frames, exe_path, e.alloc_prefix, "JSON alloc stack", run)
        if e.freed_by is not None:
            assert j.object.free is not None, "JSON object without free track"
            check_frames(j.object.free.frames, exe_path, [e.freed_by], "JSON free stack", run)
    else:
        assert j.object is None
    return t, j


def check_frames(frames: list, exe_path: str, want: list[str], what: str, run: Run) -> None:
    """Raw JSON frames carry module, offset and build id, and symbolize to ``want`` offline."""
    assert len(frames) >= len(want), f"{what}: {len(frames)} frames\n{run.describe()}"
    head = frames[:len(want)]
    for f in head:
        assert f.pc is not None and f.offset is not None, f"{what}: frame without pc/offset: {f}"
        assert f.module == exe_path, f"{what}: module {f.module!r}, want {exe_path!r}"
        assert f.build_id == build_id(exe_path), f"{what}: build_id {f.build_id!r}, want {build_id(exe_path)!r}"
    names = addr2line(exe_path, [f.offset for f in head])
    assert names == want, f"{what}: offsets symbolize to {names}, want {want}"
    no_engine_frames([str(f.module) for f in frames] + [str(f.function) for f in frames if f.function],
                     what, run)
