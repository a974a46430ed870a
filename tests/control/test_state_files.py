"""The reader's defences: corrupt, truncated, hostile or unsafe state files give one-line errors.

These files are written by hand (fakeshm) because they are the input under
test; the engine's side of the same story is in test_hostile_live.py.
"""

from __future__ import annotations

import ctypes
import json
import os
from collections.abc import Callable
from pathlib import Path

import fakeshm
import pytest
from controllib import Cli, one_line_error

from ufence.backends.process import layout as L

PID = os.getpid()  # a live process, so liveness checks pass; the file says it is ours


def _write(run_dir: Path, buf: bytes | bytearray, mode: int = 0o600) -> Path:
    return fakeshm.write(run_dir, PID, buf, mode)


def test_valid_file_reads(run_dir: Path, cli: Cli) -> None:
    _write(run_dir, fakeshm.build(PID))
    st = cli.stats(PID)
    assert st["currently_allocated"] == 1 and st["total_allocations"] == 2 and st["mode"] == "off"
    objs = cli.objects(PID)
    assert [o["state"] for o in objs] == ["allocated", "freed"]
    frames = objs[0]["alloc"]["frames"]  # type: ignore[index]
    assert frames[0] == {"pc": 0x401000, "module": "/bin/prog", "offset": 0x401000, "build_id": "deadbeef"}
    assert frames[1] == {"pc": 0x7F0000001234}  # in no module: raw pc only
    text = cli.ok("objects", str(PID), "--no-symbolize")
    assert text.startswith("ufence-#0: 0x10000010-0x1000001c, size=13, cache=malloc-16\n\nallocated by thread 100 at "
                           "0.500000s (")
    assert " prog+0x401000\n" in text
    assert cli.ok("get", str(PID), "num_objects") == "4095\n"
    assert json.loads(cli.ok("get", str(PID), "--json"))["fault"] == "report"


