"""Reading files ufence saved, plain or gzipped, with one-line errors."""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

from ufence.errors import UfenceError


def gunzip_if_needed(raw: bytes, path: Path) -> bytes:
    """``raw`` itself, or its gzip content when it starts with the gzip magic."""
    if raw[:2] != b"\x1f\x8b":
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error):
        raise UfenceError(f"{path}: corrupt or truncated gzip data") from None
