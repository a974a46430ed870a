"""ufence report: saved reports re-rendered symbolized; every bad file gives one line."""

from __future__ import annotations

import gzip
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from subprocess import CompletedProcess
from typing import Any

import pytest
from symlib import SRC, Progs, marker_line, nm_functions

FIXTURES = Path(__file__).resolve().parent / "fixtures"
BAD = sorted(p.name for p in FIXTURES.iterdir() if p.name != "good_template.json")

Run = Callable[..., CompletedProcess[str]]


def make_report(binary: Path, build_id: str | None, module: str | None = None) -> dict[str, Any]:
    """A use-after-free report whose frames are real offsets of the test program."""
    funcs = nm_functions(binary)
    rep = json.loads((FIXTURES / "good_template.json").read_text())

    def fr(name: str, delta: int) -> dict[str, Any]:
        off = funcs[name][0] + delta
        d = {"pc": f"{0x555555554000 + off:#x}", "module": module or str(binary), "offset": f"{off:#x}"}
        if build_id:
            d["build_id"] = build_id
        return d

    rep["stack"] = [fr("compute", 0), fr("main", 0x20)]
    rep["object"]["alloc"]["frames"] = [fr("main", 0x10)]
    rep["object"]["free"]["frames"] = [fr("main", 0x30)]
    return rep


def write(tmp: Path, rep: dict[str, Any], name: str = "4242-1.json") -> Path:
    p = tmp / name
    p.write_text(json.dumps(rep))
    return p


def test_report_shows_functions_and_source_lines(progs: Progs, tmp_path: Path, ufence: Run) -> None:
    path = write(tmp_path, make_report(progs.dbg, progs.build_id))
    r = ufence("report", str(path))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == lines[-1] == "=" * 66
    size = nm_functions(progs.dbg)["compute"][1]
    assert lines[1] == f"BUG: UFENCE: use-after-free read in compute+0x0/{size:#x}"
    assert lines[3] == "Use-after-free read at 0x7f3a2c402ff4 (in ufence-#7):"
    assert lines[4].startswith(f" compute+0x0/{size:#x} [{progs.dbg.name}] ") and SRC.name in lines[4]
    assert lines[5].startswith(" main+0x20/") and SRC.name in lines[5]
    assert "ufence-#7: 0x7f3a2c402ff0-0x7f3a2c402fff, size=16, cache=malloc-16" in lines
    assert "allocated by thread 4242 at 0.001234s (0.500000s ago):" in lines
    assert "freed by thread 4243 at 0.250000s (0.250000s ago):" in lines
    assert "PID: 4242 TID: 4243 Comm: symprog Exe: /tmp/symprog" in lines
    assert f"Report: {path}" in lines
    assert r.stderr == ""


def test_report_inlined_frame_lines(progs: Progs, tmp_path: Path, ufence: Run) -> None:
    """A fault pc inside the inlined helper: its own (inlined) line above compute's."""
    from ufence.model import Frame
    from ufence.symbolize import Symbolizer

    start, size = nm_functions(progs.dbg)["compute"]
    s = Symbolizer()
    probes = [Frame(pc=1, module=str(progs.dbg), offset=start + i) for i in range(size)]
    s.symbolize(probes, exact=probes)
    s.close()
    inl = next(f for f in probes if f.inlined)
    rep = make_report(progs.dbg, progs.build_id)
    rep["stack"][0]["offset"] = f"{inl.offset:#x}"
    r = ufence("report", str(write(tmp_path, rep)))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[4] == f" inl_helper [{progs.dbg.name}] {SRC}:{marker_line('inl_body')} (inlined)"
    assert lines[5] == (f" compute+{inl.offset - start:#x}/{size:#x} [{progs.dbg.name}] "
                        f"{SRC}:{marker_line('inl_call')}")


def test_report_json_is_symbolized_and_loads(progs: Progs, tmp_path: Path, ufence: Run) -> None:
    from ufence.model import Report

    r = ufence("report", "--json", str(write(tmp_path, make_report(progs.dbg, progs.build_id))))
    assert r.returncode == 0, r.stderr
    rep = Report.from_dict(json.loads(r.stdout))
    assert rep.stack[0].function == "compute" and rep.stack[0].file == str(SRC)
    assert rep.object and rep.object.alloc and rep.object.alloc.frames[0].function == "main"


