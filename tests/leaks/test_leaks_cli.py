"""``ufence leaks`` on snapshot files and the kernel fixtures, and its errors."""

from __future__ import annotations

import gzip
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ufence.model import Frame, Object, ObjectState, Snapshot, Stats, Track

HERE = Path(__file__).resolve().parent
# the kernel engineer's copies of the captured KFENCE files ship with the tests
SAMPLES = next((d for d in (HERE.parent / "kernel" / "fixtures", Path("/work/shared/reference/kernel-samples"))
                if (d / "objects-after-excerpt.txt").is_file()), HERE.parent / "kernel" / "fixtures")
OBJECT_FIXTURES = sorted(p.name for p in SAMPLES.glob("objects-*.txt")) or ["objects-after-excerpt.txt"]


def write_snapshot(path: Path, compress: bool = False) -> Path:
    frames = [Frame(pc=0x401000, module="/usr/bin/demo", offset=0x1000, function="malloc"),
              Frame(pc=0x402000, module="/usr/bin/demo", offset=0x2000, function="make_order")]
    objs = [Object(index=i, state=ObjectState.ALLOCATED, size=40,
                   alloc=Track("allocated", age=3.0 + i, frames=frames, stack_id=9)) for i in range(12)]
    s = Snapshot(source="process", target="777", taken_at=1.7e9, objects=objs,
                 stats=Stats(source="process", enabled=True, counters={"total_allocations": 12}),
                 sampling={"mode": "full", "sample_interval": -1})
    data = json.dumps(s.to_dict()).encode()
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


@pytest.mark.parametrize("compress", [False, True])
def test_snapshot_file_target(ufence: Callable[..., Any], tmp_path: Path, compress: bool) -> None:
    f = write_snapshot(tmp_path / "snap.json", compress)
    p = ufence("leaks", str(f), "--format", "json", "--no-symbolize")
    assert p.returncode == 0, p.stderr
    d = json.loads(p.stdout)
    assert d["target"] == "777" and d["groups"][0]["name"] == "make_order" and d["groups"][0]["count"] == 12
    assert d["groups"][0]["bytes"] == 480 and d["sampling"]["estimate"] == "exact"


def kernel_root(tmp_path: Path, objects: str) -> Path:
    root = tmp_path / "kroot"
    (root / "sys/kernel/debug/kfence").mkdir(parents=True)
    (root / "sys/module/kfence/parameters").mkdir(parents=True)
    (root / "sys/kernel/debug/kfence/objects").write_text((SAMPLES / objects).read_text())
    (root / "sys/kernel/debug/kfence/stats").write_text((SAMPLES / "stats-after-6-bugs.txt").read_text())
    (root / "sys/module/kfence/parameters/sample_interval").write_text("100\n")
    return root


def live_kq_leak_objects(text: str) -> int:
    """The truth, counted straight from the fixture text: live objects allocated in kq_leak."""
    n = 0
    for block in text.split("---------------------------------"):
        m = re.search(r"allocated by task .*\n (\S+)", block)
        if m and m.group(1).startswith("kq_leak+") and "freed by task" not in block:
            n += 1
    return n


@pytest.mark.skipif(not SAMPLES.is_dir(), reason="kernel fixtures not present")
def test_kernel_fixture_groups_the_test_module_leak(ufence: Callable[..., Any], tmp_path: Path) -> None:
    root = kernel_root(tmp_path, "objects-after-excerpt.txt")
    truth = live_kq_leak_objects((SAMPLES / "objects-after-excerpt.txt").read_text())
    assert truth > 1
    p = ufence("leaks", "kernel", "--root", str(root), "--min-age", "0", "--format", "json")
    assert p.returncode == 0, p.stderr
    d = json.loads(p.stdout)
    assert d["source"] == "kernel"
    assert d["sampling"]["estimate"] == "unavailable" and d["sampling"]["sample_interval"] == 100
    top = d["groups"][0]
    assert top["name"] == "kq_leak" and top["count"] == truth
    assert top["est_count"] is None  # time sampling without the data: no invented estimate
    text = ufence("leaks", "kernel", "--root", str(root), "--min-age", "0").stdout
    assert "estimate unavailable" in text and "kq_leak" in text
    # ages come from the kernel's "(N s ago)": --min-age 1.5 hides exactly the live ones younger than that
    young = sum(1 for b in (SAMPLES / "objects-after-excerpt.txt").read_text().split("-----")
                if (m := re.search(r"allocated by task .*\(([\d.]+)s ago\)", b)) and "freed by task" not in b
                and float(m.group(1)) < 1.5)
    assert young > 0
    hidden = json.loads(ufence("leaks", "kernel", "--root", str(root), "--min-age", "1.5", "--format", "json").stdout)
    assert hidden["totals"]["hidden_young"] == young


