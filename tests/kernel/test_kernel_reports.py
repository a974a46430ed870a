"""dmesg report parsing over the captured logs, in every log shape."""

from __future__ import annotations

import re

import pytest
from kernellib import fixture_text

from ufence.analysis.signature import signature
from ufence.backends.kernel.dmesg import messages
from ufence.backends.kernel.reports_parse import iter_reports
from ufence.model import BugType, ObjectState, Report

TS = re.compile(r"^\[\s*(\d+)\.(\d+)\] ?(.*)$")


def parse(text: str) -> list[Report]:
    return list(iter_reports(messages(text.splitlines())))


def _lines(name: str) -> list[str]:
    return [ln for ln in fixture_text(name).splitlines() if not ln.startswith("#")]


EXPECTED = [  # (bug, access, function, signature) for the kq_kfence test module's six bugs
    (BugType.OUT_OF_BOUNDS, "write", "kq_write", "KFENCE: out-of-bounds write in kq_write"),
    (BugType.OUT_OF_BOUNDS, "read", "kq_read.isra.0", "KFENCE: out-of-bounds read in kq_read"),
    (BugType.MEMORY_CORRUPTION, None, "kq_init", "KFENCE: memory corruption in kq_init"),
    (BugType.USE_AFTER_FREE, "write", "kq_write", "KFENCE: use-after-free write in kq_write"),
    (BugType.USE_AFTER_FREE, "read", "kq_read.isra.0", "KFENCE: use-after-free read in kq_read"),
    (BugType.DOUBLE_FREE, None, "kq_init", "KFENCE: invalid free in kq_init"),
]


@pytest.mark.parametrize("name", ["dmesg-kfence-reports.txt", "dmesg-kfence-reports-nohash.txt"])
def test_captured_six_reports(name: str) -> None:
    reps = parse(fixture_text(name))
    assert [(r.bug, r.access, r.function, signature(r)) for r in reps] == EXPECTED
    hashed = "nohash" not in name
    for r in reps:
        assert r.source == "kernel" and r.comm == "insmod" and r.pid in (149, 152)
        assert r.kernel == "6.12.117+deb12-amd64" and r.extra["uid"] == 0
        assert r.extra["hardware"].startswith("QEMU Standard PC")
        assert r.hashed is hashed and r.address is not None
        assert r.object is not None and r.object.alloc is not None and r.stack
        assert r.stack[0].module == "kq_kfence" or r.stack[0].function == "kq_init"
        assert r.raw.startswith("=" * 66) and "BUG: KFENCE:" in r.raw
        assert not r.extra.get("truncated")
    oob_w, oob_r, corr, _uaf_w, uaf_r, dfree = reps
    assert (oob_w.distance, oob_w.side, oob_w.object.size, oob_w.object.cache) == (8, "right", 8, "kmalloc-8")
    assert (oob_r.distance, oob_r.side) == (1, "left")
    assert oob_w.object.state is ObjectState.ALLOCATED and uaf_r.object.state is ObjectState.FREED
    assert corr.object.free is not None and corr.corruption and corr.corruption[1].value is None
    assert len(corr.corruption) == 16
    assert dfree.object.state is ObjectState.FREED and dfree.address == dfree.object.start
    assert dfree.title("KFENCE") == "BUG: KFENCE: invalid free in kq_init"
    assert oob_w.extra["taint"] == "GOE" and oob_r.extra["taint"] == "GBOE"  # B after the first report
    if hashed:
        assert corr.corruption[0].hidden and corr.corruption[0].value is None
        assert "registers" not in oob_w.extra
    else:
        assert corr.corruption[0].value == 0x78 and not corr.corruption[0].hidden
        assert oob_w.address == oob_w.object.start + 8  # right distance is from the object start
        assert oob_r.address == oob_r.object.start - 1
        regs = oob_w.extra["registers"]
        assert regs["RIP"] == "0010:kq_write+0xb/0x20 [kq_kfence]" and regs["CR2"] == "ffffffffc0549ff1"
        assert regs["RDI"] == "ff229ac19f1b1000"  # kernel registers, not the user-space block after them
        trace = [f["function"] for f in oob_w.extra["call_trace"]]
        assert trace[0] == "kq_oob_write_right" and "__pfx_kq_init" not in trace  # '?' frames dropped
    # the report's object index is the one named on the access line
    assert f"kfence-#{oob_w.object.index})" in oob_w.raw or f"kfence-#{oob_w.object.index}):" in oob_w.raw


