"""The machine facts printed next to every table."""

from __future__ import annotations

import os
import platform
import re
import subprocess
from pathlib import Path

from harness.configs import scudo_path


def _first(cmd: list[str]) -> str:
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return "n/a"
    lines = (r.stdout + r.stderr).strip().splitlines()
    return lines[0].strip() if lines else "n/a"


def facts() -> dict[str, str]:
    cpu = "unknown"
    try:
        m = re.search(r"^model name\s*:\s*(.*)$", Path("/proc/cpuinfo").read_text(), re.M)
        cpu = m.group(1).strip() if m else cpu
    except OSError:
        pass
    mem = "unknown"
    try:
        m = re.search(r"^MemTotal:\s*(\d+)", Path("/proc/meminfo").read_text(), re.M)
        mem = f"{int(m.group(1)) / 2**20:.1f} GiB" if m else mem
    except OSError:
        pass
    try:
        maps = Path("/proc/sys/vm/max_map_count").read_text().strip()
    except OSError:
        maps = "n/a"
    return {
        "nproc": str(os.cpu_count()),
        "cpu": cpu,
        "memory": mem,
        "kernel": platform.release(),
        "glibc": os.confstr("CS_GNU_LIBC_VERSION") or "n/a",
        "vm.max_map_count": maps,
        "gcc": _first(["gcc", "--version"]),
        "hackbench": "rt-tests " + _first(["dpkg-query", "-W", "-f=${Version}", "rt-tests"]),
        "sysbench": _first(["sysbench", "--version"]),
        "mariadbd": _first(["/usr/sbin/mariadbd", "--version"]),
        "redis-server": _first(["redis-server", "--version"]),
        "efence": "electric-fence " + _first(["dpkg-query", "-W", "-f=${Version}", "electric-fence"]),
        "duma": "duma " + _first(["dpkg-query", "-W", "-f=${Version}", "duma"]),
        "scudo": scudo_path() or "n/a",
        "valgrind": _first(["valgrind", "--version"]),
    }
