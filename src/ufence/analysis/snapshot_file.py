"""Read a saved snapshot (``ufence snapshot PID -o FILE``): JSON, plain or gzipped.

The format is ``model.Snapshot.to_dict()``; gzip is recognised by its magic
bytes, not the file name, so a renamed file still loads.
"""

from __future__ import annotations

import gc
import json
from pathlib import Path

from ufence.errors import UfenceError
from ufence.fileio import gunzip_if_needed
from ufence.model import Snapshot


def load_snapshot(path: str | Path) -> Snapshot:
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise UfenceError(f"cannot read snapshot {p}: {e.strerror or e}") from None
    raw = gunzip_if_needed(raw, p)
    # millions of small dicts and no cycles: with the cyclic GC on, parsing a 200k-object
    # snapshot took four times as long (it rescans the growing heap)
    was = gc.isenabled()
    gc.disable()
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise UfenceError(f"{p}: not a ufence snapshot (not JSON: {e})") from None
    finally:
        if was:
            gc.enable()
    if not isinstance(data, dict) or not str(data.get("schema", "")).startswith("ufence.snapshot/"):
        raise UfenceError(f"{p}: not a ufence snapshot (no 'ufence.snapshot/N' schema field)")
    try:
        return Snapshot.from_dict(data)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise UfenceError(f"{p}: malformed snapshot: {type(e).__name__}: {e}") from None
