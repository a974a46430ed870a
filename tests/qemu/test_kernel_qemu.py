"""ufence against a real KFENCE kernel: Debian 6.12 booted under QEMU (TCG).

kernel/boot-kfence.sh boots the stock kernel, whose guest init drives KFENCE
through sysfs and loads kernel/module/kq_kfence.ko; that module triggers every
KFENCE bug type from functions named after it and leaks KFENCE objects from
kq_leak_site (and fewer from kq_leak_minor_site) among alloc/free churn. The
guest copies sysfs, debugfs and dmesg out; these tests run the real ufence CLI
on that tree (``--root``) and check what it parsed against what the module
did (its "kq: ..." lines in the same dmesg) and against KFENCE's semantics.

Invalid access is reachable: the module reads page 0 of the pool
(``__kfence_pool`` is exported), a guard page that belongs to no object.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from qemulib import Capture

pytestmark = pytest.mark.qemu

Run = Callable[..., subprocess.CompletedProcess[str]]

# What each test function of kq_kfence.c does, independent of its log lines:
# function -> (bug, access, side, distance in bytes, object size, cache).
# Distances are KFENCE's: left = start - address, right = address - start.
EXPECTED: dict[str, tuple[str, str | None, str | None, int | None, int | None, str | None]] = {
    "kq_oob_read_left": ("out-of-bounds", "read", "left", 1, 32, "kmalloc-32"),
    "kq_oob_read_right": ("out-of-bounds", "read", "right", 32, 32, "kmalloc-32"),
    "kq_oob_write_left": ("out-of-bounds", "write", "left", 3, 64, "kmalloc-64"),
    "kq_oob_write_right": ("out-of-bounds", "write", "right", 8, 8, "kmalloc-8"),
    "kq_cache_oob_read": ("out-of-bounds", "read", "right", 48, 48, "kq_cache"),
    "kq_uaf_read": ("use-after-free", "read", None, None, 32, "kmalloc-32"),
    "kq_uaf_write": ("use-after-free", "write", None, None, 32, "kmalloc-32"),
    "kq_corrupt_canary": ("memory corruption", None, None, None, 13, "kmalloc-16"),
    "kq_invalid_free": ("invalid free", None, None, None, 32, "kmalloc-32"),
    "kq_double_free": ("double free", None, None, None, 32, "kmalloc-32"),
    "kq_invalid_access": ("invalid", "read", None, None, None, None),
}
REPORT_TYPES = {"out-of-bounds", "use-after-free", "memory corruption", "invalid free", "invalid"}


def _docs(text: str) -> list[Any]:
    """A JSON array, one JSON object, or JSON lines -> list of documents."""
    text = text.strip()
    if not text:
        return []
    try:
        doc = json.loads(text)
    except json.JSONDecodeError:
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    return doc if isinstance(doc, list) else [doc]


def _ok(ufence: Run, *args: str) -> str:
    proc = ufence(*args)
    assert proc.returncode == 0, f"ufence {' '.join(args)} exited {proc.returncode}: {proc.stderr.strip()}"
    assert "Traceback" not in proc.stderr
    return proc.stdout


def _name(func: str | None) -> str:
    """'kq_read.isra.0+0xb/0x20 [kq_kfence]' -> 'kq_read'."""
    return re.split(r"[.+ ]", func or "", maxsplit=1)[0]


def _stats(ufence: Run, root: Path) -> dict[str, Any]:
    docs = _docs(_ok(ufence, "stats", "kernel", "--root", str(root), "--json"))
    assert len(docs) == 1, docs
    assert docs[0]["source"] == "kernel"
    return docs[0]


def _reports(ufence: Run, *where: str) -> dict[str, dict[str, Any]]:
    """Reports by the test function they name; only kq_kfence's, each once."""
    reports = _docs(_ok(ufence, "reports", "kernel", *where, "--json"))
    ours: dict[str, dict[str, Any]] = {}
    for r in reports:
        assert r["source"] == "kernel"
        name = _name(r["function"])
        if name.startswith("kq_"):
            assert name not in ours, f"two reports in {name}"
            ours[name] = r
    return ours


# --- the boot itself --------------------------------------------------------


