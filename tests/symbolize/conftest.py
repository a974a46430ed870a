"""Fixtures for symbolization tests (the programs are described in symlib)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest
from symlib import SRC, Progs, build_id_of, run, tools

from ufence.symbolize import Symbolizer


@pytest.fixture(scope="session")
def progs(tmp_path_factory: pytest.TempPathFactory) -> Progs:
    d = tmp_path_factory.mktemp("symprogs")
    cc = ["cc", "-g", "-O2", "-rdynamic", "-fno-omit-frame-pointer"]
    dbg = d / "symprog"
    run(*cc, "-o", dbg, SRC)
    stripped = d / "symprog-stripped"
    run("strip", "-o", stripped, dbg)
    other = d / "symprog-other"
    run(*cc, "-Wl,--build-id=0x0123456789abcdef0123456789abcdef01234567", "-o", other, SRC)
    split = d / "symprog-split"
    root = d / "debugroot"
    bid = build_id_of(dbg)
    (root / ".build-id" / bid[:2]).mkdir(parents=True)
    run("objcopy", "--only-keep-debug", dbg, root / ".build-id" / bid[:2] / f"{bid[2:]}.debug")
    shutil.copy(stripped, split)
    return Progs(dbg, stripped, other, split, root, bid, build_id_of(other))


@pytest.fixture(params=tools())
def symbolizer(request: pytest.FixtureRequest) -> Iterator[Symbolizer]:
    """A fresh symbolizer (no cache shared between tests) for each available tool."""
    s = Symbolizer(tool=request.param)
    assert s.tool_name == request.param
    yield s
    s.close()
