"""symbolize(): real addresses of a real program, with each tool."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
from symlib import SRC, Progs, marker_line, nm_functions

from ufence.model import Frame
from ufence.symbolize import Symbolizer
from ufence.symbolize.core import Symbolizer as CoreSymbolizer


def frame(path: Path, offset: int, build_id: str | None = None) -> Frame:
    return Frame(pc=0x5555_0000_0000 + offset, module=str(path), offset=offset, build_id=build_id)


def physical(f: Frame) -> Frame:
    """The entry naming the symbol: the last inlined caller, or the frame itself."""
    return [f, *f.inlined][-1]


def test_function_and_line_at_exact_pc(progs: Progs, symbolizer: Symbolizer) -> None:
    start, size = nm_functions(progs.dbg)["compute"]
    f = frame(progs.dbg, start)
    symbolizer.symbolize([f], exact=[f])
    p = physical(f)
    assert p.function == "compute"
    assert (p.function_offset, p.function_size) == (0, size)
    assert f.file is not None and Path(f.file).name == SRC.name
    assert f.line is not None and 0 < f.line <= marker_line("inl_call") + 2
    assert f.build_id == progs.build_id
    assert symbolizer.notices() == []


def test_inlined_frames(progs: Progs, symbolizer: Symbolizer) -> None:
    """Some pc in compute() is inside the always_inline helper: two source lines, one symbol."""
    start, size = nm_functions(progs.dbg)["compute"]
    frames = [frame(progs.dbg, start + i) for i in range(size)]
    symbolizer.symbolize(frames, exact=frames)
    inlined = [f for f in frames if f.inlined]
    assert inlined, "no pc of compute() was attributed to the inlined helper"
    for f in inlined:
        assert f.function == "inl_helper"
        assert f.line == marker_line("inl_body")
        assert (f.function_offset, f.function_size) == (None, None)  # they belong to the symbol
        outer = f.inlined[-1]
        assert outer.function == "compute"
        assert outer.line == marker_line("inl_call")
        assert outer.function_offset == f.offset - start and outer.function_size == size
    for f in frames:  # every pc names the symbol it is in, with the right offset
        assert physical(f).function == "compute"
        assert physical(f).function_offset == f.offset - start  # type: ignore[operator]


def test_return_address_names_the_call_line(progs: Progs, symbolizer: Symbolizer) -> None:
    """A live process's return address: offset = pc - load bias; looked up at pc-1 -> the call's line."""
    out = subprocess.run([str(progs.dbg)], capture_output=True, text=True, timeout=30, check=True).stdout
    m = re.search(r"main=0x([0-9a-f]+) ra=0x([0-9a-f]+)", out)
    assert m, out
    main_addr, ra = int(m.group(1), 16), int(m.group(2), 16)
    bias = main_addr - nm_functions(progs.dbg)["main"][0]
    f = Frame(pc=ra, module=str(progs.dbg), offset=ra - bias)
    symbolizer.symbolize([f])
    assert physical(f).function == "main"
    assert [f, *f.inlined][0].line == marker_line("ra_call")
    assert physical(f).function_offset == ra - bias - nm_functions(progs.dbg)["main"][0]
    # the same offset as an exact pc is a different lookup, also after the cached one
    g = Frame(pc=ra, module=str(progs.dbg), offset=ra - bias)
    symbolizer.symbolize([g], exact=[g])
    fresh = CoreSymbolizer(tool=symbolizer.tool_name)
    h = Frame(pc=ra, module=str(progs.dbg), offset=ra - bias)
    fresh.symbolize([h], exact=[h])
    fresh.close()
    assert g.to_dict() == h.to_dict()


def test_stripped_binary_uses_dynsym_and_says_no_debug_info(progs: Progs, symbolizer: Symbolizer) -> None:
    funcs = nm_functions(progs.dbg)
    dyn = nm_functions(progs.dbg, dynamic=True)
    assert "compute" in dyn and "local_only" not in dyn  # -rdynamic exports only global functions
    start, size = funcs["compute"]
    exported = frame(progs.stripped, start + 4)
    static = frame(progs.stripped, funcs["local_only"][0] + 2)
    symbolizer.symbolize([exported, static])
    assert (exported.function, exported.function_offset, exported.function_size) == ("compute", 4, size)
    assert exported.file is None and exported.line is None
    assert static.function is None and static.file is None  # not in .dynsym: stays module+offset
    assert f"no debug info for {progs.stripped.name} (install its -dbgsym or build with -g)" in symbolizer.notices()

    from ufence.formats.report_text import frame_lines

    assert frame_lines(static) == [f" {progs.stripped.name}+{static.offset:#x}"]
    assert frame_lines(exported) == [f" compute+0x4/{size:#x} [{progs.stripped.name}]"]


def test_mismatched_build_id_is_refused(progs: Progs, symbolizer: Symbolizer) -> None:
    start, _ = nm_functions(progs.other)["compute"]
    recorded = frame(progs.other, start, build_id=progs.build_id)  # recorded from the first build
    own = frame(progs.other, start, build_id=progs.other_build_id)
    symbolizer.symbolize([recorded, own], exact=[recorded, own])
    assert recorded.function is None and recorded.file is None
    assert physical(own).function == "compute" and own.file is not None
    notes = symbolizer.notices()
    assert any(n.startswith(f"not symbolizing {progs.other.name}:") and "different build" in n for n in notes), notes


def test_debug_file_found_by_build_id(progs: Progs, symbolizer: Symbolizer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UFENCE_DEBUG_ROOT", str(progs.debug_root))
    start, size = nm_functions(progs.dbg)["compute"]
    f = frame(progs.split, start, build_id=progs.build_id)
    symbolizer.symbolize([f], exact=[f])
    assert physical(f).function == "compute" and physical(f).function_size == size
    assert f.file is not None and Path(f.file).name == SRC.name
    assert symbolizer.notices() == []


def test_binary_found_in_search_dir_by_name_and_build_id(progs: Progs, tmp_path: Path) -> None:
    """A report from another machine: the recorded path does not exist here."""
    start, _ = nm_functions(progs.dbg)["compute"]
    s = CoreSymbolizer()
    try:
        f = Frame(pc=1, module=f"/no/such/dir/{progs.dbg.name}", offset=start, build_id=progs.build_id)
        s.symbolize([f], exact=[f])
        assert f.function is None
        assert any("is not on this machine" in n for n in s.notices())
        s.search_dirs = [str(progs.dbg.parent)]
        g = Frame(pc=1, module=f"/no/such/dir/{progs.dbg.name}", offset=start, build_id=progs.build_id)
        s.symbolize([g], exact=[g])
        assert physical(g).function == "compute" and g.file is not None
    finally:
        s.close()


def test_kernel_and_anonymous_frames_left_alone(symbolizer: Symbolizer) -> None:
    kern = Frame(function="do_sys_openat2", function_offset=0x1d, function_size=0x80)
    kmod = Frame(pc=0xFFFFFFFFC0001234, module="ext4", offset=0x1234, function="ext4_fill_super")
    anon = Frame(pc=0x7F0000001000)
    before = [x.to_dict() for x in (kern, kmod, anon)]
    symbolizer.symbolize([kern, kmod, anon])
    assert [x.to_dict() for x in (kern, kmod, anon)] == before


def _libc() -> Path:
    with open("/proc/self/maps") as maps:
        for line in maps:
            path = line.split()[-1]
            if "/libc.so" in path or re.search(r"/libc-[\d.]+\.so$", path):
                return Path(path)
    pytest.skip("no libc mapped")


def test_large_batch_no_deadlock_then_cached(symbolizer: Symbolizer) -> None:
    """20,000 distinct addresses (megabytes through each pipe) in one call; the second call asks nothing."""
    libc = _libc()
    funcs = [(a, s) for a, s in nm_functions(libc, dynamic=True).values() if s > 16]
    assert len(funcs) > 500
    offsets = sorted({a + k * 4 + 1 for a, s in funcs for k in range(min(s // 4, 40))})[:20000]
    assert len(offsets) == 20000
    frames = [frame(libc, o) for o in offsets]
    symbolizer.symbolize(frames)
    asked = symbolizer.queries
    assert asked == len(offsets)
    named = sum(1 for f in frames if physical(f).function)
    assert named > 0.95 * len(frames)
    again = [frame(libc, o) for o in offsets]
    symbolizer.symbolize(again)
    assert symbolizer.queries == asked
    assert [f.to_dict() for f in again] == [f.to_dict() for f in frames]


def test_tool_killed_is_restarted(progs: Progs) -> None:
    s = CoreSymbolizer(tool="llvm-symbolizer")
    if s.tool_name != "llvm-symbolizer":
        pytest.skip("llvm-symbolizer not installed")
    try:
        start, _ = nm_functions(progs.dbg)["compute"]
        a = frame(progs.dbg, start)
        s.symbolize([a], exact=[a])
        server = s.backend.tool.server  # type: ignore[union-attr]
        assert server.proc is not None
        server.proc.kill()
        server.proc.wait()
        b = frame(progs.dbg, start + 1)
        s.symbolize([b], exact=[b])
        assert b.file is not None and server.started == 2
    finally:
        s.close()


def test_no_tool_still_gives_symbol_table_names(progs: Progs) -> None:
    s = CoreSymbolizer(tool="none")
    start, size = nm_functions(progs.dbg)["compute"]
    f = frame(progs.dbg, start + 3)
    s.symbolize([f])
    assert (f.function, f.function_offset, f.function_size, f.file) == ("compute", 3, size, None)
    assert os.path.basename(str(f.module)) == progs.dbg.name


def test_odd_file_names(progs: Progs, symbolizer: Symbolizer, tmp_path: Path) -> None:
    """Spaces and quotes in a module path (llvm-symbolizer's input cannot quote them: addr2line answers)."""
    odd = tmp_path / 'my "odd" dir' / "sym prog"
    odd.parent.mkdir()
    odd.write_bytes(progs.dbg.read_bytes())
    start, _ = nm_functions(progs.dbg)["compute"]
    f = frame(odd, start)
    symbolizer.symbolize([f], exact=[f])
    assert physical(f).function == "compute" and f.file is not None and Path(f.file).name == SRC.name


def test_cxx_names_demangled_with_and_without_debug_info(symbolizer: Symbolizer, tmp_path: Path) -> None:
    src = Path(__file__).resolve().parent / "progs" / "cxxprog.cc"
    dbg, stripped = tmp_path / "cxxprog", tmp_path / "cxxprog-stripped"
    subprocess.run(["g++", "-g", "-O1", "-rdynamic", "-o", str(dbg), str(src)], check=True, timeout=120)
    subprocess.run(["strip", "-o", str(stripped), str(dbg)], check=True, timeout=60)
    mangled = {n: v for n, v in nm_functions(dbg).items() if "Cart5total" in n}
    assert len(mangled) == 1
    (start, size), = mangled.values()
    a, b = frame(dbg, start + 1), frame(stripped, start + 1)
    symbolizer.symbolize([a, b], exact=[a, b])
    assert (a.function, a.function_offset, a.function_size) == ("shop::Cart::total(int)", 1, size)
    assert a.file == str(src) and a.line == marker_line("total", src)
    assert (b.function, b.function_offset, b.file) == ("shop::Cart::total(int)", 1, None)


def test_rust_names_demangled_without_debug_info(symbolizer: Symbolizer, tmp_path: Path) -> None:
    """A Rust program without debug info: its own functions (legacy scheme) and the standard library's
    (v0) named from the symbol table, demangled without the hashes, as the engine's text prints them."""
    import shutil
    rustc = shutil.which("rustc") or next((p for p in ("/root/.cargo/bin/rustc",) if os.access(p, os.X_OK)), None)
    if rustc is None:
        pytest.skip("rustc not installed")
    src = tmp_path / "names.rs"
    src.write_text("#[inline(never)] fn grow(v: &mut Vec<u64>) { v.push(7); }\n"
                   "fn main() { let mut v = Vec::new(); for _ in 0..100 { grow(&mut v); }\n"
                   "println!(\"{}\", v.len()); }\n")
    exe = tmp_path / "names"
    subprocess.run([rustc, "-C", "opt-level=1", "-C", "debuginfo=0", "-o", str(exe), str(src)], check=True,
                   capture_output=True, timeout=300)
    funcs = nm_functions(exe)
    legacy = [n for n in funcs if n.startswith("_ZN") and "4grow17h" in n]
    v0 = sorted(n for n in funcs if n.startswith("_R") and funcs[n][1] > 1)
    assert len(legacy) == 1 and v0, sorted(funcs)[:20]
    frames = [frame(exe, funcs[n][0] + 1) for n in (legacy[0], v0[0])]
    symbolizer.symbolize(frames, exact=frames)
    assert physical(frames[0]).function == "names::grow"
    name = physical(frames[1]).function or ""
    assert name and not name.startswith("_R") and "::" in name and not re.search(r"\[[0-9a-f]{8,}\]", name), name


def test_debug_file_found_by_debuglink(progs: Progs, symbolizer: Symbolizer, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """No build-id tree: the stripped binary's .gnu_debuglink names its debug file in .debug/ beside it."""
    monkeypatch.setenv("UFENCE_DEBUG_ROOT", str(tmp_path / "no-root"))
    (tmp_path / ".debug").mkdir()
    dbgfile = tmp_path / ".debug" / "linked.debug"
    subprocess.run(["objcopy", "--only-keep-debug", str(progs.dbg), str(dbgfile)], check=True, timeout=60)
    linked = tmp_path / "linked"
    subprocess.run(["objcopy", "--strip-debug", "--strip-unneeded", f"--add-gnu-debuglink={dbgfile}",
                    str(progs.dbg), str(linked)], check=True, timeout=60, cwd=tmp_path)
    start, _ = nm_functions(progs.dbg)["compute"]
    f = frame(linked, start)
    symbolizer.symbolize([f], exact=[f])
    assert physical(f).function == "compute" and f.file is not None and Path(f.file).name == SRC.name
    assert symbolizer.notices() == []
