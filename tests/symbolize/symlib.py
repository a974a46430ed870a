"""Helpers for symbolization tests: one C program built several ways.

- ``dbg``: -g -O2 -rdynamic (exports its functions in .dynsym), named symprog
- ``stripped``: ``strip`` of dbg (same build id, no .symtab, no DWARF)
- ``other``: the same source linked with a different build id
- ``split``: stripped binary whose DWARF is in a debug root under
  ``.build-id/xx/yyyy.debug`` (as -dbgsym packages install it)

Expected values come from the tools (nm, readelf) and from ``LINE:`` markers
in the source, never from numbers written in the tests.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ufence.symbolize.servers import llvm_symbolizer_path

HERE = Path(__file__).resolve().parent
SRC = HERE / "progs" / "symprog.c"


@dataclass
class Progs:
    dbg: Path
    stripped: Path
    other: Path
    split: Path
    debug_root: Path
    build_id: str
    other_build_id: str


def run(*cmd: str | Path) -> str:
    return subprocess.run([str(c) for c in cmd], check=True, capture_output=True, text=True, timeout=60).stdout


def build_id_of(path: Path) -> str:
    m = re.search(r"Build ID: ([0-9a-f]+)", run("readelf", "-n", path))
    assert m, f"no build id in {path}"
    return m.group(1)


def nm_functions(path: Path, dynamic: bool = False) -> dict[str, tuple[int, int]]:
    """name -> (address, size) of the defined functions, as nm sees them."""
    out = run("nm", "-S", "--defined-only", *(["-D"] if dynamic else []), path)
    funcs: dict[str, tuple[int, int]] = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[2] in ("T", "t", "W"):
            funcs[parts[3]] = (int(parts[0], 16), int(parts[1], 16))
    return funcs


def marker_line(name: str, src: Path = SRC) -> int:
    for i, text in enumerate(src.read_text().splitlines(), 1):
        if f"LINE:{name} */" in text or text.rstrip().endswith(f"// LINE:{name}"):
            return i
    raise AssertionError(f"no LINE:{name} marker")


def tools() -> list[str]:
    out = []
    if llvm_symbolizer_path():
        out.append("llvm-symbolizer")
    if shutil.which("addr2line"):
        out.append("addr2line")
    return out
