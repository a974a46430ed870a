"""ufence report over a report the real engine wrote for a real bug."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from subprocess import CompletedProcess

import pytest
from symlib import build_id_of, marker_line, run

from ufence.model import BugType, Frame, Report

PROG = Path(__file__).resolve().parent / "progs" / "bugprog.c"
Run = Callable[..., CompletedProcess[str]]


@pytest.fixture(scope="module")
def bugprog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bugprog") / "bugprog"
    run("cc", "-g", "-O0", "-fno-omit-frame-pointer", "-o", out, PROG)
    return out


@pytest.fixture(scope="module")
def report_file(bugprog: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    import subprocess

    d = tmp_path_factory.mktemp("bugreports")
    env = {**os.environ, "UFENCE_RUN_DIR": str(d / "run")}
    r = subprocess.run([sys.executable, "-m", "ufence", "run", "--mode", "full", "--report-dir", str(d / "reports"),
                        "--", str(bugprog)], capture_output=True, text=True, timeout=60, env=env)
    files = sorted((d / "reports").glob("*.json"))
    assert len(files) == 1, f"engine wrote {files}; rc={r.returncode} stderr={r.stderr}"
    return files[0]


def _line_of(text: str, func: str) -> str:
    return next(line for line in text.splitlines() if line.startswith(f" {func}+"))


def test_report_names_program_functions_and_lines(report_file: Path, bugprog: Path, ufence: Run) -> None:
    r = ufence("report", str(report_file))
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert out.splitlines()[1].startswith("BUG: UFENCE: use-after-free read in read_id+0x")
    src = str(PROG)
    # the access frame is the faulting instruction; callers are return addresses, shown at the call
    assert _line_of(out, "read_id").endswith(f"[{bugprog.name}] {src}:{marker_line('access', PROG)}")
    access, alloc_part = out.split("allocated by thread", 1)
    alloc, free = alloc_part.split("freed by thread", 1)
    assert _line_of(access, "main").endswith(f"{src}:{marker_line('read_call', PROG)}")
    assert _line_of(alloc, "make_rec").endswith(f"{src}:{marker_line('alloc', PROG)}")
    assert _line_of(alloc, "main").endswith(f"{src}:{marker_line('make_call', PROG)}")
    assert _line_of(free, "drop_rec").endswith(f"{src}:{marker_line('free', PROG)}")
    assert _line_of(free, "main").endswith(f"{src}:{marker_line('drop_call', PROG)}")
    assert f"Report: {report_file}" in out


def test_report_json_round_trip(report_file: Path, bugprog: Path, ufence: Run) -> None:
    raw = Report.from_dict(json.loads(report_file.read_text()))
    assert raw.bug is BugType.USE_AFTER_FREE
    assert all(f.file is None for f in raw.stack)  # the engine records module+offset; lines come from us
    assert raw.stack[0].module == str(bugprog) and raw.stack[0].build_id == build_id_of(bugprog)
    r = ufence("report", "--json", str(report_file))
    assert r.returncode == 0, r.stderr
    rep = Report.from_dict(json.loads(r.stdout))
    top: Frame = rep.stack[0]
    assert (top.function, top.file, top.line) == ("read_id", str(PROG), marker_line("access", PROG))
    assert [f.offset for f in rep.stack] == [f.offset for f in raw.stack]


def test_report_moved_binary_found_by_build_id(report_file: Path, bugprog: Path, tmp_path: Path,
                                                 ufence: Run) -> None:
    """Another machine: the report names a path that does not exist; --search finds the same build."""
    data = json.loads(report_file.read_text())
    for f in data["stack"]:
        if f.get("module") == str(bugprog):
            f["module"] = "/opt/prod/bin/bugprog"
    moved = tmp_path / "copied.json"
    moved.write_text(json.dumps(data))
    r = ufence("report", "--search", str(bugprog.parent), str(moved))
    assert r.returncode == 0, r.stderr
    assert _line_of(r.stdout, "read_id").endswith(f"{PROG}:{marker_line('access', PROG)}")
