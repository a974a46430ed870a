"""kernel/unpack-transfer.py: a capture arrives whole or the boot fails, in one line.

No QEMU here: these feed the unpacker transfer logs written the way
guest-init.sh writes them, good and damaged.
"""

from __future__ import annotations

import base64
import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

UNPACK = Path(__file__).resolve().parents[2] / "kernel" / "unpack-transfer.py"


def _entry(path: str, data: bytes, *, size: int | None = None, digest: str | None = None) -> str:
    b64 = base64.encodebytes(data).decode()  # 76-column lines, as busybox base64
    return (f"=== KQ-BEGIN {path}\r\n{b64.replace(chr(10), chr(13) + chr(10))}"
            f"=== KQ-END {path} {len(data) if size is None else size} "
            f"{digest or hashlib.sha256(data).hexdigest()}\r\n")


def _run(tmp_path: Path, log: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "xfer.log").write_text(log)
    return subprocess.run([sys.executable, str(UNPACK), str(tmp_path / "xfer.log"), str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=60)


def test_files_arrive_byte_for_byte(tmp_path: Path) -> None:
    blob = bytes(range(256)) * 700  # binary, longer than one base64 line
    log = "noise before\n" + _entry("capture.tar.gz", blob) + _entry("a/b.txt", b"x\n") + "=== KQ-DONE 2\n"
    proc = _run(tmp_path, log)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "out/capture.tar.gz").read_bytes() == blob
    assert (tmp_path / "out/a/b.txt").read_bytes() == b"x\n"


@pytest.mark.parametrize(("log", "why"), [
    (_entry("f", b"data"), "before KQ-DONE"),  # guest died before the end
    ("".join(_entry("f", bytes(1000)).splitlines(True)[:4]) + "=== KQ-DONE 1\n", "f has no KQ-END"),  # cut
    (_entry("f", b"data")[:-60] + "=== KQ-DONE 1\n", "malformed KQ-END"),  # cut inside the end line
    (_entry("f", b"data", size=5) + "=== KQ-DONE 1\n", "size or sha256"),
    (_entry("f", b"data", digest="0" * 64) + "=== KQ-DONE 1\n", "size or sha256"),
    (_entry("f", b"data") + "=== KQ-DONE 2\n", "2 files, 1 arrived"),
    (_entry("../escape", b"data") + "=== KQ-DONE 1\n", "leaves the output directory"),
    (_entry("/abs", b"data") + "=== KQ-DONE 1\n", "leaves the output directory"),
    ("=== KQ-BEGIN f\n@@@@\n=== KQ-END f 4 " + "0" * 64 + "\n=== KQ-DONE 1\n", "bad base64"),
    ("=== KQ-END f 4 " + "0" * 64 + "\n", "without a matching KQ-BEGIN"),
    ("", "before KQ-DONE"),
])
def test_damaged_transfer_is_one_line_error(tmp_path: Path, log: str, why: str) -> None:
    proc = _run(tmp_path, log)
    assert proc.returncode == 1
    assert proc.stderr.startswith("unpack-transfer: ") and proc.stderr.count("\n") == 1, proc.stderr
    assert why in proc.stderr
    assert "Traceback" not in proc.stderr


def test_missing_log_is_one_line_error(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, str(UNPACK), str(tmp_path / "nope"), str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and proc.stderr.startswith("unpack-transfer: ") and proc.stderr.count("\n") == 1