def test_guest_ran_every_step(kfence_capture: Capture) -> None:
    """The module logged every bug and both leaks; the guest did every control step."""
    cap = kfence_capture
    assert sorted(f for _, f in cap.expected) == sorted(EXPECTED), cap.expected
    assert "FAILED" not in cap.dmesg
    assert cap.leaks["kq_leak_site"] == 32 and cap.leaks["kq_leak_minor_site"] == 8
    control = (cap.root / "control.log").read_text()
    assert "insmod kq_kfence.ko: rc=0" in control
    assert not re.search(r"rc=[1-9]", control), control


# --- reports ---------------------------------------------------------------


def test_reports_every_bug_type(ufence: Run, kfence_capture: Capture) -> None:
    ours = _reports(ufence, "--root", str(kfence_capture.root))
    assert sorted(ours) == sorted(EXPECTED)
    assert {r["bug"] for r in ours.values()} >= REPORT_TYPES
    for func, (bug, access, side, distance, size, cache) in EXPECTED.items():
        r = ours[func]
        # KFENCE titles a double free "invalid free"; the model may name it precisely.
        assert r["bug"] in ({bug, "invalid free"} if bug == "double free" else {bug}), (func, r["bug"])
        assert r["access"] == access, (func, r["access"])
        if side is not None:
            assert (r["side"], r["distance"]) == (side, distance), func
        # booted with -cpu max, so the kernel hashes pointers
        assert r.get("hashed") is True, func
        stack = r["stack"]
        assert stack, func
        mine = [f for f in stack if _name(f.get("function")) == func]
        assert mine and mine[0].get("module") == "kq_kfence", (func, stack[:4])
        obj = r.get("object")
        if size is None:
            assert obj is None, func  # invalid access: no object to blame
            continue
        assert (obj["size"], obj["cache"]) == (size, cache), func
        allocated_by = [_name(f.get("function")) for f in obj["alloc"]["frames"]]
        assert "kq_guarded" in allocated_by and func in allocated_by, (func, allocated_by)
        if bug in ("use-after-free", "double free"):
            assert obj["state"] == "freed" and obj["free"]["frames"], func
    # who and when: the insmod that loaded the module, at the BUG line's time, on this kernel
    release = (kfence_capture.root / "proc/sys/kernel/osrelease").read_text().strip()
    titles = dict(re.findall(r"^\[ *([\d.]+)\] BUG: KFENCE: .* in (kq_\w+)", kfence_capture.dmesg, re.M))
    assert {r["comm"] for r in ours.values()} == {"insmod"} and len({r["pid"] for r in ours.values()}) == 1
    assert {r["kernel"] for r in ours.values()} == {release}
    assert {f: r["timestamp"] for f, r in ours.items()} == {f: float(t) for t, f in titles.items()}
    # one dedup signature per distinct bug, naming the function
    sigs = [r["signature"] for r in ours.values()]
    assert len(set(sigs)) == len(sigs) and all(f in r["signature"] for f, r in ours.items())
    corrupt = ours["kq_corrupt_canary"]["corruption"]
    assert corrupt and any(b.get("hidden") for b in corrupt)  # '!' for the bytes it wrote


def test_reports_from_saved_dmesg_file(ufence: Run, kfence_capture: Capture) -> None:
    by_root = _reports(ufence, "--root", str(kfence_capture.root))
    by_file = _reports(ufence, "--file", str(kfence_capture.root / "dmesg.txt"))
    assert {f: r["bug"] for f, r in by_file.items()} == {f: r["bug"] for f, r in by_root.items()}


# --- stats -----------------------------------------------------------------


def test_stats_match_the_bugs_and_leaks(ufence: Run, kfence_capture: Capture) -> None:
    st = _stats(ufence, kfence_capture.root)
    c = st["counters"]
    assert st["enabled"] is True
    assert c["total_bugs"] >= len(kfence_capture.expected) == len(EXPECTED)
    assert c["total_bugs"] == len(_docs(_ok(ufence, "reports", "kernel", "--root", str(kfence_capture.root), "--json")))
    assert c["currently_allocated"] >= sum(kfence_capture.leaks.values())
    assert c["currently_allocated"] == c["total_allocations"] - c["total_frees"]
    assert st["mode"] == "sample"
    pool = re.search(r"kfence: initialized - using (\d+) bytes for (\d+) objects", kfence_capture.dmesg)
    assert pool, "no KFENCE init line in dmesg"
    assert (st["pool_bytes"], st["pool_objects"]) == (int(pool.group(1)), int(pool.group(2)))


