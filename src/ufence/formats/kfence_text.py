"""KFENCE's debugfs text formats (``stats``, ``objects``) for model objects.

Shared by the process and kernel backends so ``ufence stats PID`` and
``ufence stats kernel`` read alike, and so text rendered here parses with
the same regexes as the kernel's own files (kfence-kernel.md §1.2, §1.3).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from ufence.model import Frame, Object, ObjectState, Stats, Track

SEPARATOR = "-" * 33
POOL_WARN = 0.75  # KFENCE's skip_covered_thresh default: the pool is "nearly full"

# KFENCE's labels, in its order; the ones a source lacks are left out.
_LABELS = (
    ("currently_allocated", "currently allocated"),
    ("total_allocations", "total allocations"),
    ("total_frees", "total frees"),
    ("zombie_allocations", "zombie allocations"),
    ("total_bugs", "total bugs"),
    ("skipped_incompatible", "skipped allocations (incompatible)"),
    ("skipped_capacity", "skipped allocations (capacity)"),
    ("skipped_covered", "skipped allocations (covered)"),
    ("skipped_filtered", "skipped allocations (filtered)"),
    ("reports_deduplicated", "repeated bugs not reported (dedup_reports)"),
)


def human_bytes(n: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def render_stats(stats: Stats) -> str:
    """``enabled: 1`` / ``currently allocated: N`` ... then pool capacity and memory."""
    lines = [f"enabled: {int(stats.enabled)}"]
    lines += [f"{label}: {stats.counters[key]}" for key, label in _LABELS if key in stats.counters]
    if stats.mode:
        lines.append(f"mode: {stats.mode}")
    if stats.pool_objects is not None:
        ceiling = grows_to(stats)
        lines.append(f"pool capacity: {stats.pool_objects} objects"
                     + (f" (full mode doubles it while every slot is live, up to {ceiling})" if ceiling else ""))
    if stats.pool_bytes is not None:
        mem = f"pool memory: {stats.pool_bytes} bytes ({human_bytes(stats.pool_bytes)}) reserved"
        resident = stats.extra.get("pool_resident_bytes")
        if isinstance(resident, int):
            mem += f", {resident} bytes ({human_bytes(resident)}) resident"
        lines.append(mem)
    meta = stats.extra.get("metadata_bytes")
    if isinstance(meta, int):
        lines.append(f"metadata memory: {meta} bytes ({human_bytes(meta)}) resident (state file)")
    thread = stats.extra.get("control_thread")
    if isinstance(thread, bool) and stats.extra.get("alive", True):
        lines.append("control thread: " + ("running" if thread else
                                           "none (changes apply at the program's next allocation)"))
    if stats.nodes:
        lines += ["", "node\tobject_size\tpool_size"]
        lines += [f"{n.node:<8d}{n.objects:<16d}{human_bytes(n.bytes)}" for n in stats.nodes]
    if stats.extra.get("degraded"):
        lines.append(f"degraded: {', '.join(map(str, stats.extra['degraded']))}")
    return "\n".join(lines) + "\n"


def grows_to(stats: Stats) -> int | None:
    """The size a full-mode process pool may still grow to (None: it cannot grow)."""
    ceiling = stats.extra.get("max_objects")
    if stats.source != "process" or stats.mode != "full" or not isinstance(ceiling, int):
        return None
    return ceiling if stats.pool_objects is not None and ceiling > stats.pool_objects else None


def pool_warning(stats: Stats) -> str | None:
    """The seed's advice when the pool is >= 75% full, naming the setting to change.

    Not while full mode can still grow the pool: that pool is meant to run near full.
    """
    use = stats.pool_use()
    if use is None or use < POOL_WARN or grows_to(stats):
        return None
    cur = stats.counters.get("currently_allocated", 0)
    advice = stats.extra.get("pool_advice") or "raise num_objects"
    return (f"warning: pool {use:.0%} full ({cur} of {stats.pool_objects} objects): "
            f"new allocations go unguarded once it is full; {advice}")


def render_frame(f: Frame, kernel: bool = False) -> str:
    """`` func+0xoff/0xsize [module]``; `` module+0xoffset`` when the function is unknown."""
    mod = f.module.rsplit("/", 1)[-1] if f.module else None
    if f.function:
        s = f.function
        if f.function_offset is not None:
            s += f"+{f.function_offset:#x}"
            if f.function_size is not None:
                s += f"/{f.function_size:#x}"
        if mod and not (kernel and mod in ("vmlinux", "kernel")):
            s += f" [{mod}]"
        return " " + s
    if mod and f.offset is not None:
        return f" {mod}+{f.offset:#x}"
    return f" {f.pc:#x}" if f.pc is not None else " ?"


def _track_lines(t: Track | None, kind: str, kernel: bool) -> list[str]:
    who = f"task {t.tid}" if kernel and t else f"thread {t.tid}" if t else "thread ?"
    head = f"{t.kind if t else kind} by {who}"
    if kernel and t and t.cpu is not None:
        head += f" on cpu {t.cpu}"
    if t and t.timestamp is not None:
        head += f" at {t.timestamp:.6f}s"
        if t.age is not None:
            head += f" ({t.age:.6f}s ago)"
    lines = [head + ":"]
    if t and t.frames:
        lines += [render_frame(f, kernel) for f in t.frames]
    else:
        lines.append(f" no {'allocation' if kind == 'allocated' else 'deallocation'} stack")
    return lines


def _addr(v: int | None, kernel: bool) -> str:
    if v is None:
        return "0x(____ptrval____)"
    return f"0x{v:016x}" if kernel else f"{v:#x}"


def render_object(o: Object, prefix: str = "ufence") -> str:
    """One slot as KFENCE's ``kfence_print_object`` prints it (without the separator)."""
    kernel = prefix == "kfence"
    name = f"{prefix}-#{o.index}"
    if o.state is ObjectState.UNUSED:
        return f"{name} unused\n"
    node = f"node {o.node}:\n" if o.node is not None and kernel else ""
    lines = [f"{node}{name}: {_addr(o.start, kernel)}-{_addr(o.end, kernel)}, size={o.size}, "
             f"cache={o.cache or '<destroyed>'}", ""]
    lines += _track_lines(o.alloc, "allocated", kernel)
    if o.state in (ObjectState.FREED, ObjectState.RCU_FREEING):
        lines.append("")
        lines += _track_lines(o.free, "freed", kernel)
    return "\n".join(lines) + "\n"


def iter_objects(objects: Iterable[Object], prefix: str = "ufence") -> Iterator[str]:
    for o in objects:
        yield render_object(o, prefix) + SEPARATOR + "\n"


def render_objects(objects: Iterable[Object], prefix: str = "ufence") -> str:
    """The whole ``objects`` file: every object followed by the 33-dash separator."""
    return "".join(iter_objects(objects, prefix))