def test_no_symbolize_keeps_module_offsets(progs: Progs, tmp_path: Path, ufence: Run) -> None:
    rep = make_report(progs.dbg, progs.build_id)
    r = ufence("report", "--no-symbolize", str(write(tmp_path, rep)))
    assert r.returncode == 0, r.stderr
    assert f" {progs.dbg.name}+{rep['stack'][0]['offset']}" in r.stdout.splitlines()


def test_report_from_another_machine(progs: Progs, tmp_path: Path, ufence: Run) -> None:
    """Recorded path absent here: a note, raw frames; with --search the same build is found."""
    rep = make_report(progs.dbg, progs.build_id, module=f"/srv/app/bin/{progs.dbg.name}")
    path = write(tmp_path, rep)
    r = ufence("report", str(path))
    assert r.returncode == 0
    assert f"ufence: note: cannot symbolize {progs.dbg.name}: /srv/app/bin/{progs.dbg.name} is not on this machine" \
        in r.stderr
    assert f" {progs.dbg.name}+{rep['stack'][0]['offset']}" in r.stdout
    r = ufence("report", "--search", str(progs.dbg.parent), str(path))
    assert r.returncode == 0 and r.stderr == ""
    assert " compute+0x0/" in r.stdout and SRC.name in r.stdout


def test_report_refuses_a_different_build(progs: Progs, tmp_path: Path, ufence: Run) -> None:
    other = tmp_path / progs.dbg.name
    shutil.copy(progs.other, other)  # same name, same code, another build id
    path = write(tmp_path, make_report(progs.dbg, progs.build_id, module=str(other)))
    r = ufence("report", str(path))
    assert r.returncode == 0
    assert "different build" in r.stderr
    assert "compute" not in r.stdout.split("\n", 2)[2]  # frames stay raw (the title line aside)


def test_gzipped_report_and_directory(progs: Progs, tmp_path: Path, ufence: Run) -> None:
    rep = make_report(progs.dbg, progs.build_id)
    (tmp_path / "4242-2.json.gz").write_bytes(gzip.compress(json.dumps(rep).encode()))
    write(tmp_path, rep, "4242-1.json")
    r = ufence("report", str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("BUG: UFENCE: use-after-free read in compute") == 2


@pytest.mark.parametrize("name", BAD)
def test_bad_report_file_one_line_error(name: str, ufence: Run) -> None:
    path = FIXTURES / name
    r = ufence("report", str(path))
    assert r.returncode == 1
    assert r.stdout == ""
    err = r.stderr.splitlines()
    assert (len(err) == 1 and err[0].startswith(f"ufence: {path}")) or err[0].startswith(f"ufence: cannot read {path}")
    assert "Traceback" not in r.stderr


def test_more_bad_inputs(tmp_path: Path, ufence: Run, progs: Progs) -> None:
    gz = tmp_path / "r.json.gz"
    gz.write_bytes(gzip.compress(b'{"schema": "ufence.report/1"}')[:-6])  # truncated gzip
    missing = tmp_path / "missing.json"
    empty_dir = tmp_path / "empty"
    empty_dir.mkdir()
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)  # reading it would block forever
    for bad, text in ((gz, "corrupt or truncated gzip"), (progs.dbg, "binary data"),
                      (missing, "No such file"), (empty_dir, "no report files"), (fifo, "not a regular file")):
        r = ufence("report", str(bad))
        assert r.returncode == 1, bad
        assert len(r.stderr.splitlines()) == 1 and str(bad) in r.stderr and text in r.stderr, r.stderr


def test_good_and_bad_together(progs: Progs, tmp_path: Path, ufence: Run) -> None:
    good = write(tmp_path, make_report(progs.dbg, progs.build_id))
    r = ufence("report", str(FIXTURES / "truncated.json"), str(good))
    assert r.returncode == 1
    assert r.stderr.splitlines() == [r.stderr.splitlines()[0]] and "truncated JSON" in r.stderr
    assert "BUG: UFENCE: use-after-free read in compute" in r.stdout
