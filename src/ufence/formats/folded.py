"""Folded stacks (``root;caller;...;leaf VALUE``), one line per stack, for flamegraph.pl.

flamegraph.pl splits each line at its last space, so names may contain
spaces but not ``;`` (the separator) or newlines: those are replaced.
"""

from __future__ import annotations

from ufence.analysis.leak_values import names_root_first, stack_values
from ufence.analysis.leaks import LeakReport


def clean(name: str) -> str:
    return name.replace(";", ":").replace("\n", " ").replace("\r", " ")


def lines(report: LeakReport, weight: str = "count") -> list[str]:
    out = []
    for sv in stack_values(report):
        v = sv.bytes if weight == "bytes" else sv.count
        if v <= 0:
            continue
        out.append(";".join(clean(n) for n in names_root_first(sv.frames)) + f" {v}")
    return out


def render(report: LeakReport, weight: str = "count") -> bytes:
    return "".join(s + "\n" for s in lines(report, weight)).encode()
