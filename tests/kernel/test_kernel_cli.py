"""The CLI against fake sysfs trees (--root): get/set, refusals, enable/disable, stats, objects, reports."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from subprocess import CompletedProcess

import pytest
from kernellib import build_tree

Run = Callable[..., CompletedProcess[str]]
Tree = Callable[..., Path]
PARAMS = "sys/module/kfence/parameters"


def ok(r: CompletedProcess[str]) -> str:
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    return r.stdout


def refused(r: CompletedProcess[str], *parts: str) -> str:
    assert r.returncode != 0
    err = r.stderr.strip()
    assert err.startswith("ufence: ") and "\n" not in err and "Traceback" not in err, err
    for p in parts:
        assert p in err, err
    return err


def param(root: Path, name: str) -> str:
    return (root / PARAMS / name).read_text().strip()


def test_get_upstream(ufence: Run, ktree: Tree) -> None:
    root = ktree("upstream-6.12")
    got = dict(line.split("=", 1) for line in ok(ufence("get", "kernel", "--root", str(root))).splitlines())
    assert got["sample_interval"] == "100" and got["burst"] == "0" and got["deferrable"] == "0"
    assert got["cache.kmalloc-64"] == "on" and got["cache.dentry"] == "on"
    assert ok(ufence("get", "kernel", "skip_covered_thresh", "--root", str(root))).strip() == "75"


def test_set_params_and_cache_switch_upstream(ufence: Run, ktree: Tree) -> None:
    root = ktree("upstream-6.12")
    out = ok(ufence("set", "kernel", "burst=3", "skip_covered_thresh=90", "cache.dentry=off", "--root", str(root)))
    assert "burst=3" in out and "cache.dentry=off" in out
    assert param(root, "burst") == "3" and param(root, "skip_covered_thresh") == "90"
    # upstream's switch is skip_kfence: inverse polarity
    assert (root / "sys/kernel/slab/dentry/skip_kfence").read_text().strip() == "1"
    ok(ufence("set", "kernel", "cache.dentry=on", "--root", str(root)))
    assert (root / "sys/kernel/slab/dentry/skip_kfence").read_text().strip() == "0"


def test_cache_switch_anolis_polarity(ufence: Run, ktree: Tree) -> None:
    root = ktree("anolis")
    ok(ufence("set", "kernel", "cache.kmalloc-64=off", "--root", str(root)))
    assert (root / "sys/kernel/slab/kmalloc-64/kfence_enable").read_text().strip() == "0"
    assert ok(ufence("get", "kernel", "cache.kmalloc-64", "--root", str(root))).strip() == "off"


@pytest.mark.parametrize("variant,args,parts", [
    ("upstream-6.12", ["deferrable=1"], ["read-only", "kernel command line", "kfence.deferrable=1"]),
    ("upstream-6.12", ["check_on_panic=1"], ["read-only", "boot"]),
    ("upstream-6.12", ["num_objects=1000"], ["not available on this kernel", "Anolis"]),
    ("upstream-6.12", ["sample_interval=-1"], ["only on Anolis"]),
    ("upstream-6.12", ["sample_interval=abc"], ["not a whole number"]),
    ("upstream-6.12", ["burst=-2"], ["out of range"]),
    ("upstream-6.12", ["cache.nosuch=off"], ["no slab cache named 'nosuch'"]),
    ("upstream-6.12", ["cache.dentry=maybe"], ["not on/off"]),
    ("upstream-6.12", ["bogus=1"], ["unknown kernel setting 'bogus'"]),
    ("upstream-5.15", ["burst=1"], ["not available", "Linux 6.12+"]),
    ("upstream-5.15", ["skip_covered_thresh=50"], ["not available", "5.16"]),
    ("upstream-5.15", ["cache.dentry=off"], ["no per-cache KFENCE switch"]),
    ("anolis", ["pool_mode=percpu"], ["not one of global, node"]),
    ("anolis", ["sample_interval=-1"], ["needs num_objects >= 131071", "--pool 1G"]),
    ("anolis", ["num_objects=0"], ["at least 1"]),
])
def test_refusals_explain(ufence: Run, ktree: Tree, variant: str, args: list[str], parts: list[str]) -> None:
    root = ktree(variant)
    before = {p.name: p.read_text() for p in (root / PARAMS).iterdir()}
    refused(ufence("set", "kernel", *args, "--root", str(root)), *parts)
    assert {p.name: p.read_text() for p in (root / PARAMS).iterdir()} == before  # nothing written


def test_anolis_sign_switch_and_resize_rules(ufence: Run, ktree: Tree) -> None:
    root = ktree("anolis", params={"sample_interval": "100", "num_objects": "131071"})
    refused(ufence("set", "kernel", "sample_interval=-1", "--root", str(root)), "must go through 0")
    refused(ufence("set", "kernel", "num_objects=262142", "--root", str(root)), "only change while KFENCE is disabled",
            "ufence kernel disable")
    # in one batch, switching off first makes the resize legal
    ok(ufence("set", "kernel", "num_objects=262142", "sample_interval=0", "--root", str(root)))
    assert param(root, "num_objects") == "262142" and param(root, "sample_interval") == "0"
    ok(ufence("set", "kernel", "sample_interval=-1", "--root", str(root)))
    refused(ufence("set", "kernel", "sample_interval=100", "--root", str(root)), "set it to 0 first")


def test_not_built_and_off(ufence: Run, ktree: Tree) -> None:
    nb = ktree(built=False)
    for cmd in (["get", "kernel"], ["stats", "kernel"], ["set", "kernel", "sample_interval=1"], ["objects", "kernel"]):
        refused(ufence(*cmd, "--root", str(nb)), "CONFIG_KFENCE")
    off = ktree("upstream-6.12", params={"sample_interval": "0"}, stats=None, objects=None)
    refused(ufence("stats", "kernel", "--root", str(off)), "sample_interval=0", "ufence kernel enable")
    refused(ufence("objects", "kernel", "--root", str(off)), "ufence kernel enable")
    out = ok(ufence("kernel", "status", "--root", str(off)))
    assert "state:   off" in out and "ufence kernel enable" in out


def test_enable_full_dry_run_then_real(ufence: Run, ktree: Tree) -> None:
    root = ktree("anolis", params={"sample_interval": "100"})
    before = {p.name: p.read_text() for p in (root / PARAMS).iterdir()}
    out = ok(ufence("kernel", "enable", "--full", "--pool", "10G", "--dry-run", "--root", str(root)))
    lines = [ln for ln in out.splitlines() if ln.startswith("would write")]
    assert [ln.split("#")[0].split()[2] for ln in lines] == ["0", "1310710", "-1"]
    assert "10 x 1 GiB" in out
    assert {p.name: p.read_text() for p in (root / PARAMS).iterdir()} == before
    out = ok(ufence("kernel", "enable", "--full", "--pool", "10G", "--root", str(root)))
    assert "verified" in out
    assert param(root, "sample_interval") == "-1" and param(root, "num_objects") == "1310710"
    ok(ufence("kernel", "disable", "--root", str(root)))
    assert param(root, "sample_interval") == "0"
    ok(ufence("kernel", "enable", "--full", "--objects", "131070", "--root", str(root)))
    assert param(root, "num_objects") == "131071"  # rounded up to one 1 GiB area
    ok(ufence("kernel", "enable", "--sample", "20", "--root", str(root)))  # goes through 0 by itself
    assert param(root, "sample_interval") == "20"


def test_enable_full_refused_upstream_and_bad_sizes(ufence: Run, ktree: Tree) -> None:
    root = ktree("upstream-6.12")
    refused(ufence("kernel", "enable", "--full", "--root", str(root)), "only on Anolis", "--sample 1")
    a = ktree("anolis")
    refused(ufence("kernel", "enable", "--full", "--pool", "lots", "--root", str(a)), "bad size")
    refused(ufence("kernel", "enable", "--pool", "1G", "--root", str(a)), "--full")
    refused(ufence("kernel", "enable", "--sample", "0", "--root", str(a)), "positive")
    refused(ufence("kernel", "--root", str(a)))


def test_enable_sample_upstream(ufence: Run, ktree: Tree) -> None:
    root = ktree("upstream-6.12", params={"sample_interval": "0"}, stats=None, objects=None)
    out = ok(ufence("kernel", "enable", "--root", str(root)))
    assert "100" in out and param(root, "sample_interval") == "100"


def test_stats_json_and_pool(ufence: Run, ktree: Tree) -> None:
    root = ktree("upstream-6.12")
    st = json.loads(ok(ufence("stats", "kernel", "--json", "--root", str(root))))
    assert st["counters"]["total_bugs"] == 6 and st["pool_objects"] == 255 and st["pool_bytes"] == 2097152
    assert st["mode"] == "sample" and st["source"] == "kernel"


def test_stats_anolis_nearly_full_advice(ufence: Run, ktree: Tree) -> None:
    root = ktree("anolis", params={"sample_interval": "-1", "num_objects": "131071"},
                 stats="stats-anolis-6x-handwritten.txt")
    r = ufence("stats", "kernel", "--json", "--root", str(root))
    st = json.loads(ok(r))
    assert st["pool_objects"] == 255 and st["counters"]["currently_allocated"] == 200
    assert st["mode"] == "full" and "num_objects" in st["extra"]["pool_advice"]
    assert "78% full" in r.stderr or "78%" in r.stderr


def test_stats_pool_from_kernel_log(ufence: Run, ktree: Tree) -> None:
    root = ktree("upstream-6.12")
    log = root / "dmesg.txt"
    text = log.read_text().replace("using 2097152 bytes for 255 objects", "using 1056768 bytes for 128 objects")
    log.write_text(text)
    st = json.loads(ok(ufence("stats", "kernel", "--json", "--root", str(root))))
    assert (st["pool_objects"], st["pool_bytes"]) == (128, 1056768) and "log" in st["extra"]["pool_objects_from"]


def test_stats_upstream_config_num_objects(ufence: Run, ktree: Tree) -> None:
    root = ktree("upstream-6.12", dmesg=None)
    (root / "boot").mkdir()
    (root / "boot/config-6.12.117+deb12-amd64").write_text("CONFIG_KFENCE=y\nCONFIG_KFENCE_NUM_OBJECTS=100\n")
    r = ufence("stats", "kernel", "--json", "--root", str(root))
    st = json.loads(ok(r))
    assert st["pool_objects"] == 100 and st["pool_bytes"] == 101 * 2 * 4096
    assert "CONFIG_KFENCE_NUM_OBJECTS" in st["extra"]["pool_advice"] and "94%" in r.stderr


def test_objects_json_from_tree(ufence: Run, ktree: Tree) -> None:
    root = ktree("anolis", objects="objects-anolis-5.10-handwritten.txt")
    objs = [json.loads(line) for line in ok(ufence("objects", "kernel", "--json", "--root", str(root))).splitlines()]
    live = [(o["node"], o["index"], o["state"]) for o in objs]
    assert (0, 0, "allocated") in live and (1, 0, "freed") in live  # per-area indices, told apart by node
    freed = next(o for o in objs if o["state"] == "freed")
    assert freed["free"]["frames"][0]["function"] == "foo_release" and freed["free"]["frames"][0]["module"] == "foo"


def test_reports_text_and_json(ufence: Run, ktree: Tree) -> None:
    root = ktree("upstream-6.12")
    out = ok(ufence("reports", "kernel", "--root", str(root)))
    lines = out.splitlines()
    assert len(lines) == 6
    assert "KFENCE: use-after-free read in kq_read" in lines[4] and "pid 149 insmod" in lines[4]
    assert "kfence-#207 size=8 cache=kmalloc-8 (8B right)" in lines[0]
    data = json.loads(ok(ufence("reports", "kernel", "--json", "--root", str(root))))
    assert [d["signature"] for d in data] == [
        "KFENCE: out-of-bounds write in kq_write", "KFENCE: out-of-bounds read in kq_read",
        "KFENCE: memory corruption in kq_init", "KFENCE: use-after-free write in kq_write",
        "KFENCE: use-after-free read in kq_read", "KFENCE: invalid free in kq_init"]
    assert data[0]["object"]["index"] == 207 and data[0]["source"] == "kernel"


def test_reports_file_option(ufence: Run, tmp_path: Path) -> None:
    from kernellib import fixture_text

    log = tmp_path / "vmcore-dmesg.txt"
    log.write_text(fixture_text("dmesg-5.12-old-handwritten.txt"))
    out = ok(ufence("reports", "kernel", "--file", str(log)))
    assert len(out.splitlines()) == 3 and "invalid read in test_invalid_access" in out
    empty = tmp_path / "empty.txt"
    empty.write_text("nothing here\n")
    assert "no KFENCE reports" in ok(ufence("reports", "kernel", "--file", str(empty)))
    refused(ufence("reports", "kernel", "--file", str(tmp_path / "missing.txt")), "cannot read")


def test_bad_files_in_tree(ufence: Run, ktree: Tree) -> None:
    root = ktree("upstream-6.12")
    d = root / "sys/kernel/debug/kfence"
    (d / "stats").write_text("enabled: 1\ncurrently allocated: x\n")
    refused(ufence("stats", "kernel", "--root", str(root)), "stats:2")
    (d / "objects").write_text((d / "objects").read_text()[:5000])  # truncated copy
    r = ufence("objects", "kernel", "--root", str(root))
    refused(r, "truncated")
    (d / "objects").write_bytes(b"\x7fELF\x00\x01" * 50)
    refused(ufence("objects", "kernel", "--root", str(root)), "not a KFENCE object header")
    refused(ufence("get", "kernel", "--root", str(root / "nonexistent")), "not a directory")
    (root / PARAMS / "sample_interval").write_text("garbage\n")
    for cmd in (["get", "kernel"], ["kernel", "status"], ["kernel", "enable"], ["set", "kernel", "burst=1"]):
        refused(ufence(*cmd, "--root", str(root)), "sample_interval: expected a number")
    no_log = ktree("upstream-6.12", dmesg=None)
    refused(ufence("reports", "kernel", "--root", str(no_log)), "dmesg.txt")


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root and setpriv to drop to nobody")
def test_not_root_is_explained(ktree: Tree) -> None:
    """As an unprivileged user the write is refused by the files' permissions: say root is needed."""
    base = Path(tempfile.mkdtemp(prefix="ufence-kernel-nobody-"))  # pytest's tmp_path is 0700
    base.chmod(0o755)
    root = build_tree(base / "tree", "upstream-6.12")
    for p in [root, *root.rglob("*")]:
        p.chmod(p.stat().st_mode | 0o005 | (0o001 if p.is_dir() else 0))  # readable, not writable, by others
    import ufence

    src = Path(ufence.__file__).resolve().parents[1]  # the package under test: tree or installed
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(src), os.environ.get("PYTHONPATH", "")])}
    r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-m", "ufence",
                        "set", "kernel", "burst=1", "--root", str(root)], capture_output=True, text=True, env=env,
                       timeout=60)
    try:
        refused(r, "permission denied", "needs root")
        assert param(root, "burst") == "0"
    finally:
        shutil.rmtree(base)
