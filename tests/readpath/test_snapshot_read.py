"""Snapshot files: loading shares stacks as the live reader does, and reads what the model reads."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest
from readpathlib import Held

from ufence.analysis.snapshot_file import load_snapshot
from ufence.backends.process.backend import ProcessBackend
from ufence.errors import UfenceError
from ufence.model import Frame, Object, Snapshot, Track
from ufence.symbolize import snapshot_io


def _asdict_frame(f: Frame) -> dict[str, Any]:
    """Frame.to_dict as it was defined before (dataclasses.asdict), the reference."""
    d = {k: v for k, v in asdict(f).items() if v not in (None, [])}
    if f.inlined:
        d["inlined"] = [_asdict_frame(x) for x in f.inlined]
    return d


@pytest.mark.parametrize("frame", [
    Frame(),
    Frame(pc=0),
    Frame(pc=0x401000, module="/bin/x", offset=0, build_id="ab"),
    Frame(pc=1, function="f", function_offset=0, function_size=0, file="", line=0, column=0),
    Frame(pc=2, function="g", inlined=[Frame(function="h", file="a.c", line=3), Frame(function="i")]),
])
def test_frame_to_dict_is_the_asdict_definition(frame: Frame) -> None:
    assert frame.to_dict() == _asdict_frame(frame)
    assert list(frame.to_dict()) == list(_asdict_frame(frame))  # same key order


def _plain(d: dict[str, Any]) -> list[Object]:
    """What the model's public per-object reader makes of a snapshot dict."""
    return [Object.from_dict(o) for o in d["objects"]]


def test_saved_snapshot_loads_equal_and_shared(hold: Callable[..., Held], tmp_path: Path) -> None:
    t = hold(5000, free_every=4)
    b = ProcessBackend(t.pid)
    try:
        snap = b.snapshot()
    finally:
        b.close()
    snapshot_io.presymbolize(snap)  # inlined lists and names in the file too
    for name in ("s.json", "s.json.gz"):
        p = tmp_path / name
        snapshot_io.save_snapshot(snap, p)
        loaded = load_snapshot(p)
        assert loaded.to_dict() == snap.to_dict()
        tracks = [tr for o in loaded.objects for tr in (o.alloc, o.free) if tr is not None]
        by_id: dict[int | None, list[Frame]] = {}
        for tr in tracks:
            assert by_id.setdefault(tr.stack_id, tr.frames) is tr.frames  # one list per stack
        assert len(by_id) < 30 < len(tracks)
        raw = json.loads(p.read_bytes() if name.endswith(".json") else __import__("gzip").decompress(p.read_bytes()))
        assert [o.to_dict() for o in _plain(raw)] == [o.to_dict() for o in loaded.objects]


def _doc(objects: list[dict[str, Any]]) -> dict[str, Any]:
    return {"schema": "ufence.snapshot/1", "source": "process", "target": "1", "taken_at": 0.0,
            "objects": objects}


def _obj(i: int, frames: list[Any], stack_id: Any = 7) -> dict[str, Any]:
    return {"index": i, "state": "allocated", "start": "0x1000", "end": "0x100f", "size": 16,
            "alloc": {"kind": "allocated", "tid": 1, "stack_id": stack_id, "frames": frames}}


def test_same_stack_id_with_other_frames_is_not_merged() -> None:
    """A file is not trusted to say which stacks are equal: the frames themselves decide."""
    a = [{"pc": "0x10", "module": "/bin/x", "offset": "0x10"}, {"pc": "0x20"}]
    b = [{"pc": "0x10", "module": "/bin/x", "offset": "0x10"}, {"pc": "0x30"}]
    c = [{"pc": "0x10", "offset": "0x10", "module": "/bin/x"}, {"pc": "0x20"}]  # a, keys in another order
    d = _doc([_obj(0, a), _obj(1, b), _obj(2, copy.deepcopy(a)), _obj(3, c), _obj(4, a, stack_id=[1])])
    snap = Snapshot.from_dict(d)
    assert [o.to_dict() for o in snap.objects] == [o.to_dict() for o in _plain(d)]
    fr = [o.alloc.frames for o in snap.objects if o.alloc]
    assert fr[0] is fr[2] and fr[1] is not fr[0] and fr[1][1].pc == 0x30
    assert fr[1][0] is fr[0][0]  # the same frame in two stacks is one Frame


@pytest.mark.parametrize("frames", [
    [{"pc": "0x10", "file": ["not", "hashable"]}, {"pc": "0x10", "file": ["not", "hashable"]}],
    [{"pc": "0x10", "inlined": [{"function": "f", "line": {"x": 1}}]}],
    [{"pc": "0x10", "inlined": "nonsense"}],
    ["not a frame"],
    "not a list",
    [{"pc": "zz"}],
    [{"pc": 16}, 5],
], ids=["unhashable", "unhashable-inlined", "inlined-str", "str-frame", "str-frames", "bad-pc", "int-frame"])
def test_odd_frames_read_as_the_model_reads_them(frames: Any) -> None:
    d = _doc([_obj(0, frames), _obj(1, copy.deepcopy(frames))])
    try:
        want: Any = [o.to_dict() for o in _plain(d)]
    except Exception as e:  # the reference's own error, whatever it is
        want = (type(e), str(e))
    try:
        got: Any = [o.to_dict() for o in Snapshot.from_dict(d).objects]
    except Exception as e:
        got = (type(e), str(e))
    assert got == want


def test_public_track_and_object_readers_unchanged() -> None:
    t = Track(kind="freed", tid=3, cpu=None, timestamp=1.5, age=None, stack_id=9,
              frames=[Frame(pc=1, module="/m", offset=1), Frame(pc=2)])
    assert Track.from_dict(t.to_dict()) == t
    o = Object(index=4, state=Object.from_dict({"index": 0, "state": "freed"}).state, start=16, end=31, size=16,
               cache="malloc-16", flags=["right"], alloc=t, free=t)
    again = Object.from_dict(o.to_dict())
    assert again == o and again.alloc is not again.free and again.flags is not o.flags


@pytest.mark.parametrize("content", [
    b"[" * 200000 + b"]" * 200000,
    b'{"schema": "ufence.snapshot/1", "source": "process", "target": "1", "taken_at": 0, "objects": [{"index": 0,'
    b' "state": "allocated", "alloc": {"kind": "allocated", "frames": [{"pc": "0xzz"}]}}]}',
    b'{"schema": "ufence.snapshot/1", "source": "process", "target": "1", "taken_at": 0, "objects": [{"index": 0,'
    b' "state": "allocated", "alloc": {"kind": "allocated", "frames": [{"pc": "0x1", "inlined": 3}]}}]}',
], ids=["deep", "bad-pc", "bad-inlined"])
def test_bad_files_are_one_line_errors(tmp_path: Path, content: bytes) -> None:
    p = tmp_path / "bad.json"
    p.write_bytes(content)
    with pytest.raises(UfenceError):
        load_snapshot(p)
    r = subprocess.run([sys.executable, "-m", "ufence", "leaks", str(p)], capture_output=True, text=True, timeout=60,
                       env=dict(os.environ))
    lines = r.stderr.strip().splitlines()
    assert r.returncode != 0 and len(lines) == 1 and lines[0].startswith("ufence: "), r.stderr
    assert "internal error" not in r.stderr
