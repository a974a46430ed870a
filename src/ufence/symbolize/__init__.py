"""Symbolization: fill Frame.function/file/line/inlined from module + offset.

Public interface (used by the CLI, report rendering and formats):

    symbolize(frames: Iterable[Frame]) -> None

fills the frames in place, in one batch per module (llvm-symbolizer or
addr2line kept running, cached by (build id or path, offset)). Frames without
a module, or whose module is not on this machine (or has a different build
id), are left as they are. Never raises for missing tools or files.
"""

from __future__ import annotations

from collections.abc import Iterable

from ufence.model import Frame


def symbolize(frames: Iterable[Frame]) -> None:
    """Placeholder until the symbolizer lands: leaves frames unchanged."""
    del frames
