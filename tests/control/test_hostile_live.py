"""Nonsense values and hostile control files against a live engine: clear errors, target unharmed."""

from __future__ import annotations

import ctypes
import mmap
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from controllib import Cli, Target, one_line_error, wait_for

from ufence.backends.process import layout as L
from ufence.backends.process.backend import _futex_wake

NONSENSE = [
    ("sample_interval=abc", "not an integer"),
    ("sample_interval=99999999999999999999", "out of range"),
    ("sample_interval=-2", "out of range"),
    ("num_objects=0", "out of range"),
    ("fault=maybe", "not one of"),
    ("page_allocs=perhaps", "not a boolean"),
    ("guard=mprotect", "start-up"),
    ("stack_depth=8", "start-up"),
    ("nosuch=1", "unknown setting"),
    ("sample_interval", "KEY=VALUE"),
    ("=5", "KEY=VALUE"),
    ("callers=" + "x" * 300, "too long"),
    ("size_classes=\x01", "control characters"),
]


@pytest.fixture
def target(launch: Callable[..., Target], progs: dict[str, Path]) -> Target:
    return launch(progs["loop"], "32", "1000", flags=("--mode", "sample", "--sample-interval", "50"))


def test_nonsense_values(cli: Cli, target: Target) -> None:
    before = cli.ok("get", str(target.pid))
    for arg, why in NONSENSE:
        assert why in one_line_error(cli("set", str(target.pid), arg)), arg
    # a mixed request applies none of it
    one_line_error(cli("set", str(target.pid), "sample_interval=-1", "num_objects=0"))
    assert cli.ok("get", str(target.pid)) == before
    assert target.alive()


def test_engine_refusal_says_why(cli: Cli, target: Target) -> None:
    """Values the CLI cannot judge (size class syntax, module lists) are the engine's to refuse."""
    for arg in ("size_classes=17", "size_classes=64-8", "size_classes=zzz", "size_classes=16,,32"):
        r = cli("set", str(target.pid), arg)
        line = one_line_error(r)
        assert "refused" in line and "size_classes" in line, line
    assert cli.ok("get", str(target.pid), "size_classes") == "\n"
    assert cli.stats(target.pid)["settings_refused"] >= 4
    assert target.alive()


def test_hostile_request_block(cli: Cli, target: Target) -> None:
    """Garbage written straight into the request block, as a hostile same-user process could."""
    before = cli.ok("get", str(target.pid))
    fd = os.open(target.shm, os.O_RDWR)
    try:
        mm = mmap.mmap(fd, os.fstat(fd).st_size)
        h = L.Header.from_buffer_copy(mm[: ctypes.sizeof(L.Header)])
        seq_addr = ctypes.addressof(ctypes.c_char.from_buffer(mm)) + L.Header.request_seq.offset
        garbage = [b"\xff" * L.SETTING_TEXT, b"-" * L.SETTING_TEXT, b"9" * L.SETTING_TEXT, os.urandom(L.SETTING_TEXT)]
        for n, g in enumerate(garbage):
            for i in range(h.settings_count):
                o = h.request_off + i * h.setting_size
                mm[o:o + 8] = os.urandom(8)
                mm[o + 8:o + 8 + L.SETTING_TEXT] = g  # no NUL terminator at all
            mm[L.Header.request_mask.offset:L.Header.request_mask.offset + 8] = b"\xff" * 8  # unknown bits too
            seq = (h.request_seq + n + 1) & 0xFFFFFFFF
            mm[L.Header.request_seq.offset:L.Header.request_seq.offset + 4] = seq.to_bytes(4, "little")
            # ring as the CLI does: the futex for a control thread, the hot page's wake word for an
            # engine without one (this single-threaded sampler runs none)
            _futex_wake(seq_addr)
            if h.hot_off:
                mm[h.hot_off + 4:h.hot_off + 8] = (1).to_bytes(4, "little")
            assert wait_for(lambda s=seq: int.from_bytes(  # type: ignore[misc]
                mm[L.Header.ack_seq.offset:L.Header.ack_seq.offset + 4], "little") == s, 2), "engine stopped serving"
            status = int.from_bytes(mm[L.Header.response_status.offset:L.Header.response_status.offset + 4],
                                    "little", signed=True)
            assert status != 0, "a garbage request must be refused"
        del seq_addr
        mm.close()
    finally:
        os.close(fd)
    assert target.alive()
    assert cli.ok("get", str(target.pid)) == before
    cli.ok("set", str(target.pid), "sample_interval=-1")  # and it still takes a good change
    assert cli.stats(target.pid)["mode"] == "full"


def test_corrupted_header_does_not_harm_target(cli: Cli, target: Target) -> None:
    """The engine never trusts what it reads back: scribbling over its header leaves it running.
    The CLI then either reports the corruption in one line or, once the engine has republished
    its header, reads it correctly: never a traceback."""
    fd = os.open(target.shm, os.O_RDWR)
    try:
        for field in ("settings_off", "slots_off", "stats_count", "modules_count", "depot_arena_used"):
            os.pwrite(fd, b"\xee" * 8, getattr(L.Header, field).offset)
        for command in ("stats", "objects", "get"):
            r = cli(command, str(target.pid))
            if r.returncode != 0:
                one_line_error(r)
            assert "Traceback" not in r.stderr
        os.pwrite(fd, b"JUNKJUNK", 0)  # the magic, which nothing republishes
        assert "corrupt" in one_line_error(cli("stats", str(target.pid)))
    finally:
        os.close(fd)
    time.sleep(0.5)
    assert target.alive(), "the engine must not trust its own header"


def test_truncated_file_does_not_harm_target(cli: Cli, target: Target) -> None:
    """A file truncated under the engine: the CLI says so; the engine's own writes to its mapping
    past the end would SIGBUS, so this also shows whether the engine guards against it."""
    os.truncate(target.shm, 100)
    one_line_error(cli("stats", str(target.pid)))
    time.sleep(0.5)
    assert target.alive()
