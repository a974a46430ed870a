"""What a capture holds: the OUTDIR of kernel/boot-kfence.sh and what the test
module said it did there (its "kq: ..." lines in the guest's dmesg)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Capture:
    """One boot's OUTDIR plus what the test module said it did (from dmesg)."""

    root: Path
    dmesg: str
    expected: list[tuple[str, str]] = field(default_factory=list)  # (KFENCE title bug, function)
    leaks: dict[str, int] = field(default_factory=dict)  # leak site -> KFENCE objects leaked
    probes: list[str] = field(default_factory=list)  # "kmalloc(192) 41/50", ... in order


def parse_capture(root: Path) -> Capture:
    dmesg = (root / "dmesg.txt").read_text()
    cap = Capture(root=root, dmesg=dmesg)
    cap.expected = re.findall(r"\] kq: expect (.+) in (kq_\w+)$", dmesg, re.M)
    for n, site in re.findall(r"\] kq: leak: (\d+) of \d+ kmalloc\(\d+\) from (kq_\w+) are", dmesg):
        cap.leaks[site] = int(n)
    cap.probes = re.findall(r"\] kq: probe (.+) landed in KFENCE$", dmesg, re.M)
    return cap
