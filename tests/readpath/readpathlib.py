"""Helpers of the read-path tests."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Held:
    """A target holding ``n`` objects; ``pid`` is the program's own (ufence execs it)."""

    proc: subprocess.Popen[str]
    n: int
    run_dir: Path

    @property
    def pid(self) -> int:
        return self.proc.pid
