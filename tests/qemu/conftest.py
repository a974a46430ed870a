"""Fixtures for the real-kernel tests: boot kernel/boot-kfence.sh once per session.

Two captures, each one QEMU boot (about 10-25 s with a warm cache):
``kfence_capture`` boots with kfence.sample_interval=1 (hashed pointers);
``kfence_late_capture`` boots with KFENCE off and no_hash_pointers, and lets the
guest enable KFENCE late through sysfs.
Setting UFENCE_QEMU_CAPTURE (and UFENCE_QEMU_LATE_CAPTURE) to an existing
OUTDIR reuses it instead of booting, for quick iterations on the asserts.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from qemulib import Capture, parse_capture

REPO = Path(__file__).resolve().parents[2]
BOOT = REPO / "kernel" / "boot-kfence.sh"


def _unavailable() -> str | None:
    """Why this machine cannot run the boot at all, or None."""
    if not BOOT.exists():
        return f"{BOOT} is not in this checkout"
    if shutil.which("apt-get") is None or shutil.which("apt-cache") is None:
        return "apt-get is not available: the Debian kernel cannot be fetched here"
    if shutil.which("qemu-system-x86_64") is None and os.geteuid() != 0:
        return "qemu-system-x86_64 is not installed and we are not root to apt-get install it"
    return None


def _boot(tmp_path_factory: pytest.TempPathFactory, name: str, env_var: str, *append: str) -> Capture:
    reuse = os.environ.get(env_var)
    if reuse:
        return parse_capture(Path(reuse))
    why = _unavailable()
    if why:
        pytest.skip(why)
    out = tmp_path_factory.mktemp(name) / "out"
    cmd = [str(BOOT), str(out)]
    for a in append:
        cmd += ["--append", a]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{BOOT.name} did not finish in 900 s")
    if proc.returncode != 0:
        pytest.fail(f"{BOOT.name} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return parse_capture(out)


@pytest.fixture(scope="session")
def kfence_capture(tmp_path_factory: pytest.TempPathFactory) -> Capture:
    """Booted with kfence.sample_interval=1: reports, leaks, control steps."""
    return _boot(tmp_path_factory, "kfence-boot", "UFENCE_QEMU_CAPTURE")


@pytest.fixture(scope="session")
def kfence_late_capture(tmp_path_factory: pytest.TempPathFactory) -> Capture:
    """Booted with KFENCE off (Debian's default) and raw pointers; the guest enables KFENCE late."""
    return _boot(tmp_path_factory, "kfence-late", "UFENCE_QEMU_LATE_CAPTURE",
                 "kfence.sample_interval=0 no_hash_pointers")
