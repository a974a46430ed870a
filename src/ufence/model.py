"""The one data model shared by the process engine and the kernel backend.

Everything a backend produces (objects, tracks, stats, bug reports) is one of
these types, so leaks, formats and the CLI work the same on a pid and on
``kernel``. Every type converts to and from plain JSON-able dicts; the schema
is documented in ``docs/schema.md`` and versioned by ``SCHEMA_VERSION``.
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any, TypeVar

SCHEMA_VERSION = 1


class ObjectState(StrEnum):
    UNUSED = "unused"
    ALLOCATED = "allocated"
    FREED = "freed"
    RCU_FREEING = "rcu freeing"


class BugType(StrEnum):
    OUT_OF_BOUNDS = "out-of-bounds"
    USE_AFTER_FREE = "use-after-free"
    MEMORY_CORRUPTION = "memory corruption"
    INVALID_ACCESS = "invalid"
    INVALID_FREE = "invalid free"
    DOUBLE_FREE = "double free"  # kernel prints these as "invalid free"


@dataclass
class Frame:
    """One stack frame. ``pc`` is raw (a return address for non-leaf frames).

    ``module``/``offset``/``build_id`` let any machine symbolize it later;
    ``function``.. are filled by a symbolizer or parsed from kernel text
    (``func+0xoff/0xsize [module]``).
    """

    pc: int | None = None
    module: str | None = None
    offset: int | None = None
    build_id: str | None = None
    function: str | None = None
    function_offset: int | None = None
    function_size: int | None = None
    file: str | None = None
    line: int | None = None
    column: int | None = None
    inlined: list[Frame] = field(default_factory=list)  # callers inlined into this pc, innermost first

    def key(self) -> str:
        """Identity for grouping: function name if known, else module+offset, else pc."""
        if self.function:
            return self.function if not self.module else f"{self.function} [{_base(self.module)}]"
        if self.module is not None and self.offset is not None:
            return f"{_base(self.module)}+{self.offset:#x}"
        return f"{self.pc:#x}" if self.pc is not None else "?"

    def to_dict(self) -> dict[str, Any]:
        # field by field rather than dataclasses.asdict (a deep copy, tens of microseconds a frame)
        d = {k: v for k in _FRAME_ORDER if (v := getattr(self, k)) is not None and v != []}
        if self.inlined:
            d["inlined"] = [f.to_dict() for f in self.inlined]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Frame:
        d = dict(d)
        inl = [cls.from_dict(x) for x in d.pop("inlined", [])]
        for k in ("pc", "offset", "function_offset", "function_size"):
            if isinstance(d.get(k), str):
                d[k] = int(d[k], 0)
        return cls(**{k: v for k, v in d.items() if k in _FRAME_FIELDS}, inlined=inl)


_FRAME_ORDER = ("pc", "module", "offset", "build_id", "function", "function_offset", "function_size", "file", "line",
                "column")  # Frame's fields but inlined, in declaration order (the order of to_dict's keys)
_FRAME_FIELDS = set(_FRAME_ORDER)


class _FrameReader:
    """Frames of one document being read (``Snapshot.from_dict``), shared between tracks.

    A snapshot repeats the same stack for every object allocated there (JSON has no
    references). The first track of a stack builds its Frames; a later track whose frame
    dicts are equal to that one's gets the same list, and a frame equal to one already
    built (the same pc in another stack) the same Frame. That is what the live reader
    builds too, and a comparison of equal dicts costs far less than making the Frames.
    Consumers read frames without changing them; the symbolizer fills them in place,
    once per distinct frame.
    """

    def __init__(self) -> None:
        self.stacks: dict[tuple[Any, ...], list[tuple[list[Any], list[Frame]]]] = {}
        self.frames: dict[tuple[Any, ...], Frame] = {}

    def frame_list(self, ds: Any, stack_id: Any) -> list[Frame]:
        if type(ds) is not list or not ds or type(ds[0]) is not dict:
            return [Frame.from_dict(f) for f in ds]  # empty, or not a file ufence wrote: as the model reads it
        pc = ds[0].get("pc")
        key = (stack_id if type(stack_id) is int else None, len(ds), pc if type(pc) is str else None)
        seen = self.stacks.setdefault(key, [])
        for known, frames in seen:
            if known == ds:
                return frames
        frames = [self._frame(f) for f in ds]
        if len(seen) < 16:  # stacks that only look alike (no depot ids: kernel) stay cheap
            seen.append((ds, frames))
        return frames

    def _frame(self, d: Any) -> Frame:
        try:
            key = _dict_key(d)
            hit = self.frames.get(key)
        except (TypeError, AttributeError):  # an unhashable value: not shared
            return Frame.from_dict(d)
        if hit is None:
            hit = self.frames[key] = Frame.from_dict(d)
        return hit


def _dict_key(d: dict[str, Any]) -> tuple[Any, ...]:
    """A hashable key equal for equal frame dicts (in the same key order, as one writer writes them)."""
    inl = d.get("inlined")
    if inl is None:
        return tuple(d.items())
    return (*((k, v) for k, v in d.items() if k != "inlined"), ("inlined", *map(_dict_key, inl)))


def _base(path: str) -> str:
    return path.rsplit("/", 1)[-1]


@dataclass
class Track:
    """Who allocated or freed an object, and when.

    ``timestamp`` is seconds since the source's epoch (process start for the
    engine, boot for the kernel, as KFENCE prints it); ``age`` is seconds
    before the moment the data was read, when known.
    """

    kind: str  # "allocated" | "freed" | "rcu freeing"
    tid: int | None = None
    cpu: int | None = None
    timestamp: float | None = None
    age: float | None = None
    frames: list[Frame] = field(default_factory=list)
    stack_id: int | None = None  # depot id (process) or None

    def to_dict(self) -> dict[str, Any]:
        return _track_dict(self, None)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Track:
        return _track_from(d, None)


def _track_dict(t: Track, memo: dict[int, list[dict[str, Any]]] | None) -> dict[str, Any]:
    """Track.to_dict; with ``memo`` (id of a frames list -> its dicts, while the lists are alive)
    a list shared by many tracks is converted once and its dicts shared in the result."""
    d: dict[str, Any] = {"kind": t.kind}
    for k in ("tid", "cpu", "timestamp", "age", "stack_id"):
        v = getattr(t, k)
        if v is not None:
            d[k] = v
    if memo is None:
        d["frames"] = [f.to_dict() for f in t.frames]
    else:
        got = memo.get(id(t.frames))
        if got is None:
            got = memo[id(t.frames)] = [f.to_dict() for f in t.frames]
        d["frames"] = got
    return d


def _track_from(d: dict[str, Any], frames: _FrameReader | None) -> Track:
    ds = d.get("frames", [])
    return Track(
        kind=d["kind"], tid=d.get("tid"), cpu=d.get("cpu"),
        timestamp=d.get("timestamp"), age=d.get("age"),
        frames=[Frame.from_dict(f) for f in ds] if frames is None else frames.frame_list(ds, d.get("stack_id")),
        stack_id=d.get("stack_id"),
    )


@dataclass
class Object:
    """One pool slot: ``ufence-#N`` (process) or ``kfence-#N`` (kernel).

    ``start``/``end`` are inclusive as KFENCE prints them; ``None`` when the
    kernel hid them (``(____ptrval____)``). ``hashed`` says the kernel printed
    hashed pointers, which are stable ids but not addresses.
    """

    index: int
    state: ObjectState
    start: int | None = None
    end: int | None = None
    size: int | None = None
    cache: str | None = None
    node: int | None = None
    hashed: bool = False
    alloc: Track | None = None
    free: Track | None = None
    flags: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return _object_dict(self, None)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Object:
        return _object_from(d, None)


def _object_dict(o: Object, memo: dict[int, list[dict[str, Any]]] | None) -> dict[str, Any]:
    d: dict[str, Any] = {"index": o.index, "state": o.state.value}
    if o.start is not None:
        d["start"] = f"{o.start:#x}"
    if o.end is not None:
        d["end"] = f"{o.end:#x}"
    if o.size is not None:
        d["size"] = o.size
    if o.cache is not None:
        d["cache"] = o.cache
    if o.node is not None:
        d["node"] = o.node
    if o.hashed:
        d["hashed"] = True
    if o.flags:
        d["flags"] = list(o.flags)
    if o.alloc:
        d["alloc"] = _track_dict(o.alloc, memo)
    if o.free:
        d["free"] = _track_dict(o.free, memo)
    return d


_STATE_OF = {s.value: s for s in ObjectState}


def _addr(v: Any) -> int | None:
    return int(v, 0) if isinstance(v, str) else v


def _object_from(d: dict[str, Any], frames: _FrameReader | None) -> Object:
    st = d["state"]
    state = _STATE_OF.get(st) if type(st) is str else None
    alloc, free = d.get("alloc"), d.get("free")
    return Object(
        index=d["index"], state=ObjectState(st) if state is None else state,
        start=_addr(d.get("start")), end=_addr(d.get("end")),
        size=d.get("size"), cache=d.get("cache"), node=d.get("node"),
        hashed=d.get("hashed", False), flags=list(d.get("flags", [])),
        alloc=_track_from(alloc, frames) if alloc else None,
        free=_track_from(free, frames) if free else None,
    )


# Canonical counter names shared by both backends. Kernel labels map onto
# these (``currently allocated`` -> currently_allocated, Anolis ``total slab
# allocations`` -> total_slab_allocations and also summed into
# total_allocations). Backends may add their own keys.
STAT_KEYS = (
    "currently_allocated",
    "total_allocations",
    "total_frees",
    "zombie_allocations",
    "total_bugs",
    "skipped_incompatible",
    "skipped_capacity",
    "skipped_covered",
    "skipped_filtered",
)


@dataclass
class PoolNode:
    node: int
    objects: int
    bytes: int


@dataclass
class Stats:
    """KFENCE-style statistics plus the pool's capacity and cost."""

    source: str  # "process" | "kernel"
    enabled: bool
    counters: dict[str, int] = field(default_factory=dict)
    mode: str | None = None  # "off" | "sample" | "full"
    pool_objects: int | None = None  # capacity in objects
    pool_bytes: int | None = None  # memory the pool costs (reserved)
    nodes: list[PoolNode] = field(default_factory=list)  # Anolis node table
    extra: dict[str, Any] = field(default_factory=dict)

    def pool_use(self) -> float | None:
        """Fraction of the pool in use (currently allocated / capacity)."""
        cur = self.counters.get("currently_allocated")
        if not self.pool_objects or cur is None:
            return None
        return cur / self.pool_objects

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Stats:
        d = dict(d)
        d["nodes"] = [PoolNode(**n) for n in d.get("nodes", [])]
        return cls(**d)


