"""Fixtures for the kernel backend tests (helpers live in kernellib.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from kernellib import build_tree


@pytest.fixture
def ktree(tmp_path: Path) -> Callable[..., Path]:
    """``ktree(variant, **kw)`` -> a fresh fake tree root (see build_tree)."""
    n = [0]

    def make(variant: str = "upstream-6.12", **kw: object) -> Path:
        n[0] += 1
        return build_tree(tmp_path / f"tree{n[0]}", variant, **kw)  # type: ignore[arg-type]

    return make
