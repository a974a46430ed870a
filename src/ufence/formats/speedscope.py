"""speedscope file format (https://www.speedscope.app/file-format-schema.json).

Two "sampled" profiles over one shared frame table: live bytes and live
object counts. Each leak stack is one sample (root-first frame indices)
whose weight is its bytes or its count, so the profile total equals the
leak totals that the text and JSON outputs print.
"""

from __future__ import annotations

import json
from typing import Any

from ufence import __version__
from ufence.analysis.leak_values import stack_values, value_unit
from ufence.analysis.leaks import LeakReport
from ufence.analysis.naming import frame_label
from ufence.model import Frame

SCHEMA_URL = "https://www.speedscope.app/file-format-schema.json"


def to_dict(report: LeakReport) -> dict[str, Any]:
    frames: list[dict[str, Any]] = []
    index: dict[tuple[str, str | None, int | None], int] = {}

    def frame_id(f: Frame) -> int:
        k = (frame_label(f), f.file, f.line)
        i = index.get(k)
        if i is None:
            i = index[k] = len(frames)
            d: dict[str, Any] = {"name": k[0]}
            if f.file:
                d["file"] = f.file
            if f.line:
                d["line"] = f.line
            frames.append(d)
        return i

    samples: list[list[int]] = []
    wb: list[int] = []
    wc: list[int] = []
    for sv in stack_values(report):
        samples.append([frame_id(f) for f in reversed(sv.frames)])
        wb.append(sv.bytes)
        wc.append(sv.count)
    what = value_unit(report)
    base = f"ufence leaks {report.target}"

    def profile(name: str, unit: str, weights: list[int]) -> dict[str, Any]:
        return {"type": "sampled", "name": name, "unit": unit, "startValue": 0, "endValue": sum(weights),
                "samples": samples, "weights": weights}

    return {
        "$schema": SCHEMA_URL,
        "name": f"{base}: live objects by allocation stack ({what})",
        "exporter": f"ufence {__version__}",
        "activeProfileIndex": 0,
        "shared": {"frames": frames},
        "profiles": [
            profile(f"{base}: live bytes ({what})", "bytes", wb),
            profile(f"{base}: live objects ({what})", "none", wc),
        ],
    }


def render(report: LeakReport) -> bytes:
    return (json.dumps(to_dict(report), separators=(",", ":")) + "\n").encode()
