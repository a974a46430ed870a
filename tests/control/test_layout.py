"""layout.py must match shm.h exactly: offsets and sizes checked by a C compiler."""

from __future__ import annotations

import ctypes
import json
import re
import subprocess
from pathlib import Path

import pytest

from ufence.backends.process import layout

REPO = Path(__file__).resolve().parents[2]
INCLUDE = REPO / "engine" / "include"
LAYOUT_DUMP = REPO / "engine" / "tools" / "layout_dump.c"


def _compile_run(src: Path, out: Path) -> str:
    subprocess.run(["cc", "-std=c11", "-Wall", "-Wextra", "-Werror", "-I", str(INCLUDE), "-I", str(REPO / "engine"),
                    "-o", str(out), str(src)], check=True, capture_output=True, text=True)
    return subprocess.run([str(out)], check=True, capture_output=True, text=True, timeout=30).stdout


def test_offsets_match_shm_h(tmp_path: Path) -> None:
    """A C program generated from layout.py's field list prints offsetof/sizeof of each."""
    lines = []
    for key in layout.offsets():
        st, _, field = key.partition(".")
        expr = f"offsetof(struct {st}, {field})" if field else f"sizeof(struct {st})"
        lines.append(f'    printf("%s %zu\\n", "{key}", (size_t){expr});')
    src = tmp_path / "dump.c"
    src.write_text("#include <stddef.h>\n#include <stdio.h>\n#include <ufence/shm.h>\nint main(void) {\n"
                   + "\n".join(lines) + "\n    return 0;\n}\n")
    got = dict(line.split() for line in _compile_run(src, tmp_path / "dump").splitlines())
    mine = layout.offsets()
    assert {k: int(v) for k, v in got.items()} == mine


def test_stat_names_match_shm_h() -> None:
    text = (INCLUDE / "ufence" / "shm.h").read_text()
    body = text[text.index("#define UF_STATS(X)"):text.index("enum uf_stat {")]
    assert tuple(re.findall(r"X\((\w+)\)", body)) == layout.STAT_NAMES


def test_engine_layout_dump(tmp_path: Path) -> None:
    """The engine's layout_dump (JSON: struct -> size, fields -> offset, size) must agree field by field."""
    if not LAYOUT_DUMP.is_file():
        pytest.skip("engine/tools/layout_dump.c not written yet")
    dump = json.loads(_compile_run(LAYOUT_DUMP, tmp_path / "layout_dump"))
    mine = layout.offsets()
    for st, cls in layout.STRUCTS.items():
        assert st in dump, f"layout_dump has no {st}"
        assert dump[st]["size"] == mine[st], st
        fields = dict(dump[st]["fields"])
        if st == "uf_depot_rec":  # flexible array member: frames follow the record header
            assert fields.pop("frames") == {"offset": ctypes.sizeof(cls), "size": 8}
        want = {name: {"offset": getattr(cls, name).offset, "size": getattr(cls, name).size}
                for name, *_ in cls._fields_}
        assert fields == want, st