def _same(a: list[Report], b: list[Report]) -> None:
    key = [(r.bug, r.access, r.function, r.address, r.distance, r.pid, r.comm, r.kernel,
            r.object.to_dict() if r.object else None, [f.to_dict() for f in r.stack]) for r in a]
    assert key == [(r.bug, r.access, r.function, r.address, r.distance, r.pid, r.comm, r.kernel,
                    r.object.to_dict() if r.object else None, [f.to_dict() for f in r.stack]) for r in b]


def test_log_shapes_parse_the_same() -> None:
    """dmesg, no timestamps, <3> console levels, /dev/kmsg records, syslog, CRLF: same reports."""
    lines = _lines("dmesg-kfence-reports-nohash.txt")
    base = parse("\n".join(lines))
    bare = [TS.match(ln)[3] if TS.match(ln) else ln for ln in lines]
    _same(base, parse("\n".join(bare)))
    _same(base, parse("\n".join(f"<3>{ln}" for ln in bare)))
    _same(base, parse("\n".join(f"<3>{ln}" for ln in lines)))
    kmsg = []
    for seq, ln in enumerate(lines):
        m = TS.match(ln)
        usec = int(m[1]) * 1_000_000 + int(m[2]) if m else 0
        kmsg.append(f"3,{seq},{usec},-;{m[3] if m else ln}")
        if seq % 7 == 0:
            kmsg.append(" SUBSYSTEM=module")
            kmsg.append(" DEVICE=+module:kq_kfence")
    kreps = parse("\n".join(kmsg))
    _same(base, kreps)
    assert kreps[0].timestamp == pytest.approx(base[0].timestamp)
    _same(base, parse("\n".join(f"Dec  2 05:30:09 guest kernel: {ln}" for ln in lines)))
    _same(base, parse("\r\n".join(lines)))


def test_truncated_log_keeps_partial_report() -> None:
    lines = _lines("dmesg-kfence-reports.txt")
    cut = next(i for i, ln in enumerate(lines) if "freed by task" in ln)
    reps = parse("\n".join(lines[:cut]))
    assert reps[-1].extra.get("truncated") and reps[-1].bug is BugType.MEMORY_CORRUPTION
    assert len(reps) == 3


def test_old_512_handwritten() -> None:
    reps = parse(fixture_text("dmesg-5.12-old-handwritten.txt"))
    oob, inv, corr = reps
    assert oob.bug is BugType.OUT_OF_BOUNDS and oob.access == "read" and oob.function == "test_out_of_bounds_read"
    assert oob.object.index == 72 and oob.object.alloc.tid == 484 and oob.object.alloc.cpu is None
    assert (oob.cpu, oob.pid, oob.comm, oob.kernel) == (0, 484, "kunit_try_catch", "5.12.0-rc3+")
    assert "uid" not in oob.extra and "taint" not in oob.extra
    assert inv.bug is BugType.INVALID_ACCESS and inv.access == "read" and inv.object is None
    assert inv.address == 0xFFFF8C3F2E20000A and inv.extra["taint"] == "GB"
    assert corr.bug is BugType.MEMORY_CORRUPTION and corr.corruption[0].value == 0xAC
    assert len(corr.corruption) == 7 and corr.object.state is ObjectState.FREED and corr.object.size == 73
    assert signature(corr) == "KFENCE: memory corruption in test_kmalloc_aligned_oob_write"
    assert signature(inv) == "KFENCE: invalid read in test_invalid_access"


def test_no_reports_and_noise() -> None:
    assert parse("") == []
    assert parse("\x00\xff garbage\nBUG: KFENCE: something new in foo+0x1/0x2\n====\n") == []
    assert parse(fixture_text("late-enable-console.txt")) == []
