"""layout.py must match shm.h exactly: offsets and sizes checked by a C compiler."""

from __future__ import annotations

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


def _norm(key: str) -> str:
    k = key.strip().replace("struct ", "")
    k = re.sub(r"^(offsetof|sizeof)\(\s*", "", k).rstrip(")")
    k = re.sub(r"\s*,\s*", ".", k)
    st, _, field = k.partition(".")
    st = st if st.startswith("uf_") else f"uf_shm_{st}"
    if st == "uf_shm_depot_rec":
        st = "uf_depot_rec"
    return f"{st}.{field}" if field else st


def test_engine_layout_dump(tmp_path: Path) -> None:
    """The engine engineer's layout_dump prints the engine's view; every name it prints must agree."""
    if not LAYOUT_DUMP.is_file():
        pytest.skip("engine/tools/layout_dump.c not written yet")
    out = _compile_run(LAYOUT_DUMP, tmp_path / "layout_dump")
    mine = layout.offsets()
    seen = {}
    for line in out.splitlines():
        m = re.match(r"^\s*(.+?)\s*[=: ]\s*(\d+)\s*$", line)
        if not m:
            continue
        key = _norm(m[1])
        if key in mine:
            seen[key] = int(m[2])
    assert seen, f"no recognisable 'struct.field offset' lines in layout_dump output:\n{out[:500]}"
    assert seen == {k: mine[k] for k in seen}
    # the header must be covered field by field
    assert all(k in seen for k in mine if k.startswith("uf_shm_header.")), "layout_dump misses header fields"
