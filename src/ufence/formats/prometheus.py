"""Prometheus text exposition (format 0.0.4) of stats and leak groups.

Meant for node_exporter's textfile collector: no timestamps (the collector
stamps scrapes itself), every metric with HELP and TYPE, label values
escaped (backslash, double quote, newline), and files written atomically
(temp file in the same directory + rename) so a scrape never sees half a file.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from ufence.analysis.growth import GrowthResult
from ufence.analysis.leaks import Group, LeakReport
from ufence.errors import UfenceError
from ufence.model import Stats

# Stats counters that only ever go up (Prometheus counters, ``_total``).
_COUNTERS = {
    "total_allocations", "total_frees", "total_bugs", "skipped_incompatible", "skipped_capacity",
    "skipped_covered", "skipped_filtered", "reports_written", "reports_suppressed", "depot_full",
    "settings_refused", "fork_children", "pages_recycled", "pages_revoked_batched", "reports_deduplicated",
    "modules_rebuilt",
    "total_slab_allocations",
    "seen_allocations",
}
_METRIC_OK = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")


def escape_label(v: str) -> str:
    return v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def escape_help(v: str) -> str:
    return v.replace("\\", "\\\\").replace("\n", "\\n")


def metric_name(stat: str) -> tuple[str, str]:
    """(name, type) for a stats counter: ``total_frees`` -> ``ufence_frees_total`` counter."""
    clean = "".join(c if c in _METRIC_OK else "_" for c in stat)
    if stat in _COUNTERS:
        base = clean[len("total_"):] if clean.startswith("total_") else clean
        return f"ufence_{base}_total", "counter"
    return f"ufence_{clean}", "gauge"


class _Out:
    def __init__(self, base: dict[str, str]) -> None:
        self.base = base
        self.lines: list[str] = []
        self.declared: set[str] = set()

    def metric(self, name: str, typ: str, help_: str, samples: Iterable[tuple[dict[str, str], float]]) -> None:
        if name not in self.declared:
            self.lines.append(f"# HELP {name} {escape_help(help_)}")
            self.lines.append(f"# TYPE {name} {typ}")
            self.declared.add(name)
        for labels, value in samples:
            all_labels = {**self.base, **labels}
            lab = ",".join(f'{k}="{escape_label(str(v))}"' for k, v in all_labels.items())
            self.lines.append(f"{name}{{{lab}}} {_num(value)}")


def _num(v: float) -> str:
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, int) or float(v).is_integer():
        return str(int(v))
    return repr(float(v))


def render(report: LeakReport, stats: Stats | None = None, top: int = 20) -> bytes:
    out = _Out({"target": report.target, "source": report.source})
    if stats is not None:
        for k, v in sorted(stats.counters.items()):
            if isinstance(v, int | float) and not isinstance(v, bool):
                name, typ = metric_name(k)
                out.metric(name, typ, f"ufence stats counter {k}", [({}, v)])
        if stats.pool_objects is not None:
            out.metric("ufence_pool_objects", "gauge", "pool capacity in objects", [({}, stats.pool_objects)])
        if stats.pool_bytes is not None:
            out.metric("ufence_pool_bytes", "gauge", "memory the pool reserves", [({}, stats.pool_bytes)])
    e = report.estimate
    out.metric("ufence_sampling_factor", "gauge",
               "allocations one guarded object stands for (1 = full mode); absent when no estimate is possible",
               [({"mode": e.mode, "estimate": e.kind}, e.factor)] if e.factor is not None else [])
    t = report.totals
    out.metric("ufence_leak_live_objects", "gauge", "guarded live objects older than min_age", [({}, t.count)])
    out.metric("ufence_leak_live_bytes", "gauge", "bytes of guarded live objects older than min_age", [({}, t.bytes)])
    groups = report.groups[:top]

    def lab(g: Group) -> dict[str, str]:
        d = {"site": g.name, "rank": str(g.rank_count)}
        if g.stack_id is not None:
            d["stack_id"] = str(g.stack_id)
        return d

    out.metric("ufence_leak_group_objects", "gauge", "guarded live objects of one allocation stack",
               [(lab(g), g.count) for g in groups])
    out.metric("ufence_leak_group_bytes", "gauge", "guarded live bytes of one allocation stack",
               [(lab(g), g.bytes) for g in groups])
    if e.factor is not None:
        out.metric("ufence_leak_group_estimated_objects", "gauge",
                   "live objects of one allocation stack, scaled to the whole program",
                   [(lab(g), g.est_count or 0) for g in groups])
        out.metric("ufence_leak_group_estimated_bytes", "gauge",
                   "live bytes of one allocation stack, scaled to the whole program",
                   [(lab(g), g.est_bytes or 0) for g in groups])
    out.metric("ufence_leak_group_age_max_seconds", "gauge", "age of the oldest live object of the stack",
               [(lab(g), g.age.max) for g in groups if g.age.max is not None])
    growth = report.growth
    if isinstance(growth, GrowthResult):
        gs = growth.growing[:top]
        out.metric("ufence_leak_growth_objects_per_second", "gauge",
                   "growth rate of guarded live objects of a growing stack",
                   [(lab(x.group), x.slope_count) for x in gs])
        out.metric("ufence_leak_growth_bytes_per_second", "gauge",
                   "growth rate of guarded live bytes of a growing stack",
                   [(lab(x.group), x.slope_bytes) for x in gs])
        out.metric("ufence_leak_growing_stacks", "gauge", "stacks judged to be leaking (growing)",
                   [({}, len(growth.growing))])
    return ("\n".join(out.lines) + "\n").encode()


def write_atomic(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temp file in the same directory and rename."""
    p = Path(path)
    d = p.parent if str(p.parent) else Path(".")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=d)
    except OSError as e:
        raise UfenceError(f"cannot write {p}: {e.strerror or e}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)  # the textfile collector runs as another user
        os.replace(tmp, p)
    except OSError as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise UfenceError(f"cannot write {p}: {e.strerror or e}") from None
