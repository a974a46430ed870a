"""Where the built engine and its settings table are.

``pip install .`` puts ``libufence.so`` and ``settings.def`` in
``ufence/_engine/``. ``UFENCE_ENGINE`` overrides the library path (for
developing the engine in a build tree); from a source checkout the table is
also found at ``engine/settings.def``.
"""

from __future__ import annotations

import os
from pathlib import Path

from ufence.errors import UfenceError

_PKG = Path(__file__).resolve().parent
_ENGINE_DIR = _PKG / "_engine"


def library_path() -> Path:
    env = os.environ.get("UFENCE_ENGINE")
    if env:
        p = Path(env)
        if not p.is_file():
            raise UfenceError(f"UFENCE_ENGINE={env}: no such file")
        return p.resolve()
    p = _ENGINE_DIR / "libufence.so"
    if not p.is_file():
        raise UfenceError(f"engine library not found at {p}: reinstall ufence with 'pip install .'")
    return p


def settings_table_path() -> Path:
    for p in (_ENGINE_DIR / "settings.def", _PKG.parent.parent / "engine" / "settings.def"):
        if p.is_file():
            return p
    raise UfenceError("settings table settings.def not found: reinstall ufence")
