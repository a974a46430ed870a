"""Trees rebuilt from real captures (Debian 6.12 under QEMU): the parameter
values the guest printed, and the late-enable sequence (KFENCE off at boot,
no debugfs directory, then enabled through sysfs)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from subprocess import CompletedProcess

from kernellib import fixture_text

Run = Callable[..., CompletedProcess[str]]
PARAM = re.compile(r"^PARAM /sys/module/kfence/parameters/(\w+) = (\S+)$")
BOOT_ONLY = {"deferrable", "check_on_panic"}


def _params(lines: list[str]) -> dict[str, str]:
    return {m[1]: m[2] for m in map(PARAM.match, lines) if m}


def _tree(root: Path, params: dict[str, str], stats: str | None) -> Path:
    pdir = root / "sys/module/kfence/parameters"
    pdir.mkdir(parents=True)
    (root / "sys/kernel/debug").mkdir(parents=True)
    for k, v in params.items():
        (pdir / k).write_text(v + "\n")
        (pdir / k).chmod(0o444 if k in BOOT_ONLY else 0o600)
    if stats is not None:
        (root / "sys/kernel/debug/kfence").mkdir()
        (root / "sys/kernel/debug/kfence/stats").write_text(stats)
    return root


def test_boot_params_capture(ufence: Run, tmp_path: Path) -> None:
    params = _params(fixture_text("kfence-params-boot-sample_interval1.txt").splitlines())
    assert params == {"burst": "0", "check_on_panic": "N", "deferrable": "N", "sample_interval": "1",
                      "skip_covered_thresh": "75"}
    root = _tree(tmp_path / "t", params, fixture_text("stats-after-6-bugs.txt"))
    got = json.loads(ufence("get", "kernel", "--json", "--root", str(root)).stdout)
    assert got == {"burst": "0", "check_on_panic": "0", "deferrable": "0", "sample_interval": "1",
                   "skip_covered_thresh": "75"}
    status = ufence("kernel", "status", "--root", str(root)).stdout
    assert "upstream Linux 6.12 or newer" in status and "sampling every 1 ms" in status


def test_late_enable_capture(ufence: Run, tmp_path: Path) -> None:
    lines = fixture_text("late-enable-console.txt").splitlines()
    cut = next(i for i, ln in enumerate(lines) if ln.startswith("=== echo 100"))
    before, after = _params(lines[:cut]), _params(lines[cut:])
    assert before["sample_interval"] == "0" and after["sample_interval"] == "100"
    off = _tree(tmp_path / "off", before, None)  # "ls: /sys/kernel/debug/kfence: No such file or directory"
    r = ufence("stats", "kernel", "--root", str(off))
    assert r.returncode == 1 and "sample_interval=0" in r.stderr and "ufence kernel enable" in r.stderr
    # what 'ufence kernel enable' writes is what the guest's 'echo 100 > sample_interval' did
    out = ufence("kernel", "enable", "--dry-run", "--root", str(off)).stdout
    assert "would write 100 > " + str(off / "sys/module/kfence/parameters/sample_interval") in out
    start = next(i for i, ln in enumerate(lines) if ln.startswith("enabled: "))
    stats = "\n".join(lines[start : start + 9]) + "\n"
    on = _tree(tmp_path / "on", after, stats)
    st = json.loads(ufence("stats", "kernel", "--json", "--root", str(on)).stdout)
    assert st["enabled"] and st["mode"] == "sample" and st["counters"]["total_allocations"] == 2
    assert st["counters"]["currently_allocated"] == 0 and st["extra"]["sample_interval"] == 100
