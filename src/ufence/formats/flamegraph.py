"""A self-contained SVG flame graph of live objects by allocation stack.

Classic layout (Brendan Gregg's): the root at the bottom, callees stacked
above, each rectangle as wide as the bytes (or objects) allocated under it,
siblings sorted by name so the picture is stable. Every rectangle carries a
``<title>`` (the browser's hover tooltip) with its full name, value and
share. No scripts, no external resources: it opens in any browser.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from xml.sax.saxutils import escape

from ufence.analysis.leak_values import names_root_first, stack_values, value_unit
from ufence.analysis.leaks import LeakReport

WIDTH = 1200
ROW = 17
PAD = 10
TOP = 50  # room for the title lines
CHAR_W = 6.2  # approx width of one 11px monospace character
MIN_W = 0.1  # rectangles narrower than this are not drawn (still counted in parents)


@dataclass
class Node:
    name: str
    value: int = 0
    count: int = 0
    nbytes: int = 0
    children: dict[str, Node] = field(default_factory=dict)


def build_tree(report: LeakReport, weight: str) -> Node:
    root = Node("all")
    for sv in stack_values(report):
        v = sv.bytes if weight == "bytes" else sv.count
        if v <= 0:
            continue
        node = root
        for name in names_root_first(sv.frames):
            node.value += v
            node.count += sv.count
            node.nbytes += sv.bytes
            node = node.children.setdefault(name, Node(name))
        node.value += v
        node.count += sv.count
        node.nbytes += sv.bytes
    return root


def _depth(n: Node) -> int:
    return 1 + max((_depth(c) for c in n.children.values()), default=0)


def _color(name: str) -> str:
    # stable warm colours from the name, as flamegraph.pl's "hot" palette
    h = zlib.crc32(name.encode())
    return f"rgb({205 + h % 50},{(h >> 8) % 230},{(h >> 16) % 55})"


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def render(report: LeakReport, weight: str = "bytes") -> bytes:
    root = build_tree(report, weight)
    depth = _depth(root)
    height = TOP + depth * ROW + PAD * 2
    scale = (WIDTH - 2 * PAD) / root.value if root.value else 0.0
    out: list[str] = []
    what = value_unit(report)
    title = f"ufence leaks {report.target}: live {'bytes' if weight == 'bytes' else 'objects'} by allocation stack"
    out.append('<?xml version="1.0" encoding="UTF-8" standalone="no"?>')
    out.append(f'<svg xmlns="http://www.w3.org/2000/svg" version="1.1" width="{WIDTH}" height="{height}" '
               f'viewBox="0 0 {WIDTH} {height}" font-family="monospace" font-size="11">')
    out.append(f"<title>{escape(title)}</title>")
    out.append(f'<rect x="0" y="0" width="{WIDTH}" height="{height}" fill="#f8f8f0"/>')
    out.append(f'<text x="{WIDTH / 2}" y="20" text-anchor="middle" font-size="15">{escape(title)}</text>')
    out.append(f'<text x="{WIDTH / 2}" y="38" text-anchor="middle" fill="#555">'
               f'{escape(what + ": " + report.estimate.describe())}</text>')
    if not root.value:
        out.append(f'<text x="{WIDTH / 2}" y="{TOP + 20}" text-anchor="middle">no live objects to show</text>')

    def draw(n: Node, x: float, level: int) -> None:
        w = n.value * scale
        if w < MIN_W:
            return
        y = height - PAD - (level + 1) * ROW
        share = 100.0 * n.value / root.value
        tip = f"{n.name} — {_fmt_bytes(n.nbytes)}, {n.count} objects ({share:.2f}%)"
        out.append(f'<g><title>{escape(tip)}</title>'
                   f'<rect x="{x:.2f}" y="{y}" width="{w:.2f}" height="{ROW - 1}" rx="2" '
                   f'fill="{_color(n.name)}"/>')
        chars = int((w - 6) / CHAR_W)
        if chars >= 3:
            label = n.name if len(n.name) <= chars else n.name[: chars - 2] + ".."
            out.append(f'<text x="{x + 3:.2f}" y="{y + ROW - 5}">{escape(label)}</text>')
        out.append("</g>")
        cx = x
        for c in sorted(n.children.values(), key=lambda c: c.name):
            draw(c, cx, level + 1)
            cx += c.value * scale

    if root.value:
        draw(root, PAD, 0)
    out.append("</svg>")
    return ("\n".join(out) + "\n").encode()
