"""What the profile-shaped formats (pprof, folded, speedscope, flame graph) plot.

One place decides, so every format agrees with the text and JSON totals:

- values are the estimates when an estimate exists (full mode: exact
  counts; count sampling: guarded x N), else the guarded counts;
- with ``--watch`` only the growing stacks are plotted (leaks are judged by
  growth), their live objects in the last snapshot;
- stacks are expanded leaf-first with inlined callers after the frame they
  were inlined into.
"""

from __future__ import annotations

from dataclasses import dataclass

from ufence.analysis.leaks import Group, LeakReport
from ufence.analysis.naming import frame_label
from ufence.model import Frame


@dataclass
class StackValue:
    group: Group
    frames: list[Frame]  # leaf first, inlined expanded
    count: int
    bytes: int


def plotted_groups(report: LeakReport) -> list[Group]:
    growth = report.growth
    if growth is not None:
        return [g.group for g in growth.growing]
    return report.groups


def count_of(g: Group) -> int:
    return round(g.est_count) if g.est_count is not None else g.count


def bytes_of(g: Group) -> int:
    return round(g.est_bytes) if g.est_bytes is not None else g.bytes


def expand(frames: list[Frame]) -> list[Frame]:
    out: list[Frame] = []
    for f in frames:
        out.append(f)
        out.extend(f.inlined)
    return out


def stack_values(report: LeakReport) -> list[StackValue]:
    return [StackValue(g, expand(g.frames), count_of(g), bytes_of(g)) for g in plotted_groups(report)]


def names_root_first(frames: list[Frame]) -> list[str]:
    """Frame names root first (the order folded stacks and speedscope want)."""
    return [frame_label(f) for f in reversed(frames)] or ["(no stack)"]


def value_unit(report: LeakReport) -> str:
    """Words for titles: what the numbers are."""
    k = report.estimate.kind
    if k == "estimated":
        return f"estimated ({report.estimate.mode} sampling)"
    if k == "exact":
        return "exact"
    return "guarded objects only"
