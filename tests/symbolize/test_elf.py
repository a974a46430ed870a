"""The ELF reader against binutils, and against broken files."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest
from symlib import Progs, build_id_of, nm_functions

from ufence.symbolize import elf


def test_build_id_debug_info_and_symbols_match_binutils(progs: Progs) -> None:
    info = elf.read(str(progs.dbg))
    assert info.build_id == build_id_of(progs.dbg)
    assert info.has_debug_info
    ours = {s.name: (s.start, s.size) for s in info.symbols}
    for name, (addr, size) in nm_functions(progs.dbg).items():
        assert ours.get(name) == (addr, size) or any(s.start == addr for s in info.symbols), name
    for name, (addr, size) in nm_functions(progs.dbg).items():
        if size:
            hit = info.lookup(addr + size - 1)
            assert hit is not None and hit.start == addr, name
    assert elf.read(str(progs.other)).build_id == progs.other_build_id


def test_stripped_keeps_build_id_and_dynsym(progs: Progs) -> None:
    info = elf.read(str(progs.stripped))
    assert info.build_id == progs.build_id and not info.has_debug_info
    assert {s.name for s in info.symbols} >= set(nm_functions(progs.dbg, dynamic=True))


def test_shared_library_from_the_system() -> None:
    with open("/proc/self/maps") as maps:
        libc = next((line.split()[-1] for line in maps if "/libc.so" in line), None)
    if libc is None:
        pytest.skip("no libc mapped")
    info = elf.read(libc)
    assert info.build_id == build_id_of(Path(libc))
    names = {s.name for s in info.symbols}
    assert {"malloc", "free", "printf"} <= names


@pytest.mark.parametrize("seed", range(6))
def test_truncated_and_corrupted_files_raise_elf_error_only(progs: Progs, tmp_path: Path, seed: int) -> None:
    data = bytearray(progs.dbg.read_bytes())
    rng = random.Random(seed)
    bad = tmp_path / "bad"
    cases = [bytes(data[: rng.randrange(1, 4096)]), bytes(data[: rng.randrange(4096, len(data))])]
    flipped = bytearray(data)
    for _ in range(200):
        flipped[rng.randrange(0, 4096)] = rng.randrange(256)
    cases.append(bytes(flipped))
    cases.append(b"\x7fELF" + bytes(rng.randrange(256) for _ in range(200)))
    for blob in cases:
        bad.write_bytes(blob)
        try:
            info = elf.read(str(bad))
        except elf.ElfError:
            continue
        info.lookup(0x1000)  # a parse that succeeded must give a usable table


def test_not_elf_and_missing(tmp_path: Path) -> None:
    (tmp_path / "text").write_text("hello\n")
    (tmp_path / "empty").write_bytes(b"")
    for name in ("text", "empty", "missing"):
        with pytest.raises(elf.ElfError):
            elf.read(str(tmp_path / name))
    with pytest.raises(elf.ElfError):
        elf.read(str(tmp_path))
    os.mkfifo(tmp_path / "fifo")  # opening it would block: refused before that
    with pytest.raises(elf.ElfError, match="not a regular file"):
        elf.read(str(tmp_path / "fifo"))