@dataclass
class CorruptionByte:
    """One byte of a canary dump: ``value`` None means it matched (``.``);
    ``hidden`` means the kernel printed ``!`` instead of the value."""

    value: int | None
    hidden: bool = False


@dataclass
class Report:
    """One bug report, from the engine's JSON or parsed from dmesg."""

    source: str  # "process" | "kernel"
    bug: BugType
    access: str | None  # "read" | "write" | None
    function: str | None  # where, as in the title ("in <func>")
    address: int | None = None
    hashed: bool = False
    object: Object | None = None
    distance: int | None = None  # OOB: bytes, as KFENCE computes them
    side: str | None = None  # "left" | "right"
    corruption: list[CorruptionByte] = field(default_factory=list)
    stack: list[Frame] = field(default_factory=list)  # access / free-call stack
    pid: int | None = None
    tid: int | None = None
    comm: str | None = None
    exe: str | None = None
    cpu: int | None = None
    timestamp: float | None = None  # seconds (kernel: since boot; process: unix time)
    kernel: str | None = None  # kernel release / taint line, when known
    raw: str | None = None  # the report text as printed
    extra: dict[str, Any] = field(default_factory=dict)

    def title(self, tool: str = "UFENCE") -> str:
        what = self.bug.value
        if self.bug is BugType.DOUBLE_FREE and tool == "KFENCE":
            what = "invalid free"
        if self.access and self.bug in (BugType.OUT_OF_BOUNDS, BugType.USE_AFTER_FREE, BugType.INVALID_ACCESS):
            what = f"{what} {self.access}"
        return f"BUG: {tool}: {what} in {self.function or '?'}"

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "schema": f"ufence.report/{SCHEMA_VERSION}",
            "source": self.source,
            "bug": self.bug.value,
            "access": self.access,
            "function": self.function,
        }
        if self.address is not None:
            d["address"] = f"{self.address:#x}"
        for k in ("hashed", "distance", "side", "pid", "tid", "comm", "exe", "cpu", "timestamp", "kernel", "raw"):
            v = getattr(self, k)
            if v not in (None, False):
                d[k] = v
        if self.object:
            d["object"] = self.object.to_dict()
        if self.corruption:
            d["corruption"] = [
                {"value": b.value, "hidden": b.hidden} if b.hidden or b.value is not None else {"value": None}
                for b in self.corruption
            ]
        d["stack"] = [f.to_dict() for f in self.stack]
        if self.extra:
            d["extra"] = self.extra
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Report:
        addr = d.get("address")
        return cls(
            source=d["source"], bug=BugType(d["bug"]), access=d.get("access"),
            function=d.get("function"),
            address=int(addr, 0) if isinstance(addr, str) else addr,
            hashed=d.get("hashed", False),
            object=Object.from_dict(d["object"]) if d.get("object") else None,
            distance=d.get("distance"), side=d.get("side"),
            corruption=[CorruptionByte(b.get("value"), b.get("hidden", False)) for b in d.get("corruption", [])],
            stack=[Frame.from_dict(f) for f in d.get("stack", [])],
            pid=d.get("pid"), tid=d.get("tid"), comm=d.get("comm"), exe=d.get("exe"),
            cpu=d.get("cpu"), timestamp=d.get("timestamp"), kernel=d.get("kernel"),
            raw=d.get("raw"), extra=d.get("extra", {}),
        )


