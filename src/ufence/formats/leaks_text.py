"""``ufence leaks`` text output: readable tables for a person at a terminal."""

from __future__ import annotations

from ufence.analysis.growth import GrowthResult
from ufence.analysis.leaks import Group, LeakReport
from ufence.analysis.naming import first_own_frame, frame_location
from ufence.model import Frame

FRAMES_SHOWN = 6


def _n(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:.0f}" if abs(v) >= 10 or float(v).is_integer() else f"{v:.1f}"


def _age(v: float | None) -> str:
    if v is None:
        return "?"
    if v < 60:
        return f"{v:.1f}s"
    if v < 3600:
        return f"{v / 60:.1f}m"
    return f"{v / 3600:.1f}h"


def _own_frames(frames: list[Frame]) -> list[Frame]:
    """Frames from the first non-allocator one down, so the table shows the program's code."""
    first = first_own_frame(frames)
    return frames[frames.index(first):] if first is not None else []


def _stack(g: Group, indent: str = "      ") -> list[str]:
    fr = _own_frames(g.frames)
    lines = [f"{indent}{frame_location(f)}" for f in fr[:FRAMES_SHOWN]]
    if len(fr) > FRAMES_SHOWN:
        lines.append(f"{indent}... {len(fr) - FRAMES_SHOWN} more")
    return lines


def _header(r: LeakReport) -> list[str]:
    e = r.estimate
    t = r.totals
    rate = (f"sample_rate={e.sample_rate}" if e.mode == "count" else
            f"sample_interval={e.sample_interval}" if e.sample_interval is not None else "unknown")
    out = [f"ufence leaks: {r.target} ({r.source}), live objects by allocation stack",
           f"sampling: {e.mode} ({rate}); {e.kind}: {e.describe()}"]
    est = "" if t.est_count is None or e.exact else f" (estimated {_n(t.est_count)} objects, {_n(t.est_bytes)} bytes)"
    out.append(f"{t.count} live objects, {t.bytes} bytes in {len(r.groups)} stacks{est}; "
               f"{t.hidden_young} younger than {r.min_age:g}s hidden"
               + (f"; {t.unknown_age} of unknown age kept" if t.unknown_age else ""))
    return out


def render(r: LeakReport, top: int = 20) -> bytes:
    out = _header(r)
    growth = r.growth
    if isinstance(growth, GrowthResult):
        out.append("")
        out.extend(_growth(r, growth, top))
        return ("\n".join(out) + "\n").encode()
    est = r.estimate.factor is not None and not r.estimate.exact
    out.append("")
    if not r.groups:
        out.append("no live objects older than min-age")
        return ("\n".join(out) + "\n").encode()
    cnt_h = "est.count" if est else "count"
    byt_h = "est.bytes" if est else "bytes"
    out.append(f"{'rank':>4} {cnt_h:>10} {byt_h:>12} {'guarded':>8} {'age p50':>8} {'age max':>8}  site")
    for g in r.groups[:top]:
        rk = g.rank_count if r.sort == "count" else g.rank_bytes
        c = g.est_count if est else g.count
        b = g.est_bytes if est else g.bytes
        out.append(f"{rk:>4} {_n(c):>10} {_n(b):>12} {g.count:>8} {_age(g.age.p50):>8} {_age(g.age.max):>8}  {g.name}")
        out.extend(_stack(g))
    if len(r.groups) > top:
        out.append(f"... {len(r.groups) - top} more stacks (--top N)")
    return ("\n".join(out) + "\n").encode()


def _growth(r: LeakReport, gr: GrowthResult, top: int) -> list[str]:
    span = gr.times[-1] if gr.times else 0.0
    head = (f"growth over {len(gr.times)} snapshots in {span:.1f}s (a stack is growing when its live count "
            f"rose in more than {gr.min_fraction:.0%} of the intervals and by at least {gr.min_growth})")
    if not gr.growing:
        return [head, "no growing stacks: live counts are steady (no leak seen)"]
    est = r.estimate.factor is not None and not r.estimate.exact
    out = [head, f"{'rank':>4} {'objects/s':>10} {'bytes/s':>12} {'rises':>6}  site  (guarded live counts)"]
    for i, x in enumerate(gr.growing[:top], 1):
        oc = x.est_slope_count if est else x.slope_count
        ob = x.est_slope_bytes if est else x.slope_bytes
        series = " ".join(str(c) for c in x.counts)
        out.append(f"{i:>4} {_n(oc):>10} {_n(ob):>12} {x.rises:>3}/{len(x.counts) - 1:<2}  {x.group.name}  ({series})")
        out.extend(_stack(x.group))
    return out