def _mutations() -> dict[str, Callable[[bytearray], bytes | bytearray]]:
    def hdr(**fields: int) -> Callable[[bytearray], bytearray]:
        def f(b: bytearray) -> bytearray:
            h = fakeshm.header(b)
            for k, v in fields.items():
                setattr(h, k, v)
            return b
        return f

    def magic(b: bytearray) -> bytearray:
        b[:8] = b"NOTUFNCE"
        return b

    return {
        "empty": lambda b: b"",
        "truncated-header": lambda b: b[:100],
        "truncated-body": lambda b: b[: len(b) // 2],
        "bad-magic": magic,
        "version": hdr(version=99),
        "header-size": hdr(header_size=1 << 31),
        "settings-off": hdr(settings_off=1 << 62),
        "settings-count": hdr(settings_count=1 << 30),
        "setting-size": hdr(setting_size=3),
        "stats-off": hdr(stats_off=(1 << 64) - 8),
        "stats-count": hdr(stats_count=1 << 20),
        "slots-capacity": hdr(slots_capacity=1 << 40),
        "slot-size": hdr(slot_size=1),
        "modules-count": hdr(modules_count=1000),
        "arena-size": hdr(depot_arena_size=1 << 50),
        "page-size": hdr(page_size=3),
        "wrong-pid": hdr(pid=PID + 1),
    }


@pytest.mark.parametrize("name", sorted(_mutations()))
@pytest.mark.parametrize("command", ["stats", "objects", "get"])
def test_corrupt_file_one_line_error(run_dir: Path, cli: Cli, name: str, command: str) -> None:
    _write(run_dir, _mutations()[name](fakeshm.build(PID)))
    line = one_line_error(cli(command, str(PID)))
    assert str(PID) in line or "state file" in line


def test_hostile_stack_ids_and_frames_are_ignored(run_dir: Path, cli: Cli) -> None:
    """Stack ids past the arena, huge frame counts, garbage slot states: read what is sound, skip the rest."""
    b = fakeshm.build(PID)
    h = fakeshm.header(b)
    s0 = L.Slot.from_buffer(b, h.slots_off)
    s0.alloc_stack = 0xFFFFFFFF
    s1 = L.Slot.from_buffer(b, h.slots_off + h.slot_size)
    s1.free_stack = 2  # inside the arena but past the used part
    L.Slot.from_buffer(b, h.slots_off + 2 * h.slot_size).state = 77
    rec = L.DepotRec.from_buffer(b, h.depot_arena_off + 8)
    rec.nframes = 60000
    s3 = L.Slot.from_buffer(b, h.slots_off + 3 * h.slot_size)
    s3.seq = 1  # odd forever: a writer that never finishes
    s3.state = L.SLOT_ALLOCATED
    h.modules_seq = 0
    _write(run_dir, b)
    objs = cli.objects(PID)
    assert [(o["index"], o["state"]) for o in objs] == [(0, "allocated"), (1, "freed")]
    for o in objs:
        for t in ("alloc", "free"):
            if t in o:
                assert o[t]["frames"] == []  # type: ignore[index]


def test_module_table_never_settles(run_dir: Path, cli: Cli) -> None:
    b = fakeshm.build(PID)
    fakeshm.header(b).modules_seq = 3  # odd: being rewritten; the reader gives up on modules, not on objects
    _write(run_dir, b)
    objs = cli.objects(PID)
    assert objs[0]["alloc"]["frames"][0] == {"pc": 0x401000}  # type: ignore[index]


def test_unsafe_file_and_dir_refused(run_dir: Path, cli: Cli, tmp_path: Path) -> None:
    p = _write(run_dir, fakeshm.build(PID), mode=0o644)
    assert "group/others" in one_line_error(cli("stats", str(PID)))
    os.chmod(p, 0o600)
    os.chmod(run_dir, 0o755)
    assert "group/others" in one_line_error(cli("stats", str(PID)))
    os.chmod(run_dir, 0o700)
    # a symlinked state file (someone pointing us at another file)
    target = tmp_path / "elsewhere.shm"
    target.write_bytes(p.read_bytes())
    os.chmod(target, 0o600)
    p.unlink()
    p.symlink_to(target)
    one_line_error(cli("stats", str(PID)))
    # a symlinked run directory
    link = tmp_path / "rundir-link"
    link.symlink_to(run_dir)
    assert "symlink" in one_line_error(cli("stats", str(PID), env={"UFENCE_RUN_DIR": str(link)}))


def test_not_a_regular_file(run_dir: Path, cli: Cli) -> None:
    (run_dir / f"{PID}.shm").mkdir()
    one_line_error(cli("stats", str(PID)))
    fifo = run_dir / "1.shm"
    os.mkfifo(fifo, 0o600)
    one_line_error(cli("stats", "1"))  # must not block opening a FIFO


def test_missing_and_bad_targets(run_dir: Path, cli: Cli) -> None:
    assert "not running under ufence" in one_line_error(cli("stats", str(PID)))
    for bad in ("abc", "0", "-5", "1.5"):
        one_line_error(cli("stats", bad))
    one_line_error(cli("stats", str(PID), "--root", "/tmp"))
    # no run directory yet: no processes, not an error
    r = cli("ps", "--json", env={"UFENCE_RUN_DIR": str(run_dir / "nope")})
    assert r.returncode == 0 and json.loads(r.stdout) == []


def test_set_on_a_file_without_engine_times_out(run_dir: Path, cli: Cli) -> None:
    """A file nobody serves: the change is not acknowledged and `ufence set` says so within about a second."""
    _write(run_dir, fakeshm.build(PID))
    line = one_line_error(cli("set", str(PID), "sample_interval=-1", timeout=10))
    assert "did not apply" in line


def test_ps_and_prune_detect_pid_reuse(run_dir: Path, cli: Cli) -> None:
    live = fakeshm.build(PID)
    _write(run_dir, live)
    reused = fakeshm.build(PID)
    fakeshm.header(reused).proc_starttime = 1  # same pid, another (earlier) process
    reused_pid = os.getppid()
    fakeshm.header(reused).pid = reused_pid
    fakeshm.write(run_dir, reused_pid, reused)
    rows = {r["pid"]: r for r in json.loads(cli.ok("ps", "--json"))}
    assert rows[PID]["alive"] is True and rows[reused_pid]["alive"] is False
    out = cli.ok("ps")
    assert "[exited]" in out
    pr = json.loads(cli.ok("ps", "--prune", "--json"))
    assert pr["pruned"] == [reused_pid]
    assert (run_dir / f"{PID}.shm").exists() and not (run_dir / f"{reused_pid}.shm").exists()


def test_layout_struct_sizes_are_what_the_fake_uses() -> None:
    assert ctypes.sizeof(L.Slot) == 64 and ctypes.sizeof(L.Setting) == 256


def test_wrong_owner_refused(run_dir: Path, cli: Cli) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to give files away")
    p = _write(run_dir, fakeshm.build(PID))
    os.chown(p, 65534, 65534)
    assert "owned by uid 65534" in one_line_error(cli("stats", str(PID)))
    os.chown(p, 0, 0)
    os.chown(run_dir, 65534, 65534)
    assert "owned by uid 65534" in one_line_error(cli("stats", str(PID)))
    os.chown(run_dir, 0, 0)
