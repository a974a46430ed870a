"""bench/kernel_parse/run.py still runs: one 1 GiB Anolis area (131071 slots) generated and parsed."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "kernel_parse" / "run.py"


@pytest.mark.slow
@pytest.mark.skipif(not BENCH.exists(), reason="bench/ not in this checkout")
def test_one_area(tmp_path: Path) -> None:
    f = tmp_path / "objects"
    r = subprocess.run([sys.executable, str(BENCH), "--areas", "1", "--file", str(f)], capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    m = re.search(r"parsed (\d+) objects \((\d+) alloc frames\)", r.stdout)
    assert m and int(m[1]) == 131071 and int(m[2]) > 5 * 131071 * 0.9
    text = f.read_text()
    assert text.count("kfence-#") == 131071 and text.startswith("node 0:\nkfence-#0")