def test_stats_before_and_after_each_step(ufence: Run, kfence_capture: Capture) -> None:
    states = kfence_capture.root / "states"
    boot = _stats(ufence, states / "00-boot")
    assert boot["enabled"] is True and boot["counters"]["total_bugs"] == 0
    assert _stats(ufence, states / "02-disabled")["enabled"] is False  # sample_interval=0 at runtime
    again = _stats(ufence, states / "03-enabled")
    assert again["enabled"] is True and again["counters"]["total_bugs"] == 0
    after = _stats(ufence, states / "04-after-module")
    assert after["counters"]["total_bugs"] == len(EXPECTED)
    assert after["counters"]["total_allocations"] > again["counters"]["total_allocations"]


# --- objects and leaks -----------------------------------------------------


def test_objects_every_slot_and_the_leak(ufence: Run, kfence_capture: Capture) -> None:
    root = str(kfence_capture.root)
    every = _docs(_ok(ufence, "objects", "kernel", "--root", root, "--json", "--state", "every"))
    assert sorted(o["index"] for o in every) == list(range(255))  # CONFIG_KFENCE_NUM_OBJECTS=255
    live = [o for o in every if o["state"] == "allocated"]
    leaked = [o for o in live if _name(o["alloc"]["frames"][0].get("function")) == "kq_leak_site"]
    assert len(leaked) == kfence_capture.leaks["kq_leak_site"]
    assert all((o["size"], o["cache"], o.get("hashed")) == (64, "kmalloc-64", True) for o in leaked)
    assert all(o["alloc"]["frames"][0].get("module") == "kq_kfence" for o in leaked)
    churn = [o for o in every if o.get("alloc") and _name(o["alloc"]["frames"][0].get("function")) == "kq_churn_site"]
    assert all(o["state"] == "freed" for o in churn)
    st = _stats(ufence, kfence_capture.root)
    # stats and objects are read one after the other in a live guest: allow a little traffic
    assert abs(len(live) - st["counters"]["currently_allocated"]) <= 10


def test_leaks_rank_the_module_leak_first(ufence: Run, kfence_capture: Capture) -> None:
    out = _ok(ufence, "leaks", "kernel", "--root", str(kfence_capture.root), "--format", "json", "--min-age", "0")
    (rep,) = _docs(out)
    groups = rep["groups"]
    top = groups[0]
    assert _name(top["frames"][0].get("function")) == "kq_leak_site", top["frames"][:3]
    assert top["count"] == kfence_capture.leaks["kq_leak_site"]
    assert top["bytes"] == 64 * top["count"]
    minor = [i for i, g in enumerate(groups) if _name(g["frames"][0].get("function")) == "kq_leak_minor_site"]
    assert len(minor) == 1 and minor[0] > 0
    assert groups[minor[0]]["count"] == kfence_capture.leaks["kq_leak_minor_site"]
    assert not any(_name(g["frames"][0].get("function")) == "kq_churn_site" for g in groups)


# --- the runtime control path --------------------------------------------------


def test_settings_read_back_what_the_guest_set(ufence: Run, kfence_capture: Capture) -> None:
    cfg = json.loads(_ok(ufence, "get", "kernel", "--root", str(kfence_capture.root), "--json"))
    assert cfg["sample_interval"] == "1"
    assert cfg["skip_covered_thresh"] == "90"
    assert cfg["cache.kmalloc-192"] == "off"  # the guest wrote skip_kfence=1
    assert cfg["cache.kq_cache"] == "on"  # ... and 1 then 0 here
    boot = json.loads(_ok(ufence, "get", "kernel", "--root", str(kfence_capture.root / "states/00-boot"), "--json"))
    assert boot["skip_covered_thresh"] == "75" and boot["cache.kmalloc-192"] == "on"


def test_skip_kfence_took_effect_in_the_guest(kfence_capture: Capture) -> None:
    """The module's probes: switching a cache off stops KFENCE sampling it."""
    got = [re.match(r"(\S+) (\d+)/(\d+)", p) for p in kfence_capture.probes]
    assert [m and m.group(1) for m in got] == ["kmalloc(192)"] * 2 + ["kq_cache"] * 3
    landed = [int(m.group(2)) for m in got if m]
    assert landed[0] > 0 and landed[1] == 0  # kmalloc-192: on, then off
    assert landed[2] > 0 and landed[3] == 0 and landed[4] > 0  # kq_cache: on, off, on again


