"""The one data model shared by the process engine and the kernel backend.

Everything a backend produces (objects, tracks, stats, bug reports) is one of
these types, so leaks, formats and the CLI work the same on a pid and on
``kernel``. Every type converts to and from plain JSON-able dicts; the schema
is documented in ``docs/schema.md`` and versioned by ``SCHEMA_VERSION``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

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
        d = {k: v for k, v in asdict(self).items() if v not in (None, [])}
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


_FRAME_FIELDS = {
    "pc", "module", "offset", "build_id", "function", "function_offset",
    "function_size", "file", "line", "column",
}


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
        d: dict[str, Any] = {"kind": self.kind}
        for k in ("tid", "cpu", "timestamp", "age", "stack_id"):
            v = getattr(self, k)
            if v is not None:
                d[k] = v
        d["frames"] = [f.to_dict() for f in self.frames]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Track:
        return cls(
            kind=d["kind"], tid=d.get("tid"), cpu=d.get("cpu"),
            timestamp=d.get("timestamp"), age=d.get("age"),
            frames=[Frame.from_dict(f) for f in d.get("frames", [])],
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
        d: dict[str, Any] = {"index": self.index, "state": self.state.value}
        for k in ("start", "end"):
            v = getattr(self, k)
            if v is not None:
                d[k] = f"{v:#x}"
        for k in ("size", "cache", "node"):
            v = getattr(self, k)
            if v is not None:
                d[k] = v
        if self.hashed:
            d["hashed"] = True
        if self.flags:
            d["flags"] = list(self.flags)
        if self.alloc:
            d["alloc"] = self.alloc.to_dict()
        if self.free:
            d["free"] = self.free.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Object:
        def addr(v: Any) -> int | None:
            return int(v, 0) if isinstance(v, str) else v

        return cls(
            index=d["index"], state=ObjectState(d["state"]),
            start=addr(d.get("start")), end=addr(d.get("end")),
            size=d.get("size"), cache=d.get("cache"), node=d.get("node"),
            hashed=d.get("hashed", False), flags=list(d.get("flags", [])),
            alloc=Track.from_dict(d["alloc"]) if d.get("alloc") else None,
            free=Track.from_dict(d["free"]) if d.get("free") else None,
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
            "objects": [o.to_dict() for o in self.objects],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Snapshot:
        return cls(
            source=d["source"], target=d["target"], taken_at=d["taken_at"],
            objects=[Object.from_dict(o) for o in d["objects"]],
            stats=Stats.from_dict(d["stats"]) if d.get("stats") else None,
            settings=d.get("settings", {}), modules=d.get("modules", []),
            sampling=d.get("sampling", {}), meta=d.get("meta", {}),
        )
