"""Parser for /sys/kernel/debug/kfence/stats: upstream 5.12 to 6.x and Anolis.

Upstream prints ``label: value`` (five counters in 5.12-5.15, three
``skipped allocations (...)`` lines added in 5.16). Anolis pads labels
(``%-30s:%20lld`` in the devel-5.10 line, ``%-35s:`` in the newer one),
splits slab and page counters, and appends a ``node  object_size
pool_size`` table. Anolis slab/page counters are kept under their own keys
and summed into the canonical ones (model.STAT_KEYS).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ufence.errors import UfenceError
from ufence.model import PoolNode

_CANON = {
    "currently allocated": "currently_allocated",
    "total allocations": "total_allocations",
    "total frees": "total_frees",
    "zombie allocations": "zombie_allocations",
    "total bugs": "total_bugs",
    "skipped allocations (incompatible)": "skipped_incompatible",
    "skipped allocations (capacity)": "skipped_capacity",
    "skipped allocations (covered)": "skipped_covered",
}
# Anolis split counters -> the canonical counter they add to.
_SUMMED = {
    "currently slab allocated": "currently_allocated",
    "currently page allocated": "currently_allocated",
    "total slab allocations": "total_allocations",
    "total page allocations": "total_allocations",
    "total slab frees": "total_frees",
    "total page frees": "total_frees",
    "zombie slab allocations": "zombie_allocations",
}
_COUNTER = re.compile(r"^(?P<label>[^:]*?)\s*:\s*(?P<value>-?\d+)\s*$")
_NODE_HEAD = re.compile(r"^node\s+object_size\s+pool_size\s*$")
_NODE_ROW = re.compile(r"^\s*(\d+)\s+(\d+)\s+(\d+)\s*(B|KB|MB|GB)\s*$")
_UNIT = {"B": 1, "KB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30}


@dataclass
class ParsedStats:
    enabled: bool
    counters: dict[str, int] = field(default_factory=dict)
    nodes: list[PoolNode] = field(default_factory=list)
    anolis: bool = False  # slab/page split counters or node table seen
    labels: dict[str, str] = field(default_factory=dict)  # key -> label as printed


def _key(label: str) -> str:
    if label in _CANON:
        return _CANON[label]
    return re.sub(r"[^a-z0-9]+", "_", label.lower()).strip("_")


def parse_stats(text: str, name: str = "stats") -> ParsedStats:
    """Parse the whole stats file; UfenceError naming the line on bad input."""
    enabled: bool | None = None
    out = ParsedStats(enabled=False)
    in_table = False
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.rstrip()
        if not line.strip() or (line.startswith("#") and enabled is None):
            continue
        if _NODE_HEAD.match(line):
            in_table = out.anolis = True
            continue
        if in_table:
            m = _NODE_ROW.match(line)
            if not m:
                raise UfenceError(f"{name}:{n}: bad Anolis pool table row: {line.strip()[:60]!r}")
            out.nodes.append(PoolNode(node=int(m[1]), objects=int(m[2]), bytes=int(m[3]) * _UNIT[m[4]]))
            continue
        m = _COUNTER.match(line)
        if not m:
            raise UfenceError(f"{name}:{n}: not a KFENCE stats line: {line.strip()[:60]!r}")
        label, value = m["label"].strip(), int(m["value"])
        if label == "enabled":
            enabled = value != 0
            continue
        if enabled is None:
            raise UfenceError(f"{name}:{n}: expected 'enabled: N' first: not a KFENCE stats file")
        key = _key(label)
        out.counters[key] = value
        out.labels[key] = label
        if label in _SUMMED:
            out.anolis = True
            canon = _SUMMED[label]
            out.counters[canon] = out.counters.get(canon, 0) + value
    if enabled is None:
        raise UfenceError(f"{name}: no 'enabled:' line: empty or not a KFENCE stats file")
    out.enabled = enabled
    return out