def test_set_writes_a_collected_tree(ufence: Run, kfence_capture: Capture, tmp_path: Path) -> None:
    root = tmp_path / "tree"
    shutil.copytree(kfence_capture.root / "sys", root / "sys")
    _ok(ufence, "set", "kernel", "--root", str(root), "skip_covered_thresh=75", "cache.kmalloc-192=on")
    assert (root / "sys/module/kfence/parameters/skip_covered_thresh").read_text().strip() == "75"
    assert (root / "sys/kernel/slab/kmalloc-192/skip_kfence").read_text().strip() == "0"


def test_kernel_disable_and_enable_a_collected_tree(ufence: Run, kfence_capture: Capture, tmp_path: Path) -> None:
    root = tmp_path / "tree"
    shutil.copytree(kfence_capture.root / "sys", root / "sys")
    interval = root / "sys/module/kfence/parameters/sample_interval"
    _ok(ufence, "kernel", "disable", "--root", str(root))
    assert interval.read_text().strip() == "0"
    _ok(ufence, "kernel", "enable", "--sample", "100", "--root", str(root))
    assert interval.read_text().strip() == "100"


def test_kfence_off_at_boot_then_enabled_late(ufence: Run, kfence_late_capture: Capture) -> None:
    cap = kfence_late_capture
    states = cap.root / "states"
    assert not (states / "00-boot/sys/kernel/debug/kfence").exists()
    cfg = json.loads(_ok(ufence, "get", "kernel", "--root", str(states / "00-boot"), "--json"))
    assert cfg["sample_interval"] == "0"
    off = ufence("stats", "kernel", "--root", str(states / "00-boot"), "--json")
    if off.returncode == 0:  # either a stats document saying disabled...
        assert _docs(off.stdout)[0]["enabled"] is False
    else:  # ... or one line explaining why there are none
        assert off.stderr.startswith("ufence: ") and off.stderr.count("\n") == 1, off.stderr
    late = _stats(ufence, states / "01-late-enable")
    assert late["enabled"] is True and late["counters"]["total_bugs"] == 0
    assert re.search(r"kfence: initialized - using \d+ bytes for 255 objects", cap.dmesg)
    # the module's bugs are found the same way after a late enable
    assert sorted(_reports(ufence, "--root", str(cap.root))) == sorted(EXPECTED)


def test_raw_pointers_add_up(ufence: Run, kfence_late_capture: Capture) -> None:
    """With no_hash_pointers every address is real: check it against what each test did."""
    pool = re.search(r"kfence: initialized - using (\d+) bytes for \d+ objects at (0x[0-9a-f]+)-(0x[0-9a-f]+)",
                     kfence_late_capture.dmesg)
    assert pool, "no KFENCE init line with raw pointers"
    base, end = int(pool.group(2), 16), int(pool.group(3), 16)
    assert end - base == int(pool.group(1))
    page = 4096
    ours = _reports(ufence, "--root", str(kfence_late_capture.root))
    assert sorted(ours) == sorted(EXPECTED)
    for func, r in ours.items():
        assert not r.get("hashed"), func
        addr = int(r["address"], 16)
        assert base <= addr < end, func
        obj = r.get("object")
        if obj is None:
            assert func == "kq_invalid_access" and addr == base + 100  # kq_invalid_access reads pool[100]
            continue
        start, last = int(obj["start"], 16), int(obj["end"], 16)
        assert not obj.get("hashed") and last - start + 1 == obj["size"], func
        side, distance = EXPECTED[func][2:4]
        if side == "left":  # placed at its page's start, accessed before it
            assert start % page == 0 and addr == start - distance, func
        elif side == "right":  # placed against the next guard page, accessed past it
            assert (last + 1) % page == 0 and addr == start + distance, func
    offset = {"kq_uaf_read": 5, "kq_uaf_write": 7, "kq_corrupt_canary": 13, "kq_invalid_free": 1, "kq_double_free": 0}
    for func, off in offset.items():
        r = ours[func]
        assert int(r["address"], 16) == int(r["object"]["start"], 16) + off, func
    # kq_corrupt_canary wrote 0x78 at p[13] and 0x79 at p[15]; the rest of the canary is intact
    values = [b["value"] for b in ours["kq_corrupt_canary"]["corruption"]]
    assert values[:3] == [0x78, None, 0x79] and not any(values[3:]), values