@pytest.mark.skipif(not SAMPLES.is_dir(), reason="kernel fixtures not present")
@pytest.mark.parametrize("objects", OBJECT_FIXTURES)
def test_every_format_on_kernel_fixtures(ufence: Callable[..., Any], tmp_path: Path, objects: str) -> None:
    sys.path.insert(0, str(HERE.parent / "formats"))
    from profile_check import check_pprof

    root = kernel_root(tmp_path, objects)
    d = json.loads(ufence("leaks", "kernel", "--root", str(root), "--min-age", "0", "--format", "json").stdout)
    count, nbytes = d["totals"]["count"], d["totals"]["bytes"]
    for fmt in ("text", "pprof", "folded", "speedscope", "flamegraph", "prometheus"):
        out = tmp_path / f"out.{fmt}"
        p = ufence("leaks", "kernel", "--root", str(root), "--min-age", "0", "--format", fmt, "-o", str(out))
        assert p.returncode == 0, (fmt, p.stderr)
        assert out.stat().st_size > 0
    check_pprof((tmp_path / "out.pprof").read_bytes(), count, nbytes)
    folded = (tmp_path / "out.folded").read_text().splitlines()
    assert sum(int(x.rsplit(" ", 1)[1]) for x in folded) == count


@pytest.mark.parametrize("args, message", [
    (["no-such-file"], "target must be a pid, an existing snapshot file or 'kernel'"),
    (["0"], "positive pid"),
    (["99999999"], ""),
    (["--min-age", "-1", "1"], "min-age"),
    (["--min-age", "nan", "1"], "min-age"),
    (["--samples", "1", "--watch", "1", "1"], "--samples of at least 2"),
    (["--format", "xml", "1"], "invalid choice"),
])
def test_bad_arguments_are_one_line_errors(ufence: Callable[..., Any], args: list[str], message: str) -> None:
    p = ufence("leaks", *args)
    assert p.returncode != 0
    assert p.stderr.startswith("ufence: ") and p.stderr.count("\n") == 1, p.stderr
    assert message in p.stderr
    assert "Traceback" not in p.stderr


@pytest.mark.parametrize("content", [b"", b"not json", b'{"schema": "other/1"}', b"\x1f\x8b\x08garbage",
                                     b'{"schema": "ufence.snapshot/1", "objects": [{"index": 0}]}', b"[1, 2]"])
def test_bad_snapshot_files_are_one_line_errors(ufence: Callable[..., Any], tmp_path: Path, content: bytes) -> None:
    f = tmp_path / "bad.json"
    f.write_bytes(content)
    p = ufence("leaks", str(f))
    assert p.returncode == 1 and p.stderr.startswith("ufence: ") and p.stderr.count("\n") == 1, p.stderr
    assert str(f) in p.stderr


def test_file_target_refuses_watch_and_root(ufence: Callable[..., Any], tmp_path: Path) -> None:
    f = write_snapshot(tmp_path / "s.json")
    p = ufence("leaks", str(f), "--watch", "1")
    assert p.returncode == 2 and "live target" in p.stderr
    p = ufence("leaks", str(f), "--root", str(tmp_path))
    assert p.returncode == 2 and "--root" in p.stderr


def test_output_file_is_written_atomically(ufence: Callable[..., Any], tmp_path: Path) -> None:
    f = write_snapshot(tmp_path / "s.json")
    out = tmp_path / "metrics" / "ufence.prom"
    out.parent.mkdir()
    p = ufence("leaks", str(f), "--format", "prometheus", "-o", str(out))
    assert p.returncode == 0 and p.stdout == ""
    assert "ufence_leak_group_objects{" in out.read_text()
    assert [x.name for x in out.parent.iterdir()] == ["ufence.prom"]
    p = ufence("leaks", str(f), "-o", str(tmp_path / "nodir" / "x"))
    assert p.returncode == 1 and p.stderr.startswith("ufence: cannot write")
