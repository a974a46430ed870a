"""``ufence leaks --format json``: the stable schema of docs/schema-leaks.md.

Keys are only ever added within a schema version; numbers are plain JSON
numbers (addresses as hex strings, as in model.py); absent values are null
rather than missing, so consumers can rely on every documented key.
"""

from __future__ import annotations

import json
from typing import Any

from ufence.analysis.growth import GrowthResult
from ufence.analysis.leaks import AGE_BUCKET_LABELS, AGE_BUCKETS, Group, LeakReport

SCHEMA = "ufence.leaks/1"


def _group(g: Group) -> dict[str, Any]:
    return {
        "rank_count": g.rank_count,
        "rank_bytes": g.rank_bytes,
        "name": g.name,
        "stack_id": g.stack_id,
        "count": g.count,
        "bytes": g.bytes,
        "est_count": g.est_count,
        "est_bytes": g.est_bytes,
        "age": {
            "known": g.age.known,
            "min": g.age.min,
            "p50": g.age.p50,
            "max": g.age.max,
            "histogram": [
                {"le": None if b == float("inf") else b, "label": lab, "count": c}
                for b, lab, c in zip(AGE_BUCKETS, AGE_BUCKET_LABELS, g.age.histogram, strict=True)
            ],
        },
        "frames": [f.to_dict() for f in g.frames],
    }


def _growth(gr: GrowthResult) -> dict[str, Any]:
    return {
        "interval": gr.interval,
        "times": gr.times,
        "min_growth": gr.min_growth,
        "min_fraction": gr.min_fraction,
        "growing": [
            {
                "name": x.group.name,
                "stack_id": x.group.stack_id,
                "counts": x.counts,
                "bytes": x.bytes,
                "rises": x.rises,
                "slope_count": x.slope_count,
                "slope_bytes": x.slope_bytes,
                "est_slope_count": x.est_slope_count,
                "est_slope_bytes": x.est_slope_bytes,
                "frames": [f.to_dict() for f in x.group.frames],
            }
            for x in gr.growing
        ],
    }


def to_dict(report: LeakReport) -> dict[str, Any]:
    e = report.estimate
    t = report.totals
    growth = report.growth
    return {
        "schema": SCHEMA,
        "target": report.target,
        "source": report.source,
        "taken_at": report.taken_at,
        "min_age": report.min_age,
        "sort": report.sort,
        "sampling": {
            "mode": e.mode,
            "sample_rate": e.sample_rate,
            "sample_interval": e.sample_interval,
            "estimate": e.kind,
            "factor": e.factor,
            "note": e.note,
            "caveats": list(e.caveats),
        },
        "totals": {
            "live": t.live,
            "count": t.count,
            "bytes": t.bytes,
            "hidden_young": t.hidden_young,
            "unknown_age": t.unknown_age,
            "est_count": t.est_count,
            "est_bytes": t.est_bytes,
        },
        "groups": [_group(g) for g in report.groups],
        "growth": _growth(growth) if isinstance(growth, GrowthResult) else None,
        "meta": report.meta,
    }


def render(report: LeakReport) -> bytes:
    return (json.dumps(to_dict(report), indent=1, default=str) + "\n").encode()
