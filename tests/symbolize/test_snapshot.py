"""ufence snapshot: a real process under the engine, saved, loaded, compared."""

from __future__ import annotations

import gzip
import json
import os
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from subprocess import CompletedProcess
from typing import Any

import pytest
from symlib import marker_line, run

from ufence.errors import UfenceError
from ufence.model import Frame, Object, ObjectState, Snapshot, Track
from ufence.symbolize.snapshot_io import load_snapshot, presymbolize, save_snapshot, snapshot_dict

PROG = Path(__file__).resolve().parent / "progs" / "snapprog.c"
Run = Callable[..., CompletedProcess[str]]


@pytest.fixture(scope="module")
def snapprog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("snapprog") / "snapprog"
    run("cc", "-g", "-O0", "-fno-omit-frame-pointer", "-o", out, PROG)
    return out


@pytest.fixture
def live(snapprog: Path, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], dict[str, str]]]:
    """snapprog running under `ufence run --mode full`, objects allocated, waiting."""
    rundir = tmp_path / "run"
    env = {**os.environ, "UFENCE_RUN_DIR": str(rundir)}
    argv = [sys.executable, "-m", "ufence", "run", "--mode", "full", "--report-dir", str(tmp_path / "reports"),
            "--", str(snapprog)]
    proc = subprocess.Popen(argv,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.startswith("ready"):
            _out, err = proc.communicate("\n", timeout=20)
            raise AssertionError(f"snapprog under ufence run did not start: {line!r} {err!r}")
        yield proc, env
    finally:
        if proc.poll() is None:
            try:
                proc.communicate("\n", timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()


def _site_objects(snap: Snapshot, func: str) -> list[Object]:
    def has(o: Object) -> bool:
        return bool(o.alloc) and any(f.function == func or any(i.function == func for i in f.inlined)
                                     for f in o.alloc.frames)  # type: ignore[union-attr]
    return [o for o in snap.objects if o.state is ObjectState.ALLOCATED and has(o)]


def _comparable(snap: Snapshot) -> list[tuple[Any, ...]]:
    return [(o.index, o.state, o.start, o.end, o.size,
             tuple(f.pc for f in o.alloc.frames) if o.alloc else None,
             tuple(f.pc for f in o.free.frames) if o.free else None)
            for o in snap.objects]


def test_snapshot_round_trip_real_process(live: tuple[subprocess.Popen[str], dict[str, str]], tmp_path: Path,
                                          ufence: Run, snapprog: Path) -> None:
    proc, env = live
    out = tmp_path / "snap.json.gz"
    r = ufence("snapshot", str(proc.pid), "-o", str(out), env={"UFENCE_RUN_DIR": env["UFENCE_RUN_DIR"]})
    assert r.returncode == 0, r.stderr
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert out.read_bytes()[:2] == b"\x1f\x8b"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]  # temp file renamed away
    saved = load_snapshot(out)

    from ufence.backends.process import ProcessBackend

    os.environ["UFENCE_RUN_DIR"] = env["UFENCE_RUN_DIR"]
    try:
        direct = ProcessBackend(proc.pid).snapshot()
    finally:
        del os.environ["UFENCE_RUN_DIR"]
    assert saved.target == str(proc.pid) and saved.source == "process"
    assert _comparable(saved) == _comparable(direct)  # the program is idle: same objects, same stacks
    assert snapshot_dict(direct) == direct.to_dict()  # the fast writer writes exactly the model's dict
    presymbolize(direct)
    assert snapshot_dict(direct) == direct.to_dict()
    assert [m["build_id"] for m in saved.modules] == [m["build_id"] for m in direct.modules]
    assert any(m["path"] == str(snapprog) or m["path"].endswith("/snapprog") for m in saved.modules) or \
        any(f.module == str(snapprog) for o in saved.objects if o.alloc for f in o.alloc.frames)

    # pre-symbolized on this machine: the program's own functions and lines are in the file
    a, b = _site_objects(saved, "site_a"), _site_objects(saved, "site_b")
    assert len(a) == 40 and len(b) == 12
    fa = next(f for f in a[0].alloc.frames if f.function == "site_a")  # type: ignore[union-attr]
    assert fa.file and Path(fa.file).name == PROG.name and fa.line == marker_line("site_a", PROG)
    fb = next(f for f in b[0].alloc.frames if f.function == "site_b")  # type: ignore[union-attr]
    assert fb.line == marker_line("site_b", PROG)
    assert saved.meta.get("symbolized") is True

    # `ufence leaks FILE` reads it; on a machine without the binary the saved names still show
    data = json.loads(gzip.decompress(out.read_bytes()))
    for o in data["objects"]:
        for t in (o.get("alloc"), o.get("free")):
            for f in (t or {}).get("frames", []):
                if f.get("module") == str(snapprog):
                    f["module"] = "/gone/snapprog"
    elsewhere = tmp_path / "elsewhere.json"
    elsewhere.write_text(json.dumps(data))
    for f in (out, elsewhere):
        r = ufence("leaks", str(f), "--min-age", "0")
        assert r.returncode == 0, r.stderr
        assert f"site_a {PROG}:{marker_line('site_a', PROG)}" in r.stdout
        assert f"site_b {PROG}:{marker_line('site_b', PROG)}" in r.stdout

    raw = tmp_path / "raw.json"
    r = ufence("snapshot", str(proc.pid), "-o", str(raw), "--no-symbols", env={"UFENCE_RUN_DIR": env["UFENCE_RUN_DIR"]})
    assert r.returncode == 0, r.stderr
    plain = json.loads(raw.read_text())
    assert not any(f.get("file") for o in plain["objects"] for f in o.get("alloc", {}).get("frames", []))
    assert _comparable(Snapshot.from_dict(plain)) == _comparable(saved)


def test_snapshot_refuses_bad_target_and_output(ufence: Run, tmp_path: Path) -> None:
    r = ufence("snapshot", "notapid", "-o", str(tmp_path / "x.json"))
    assert r.returncode == 2 and len(r.stderr.splitlines()) == 1
    r = ufence("snapshot", "999999999", "-o", str(tmp_path / "x.json"))
    assert r.returncode != 0 and len(r.stderr.splitlines()) == 1 and "Traceback" not in r.stderr
    assert not (tmp_path / "x.json").exists()


def _fake_snapshot(binary: Path) -> Snapshot:
    from symlib import nm_functions

    funcs = nm_functions(binary)
    frames = [Frame(pc=0x400000 + funcs[n][0] + 5, module=str(binary), offset=funcs[n][0] + 5)
              for n in ("site_a", "main")]
    objs = [Object(index=i, state=ObjectState.ALLOCATED, start=0x7f0000000000 + i * 8192, end=0x7f0000000017 + i * 8192,
                   size=24, cache="malloc-32",
                   alloc=Track("allocated", tid=1, timestamp=0.5, age=1.0, stack_id=8,
                               frames=[Frame(**{k: v for k, v in vars(f).items() if k != "inlined"}) for f in frames]))
            for i in range(500)]
    return Snapshot(source="process", target="1", taken_at=1.5, objects=objs,
                    modules=[{"path": str(binary), "start": 0x400000, "end": 0x500000, "base": 0x400000,
                              "build_id": None}])


def test_save_load_presymbolize(snapprog: Path, tmp_path: Path) -> None:
    snap = _fake_snapshot(snapprog)
    notes = presymbolize(snap)
    assert notes == []
    first = snap.objects[0].alloc.frames[0]  # type: ignore[union-attr]
    assert first.function == "site_a" and first.file and Path(first.file).name == PROG.name
    assert first.line is not None and marker_line("site_a", PROG) - 3 <= first.line <= marker_line("site_a", PROG)
    assert all(o.alloc and o.alloc.frames[0].to_dict() == first.to_dict() for o in snap.objects)
    for name in ("s.json", "s.json.gz"):
        p = tmp_path / name
        save_snapshot(snap, p)
        assert stat.S_IMODE(p.stat().st_mode) == 0o600
        assert load_snapshot(p).to_dict() == snap.to_dict() == snapshot_dict(snap)
    assert gzip.decompress((tmp_path / "s.json.gz").read_bytes()) == (tmp_path / "s.json").read_bytes()


@pytest.mark.parametrize("content", [b"", b"{", b"\x1f\x8b\x08\x00garbage", b"[]", b'{"schema": "ufence.report/1"}',
                                     b'{"schema": "ufence.snapshot/1", "objects": 3}'])
def test_load_bad_snapshot_one_line(content: bytes, tmp_path: Path) -> None:
    p = tmp_path / "bad.json"
    p.write_bytes(content)
    with pytest.raises(UfenceError) as e:
        load_snapshot(p)
    assert str(p) in str(e.value) and "\n" not in str(e.value)


def test_save_into_missing_directory(tmp_path: Path, snapprog: Path) -> None:
    with pytest.raises(UfenceError, match="does not exist"):
        save_snapshot(_fake_snapshot(snapprog), tmp_path / "nodir" / "s.json")


def test_snapshot_of_a_collected_kernel_tree(tmp_path: Path, ufence: Run) -> None:
    """`ufence snapshot kernel --root DIR`: kernel frames (names, no files) saved as they are."""
    fixtures = Path(__file__).resolve().parent.parent / "kernel" / "fixtures"
    objects, stats = fixtures / "objects-after-excerpt.txt", fixtures / "stats-after-6-bugs.txt"
    if not (objects.exists() and stats.exists()):
        pytest.skip("kernel fixtures not present")
    tree = tmp_path / "tree"
    (tree / "sys/module/kfence/parameters").mkdir(parents=True)
    (tree / "sys/kernel/debug/kfence").mkdir(parents=True)
    (tree / "sys/module/kfence/parameters/sample_interval").write_text("100\n")
    (tree / "sys/kernel/debug/kfence/objects").write_text(objects.read_text())
    (tree / "sys/kernel/debug/kfence/stats").write_text(stats.read_text())
    out = tmp_path / "k.json"
    r = ufence("snapshot", "kernel", "--root", str(tree), "-o", str(out))
    assert r.returncode == 0, r.stderr
    saved = load_snapshot(out)
    from ufence.backends.kernel import KernelBackend

    direct = KernelBackend(root=str(tree)).snapshot()
    assert saved.source == "kernel" and saved.target == "kernel"
    assert [o.to_dict() for o in saved.objects] == [o.to_dict() for o in direct.objects]
    assert any(f.function for o in saved.objects if o.alloc for f in o.alloc.frames)