@dataclass
class Snapshot:
    """Everything needed to analyse a target later, on another machine."""

    source: str
    target: str  # pid as text, or "kernel"
    taken_at: float  # unix time
    objects: list[Object]
    stats: Stats | None = None
    settings: dict[str, str] = field(default_factory=dict)
    modules: list[dict[str, Any]] = field(default_factory=list)  # path, start, end, base, build_id
    sampling: dict[str, Any] = field(default_factory=dict)  # mode, interval/rate: for estimates
    meta: dict[str, Any] = field(default_factory=dict)  # pid, comm, exe, kernel release...

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": f"ufence.snapshot/{SCHEMA_VERSION}",
            "source": self.source,
            "target": self.target,
            "taken_at": self.taken_at,
            "stats": self.stats.to_dict() if self.stats else None,
            "settings": self.settings,
            "modules": self.modules,
            "sampling": self.sampling,
            "meta": self.meta,
            "objects": self._object_dicts(),
        }

    def _object_dicts(self) -> list[dict[str, Any]]:
        # tracks sharing a frames list (one stack, many objects) share its dicts in the result
        memo: dict[int, list[dict[str, Any]]] = {}
        return _bulk(lambda: [_object_dict(o, memo) for o in self.objects])

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Snapshot:
        frames = _FrameReader()
        return cls(
            source=d["source"], target=d["target"], taken_at=d["taken_at"],
            objects=_bulk(lambda: [_object_from(o, frames) for o in d["objects"]]),
            stats=Stats.from_dict(d["stats"]) if d.get("stats") else None,
            settings=d.get("settings", {}), modules=d.get("modules", []),
            sampling=d.get("sampling", {}), meta=d.get("meta", {}),
        )


_T = TypeVar("_T")


def _bulk(make: Callable[[], _T]) -> _T:
    """``make()`` with the cyclic GC off: building hundreds of thousands of objects without
    cycles, it would only rescan the growing heap again and again."""
    was = gc.isenabled()
    gc.disable()
    try:
        return make()
    finally:
        if was:
            gc.enable()
