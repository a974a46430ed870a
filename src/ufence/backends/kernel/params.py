"""KFENCE module parameters: what each kernel has, valid values, and the
rules the kernel enforces, checked before writing so a refusal comes with
an explanation instead of an errno (kfence-kernel.md 2.1 and 3.1)."""

from __future__ import annotations

from dataclasses import dataclass

from ufence.backends.kernel.pool import OBJECTS_PER_AREA
from ufence.errors import UfenceError

_TRUE = {"1", "y", "yes", "on", "true"}
_FALSE = {"0", "n", "no", "off", "false"}


@dataclass(frozen=True)
class Param:
    name: str
    kind: str  # "int" | "uint" | "percent" | "bool" | "enum"
    where: str  # which kernels have it, for "absent" explanations
    anolis: bool = False
    boot_only: bool = False
    choices: tuple[str, ...] = ()
    help: str = ""


PARAMS: dict[str, Param] = {p.name: p for p in (
    Param("sample_interval", "int", "every KFENCE kernel (Linux 5.12+)",
          help="ms between sampled allocations; 0 = off; negative (Anolis) = full mode"),
    Param("skip_covered_thresh", "percent", "Linux 5.16+ and the newer Anolis line",
          help="pool use %% above which already-covered allocation stacks are skipped"),
    Param("burst", "uint", "Linux 6.12+", help="extra allocations sampled per interval"),
    Param("num_objects", "uint", "Anolis OS kernels only (upstream: CONFIG_KFENCE_NUM_OBJECTS at build time)",
          anolis=True, help="pool capacity in objects (>= 131071 rounds up to 1 GiB areas)"),
    Param("pool_mode", "enum", "Anolis OS kernels only", anolis=True, choices=("global", "node"),
          help="global: num_objects in total; node: num_objects per NUMA node"),
    Param("order0_page", "bool", "Anolis OS kernels only", anolis=True,
          help="also sample order-0 page allocations"),
    Param("fault", "enum", "Anolis OS kernels (upstream 2026+ has only the boot option kfence.fault=)",
          anolis=True, choices=("report", "oops", "panic"), help="what to do after a report"),
    Param("deferrable", "bool", "newer upstream kernels", boot_only=True, help="deferrable sampling timer"),
    Param("check_on_panic", "bool", "newer upstream kernels", boot_only=True,
          help="check canaries of live objects on panic"),
)}


def canonical_read(name: str, text: str) -> str:
    """Value as sysfs prints it -> ufence's canonical text (bools as 1/0)."""
    t = text.strip()
    p = PARAMS.get(name)
    if p and p.kind == "bool":
        if t.lower() in _TRUE:
            return "1"
        if t.lower() in _FALSE:
            return "0"
    return t


def validate(name: str, value: str) -> str:
    """Syntax and range check of a new value; returns the text to write."""
    p = PARAMS[name]
    t = value.strip()
    if p.kind in ("int", "uint", "percent"):
        try:
            v = int(t, 10)
        except ValueError:
            raise UfenceError(f"{name}: {value!r} is not a whole number") from None
        if p.kind == "uint" and not 0 <= v < 1 << 32:
            raise UfenceError(f"{name}: {v} is out of range [0, 4294967295]")
        if p.kind == "percent" and not 0 <= v <= 100:
            raise UfenceError(f"{name}: {v} is not a percentage of the pool (0-100)")
        if p.kind == "int" and not -(1 << 63) <= v < 1 << 63:
            raise UfenceError(f"{name}: {v} does not fit in a long")
        return str(v)
    if p.kind == "bool":
        if t.lower() in _TRUE:
            return "1"
        if t.lower() in _FALSE:
            return "0"
        raise UfenceError(f"{name}: {value!r} is not a boolean (use 1/0, on/off)")
    if t not in p.choices:
        raise UfenceError(f"{name}: {value!r} is not one of {', '.join(p.choices)}")
    return t


def parse_switch(key: str, value: str) -> bool:
    t = value.strip().lower()
    if t in _TRUE:
        return True
    if t in _FALSE:
        return False
    raise UfenceError(f"{key}: {value!r} is not on/off (use on, off, 1 or 0)")


def check_interval_change(cur: int, new: int, anolis: bool, num_objects: int | None) -> None:
    """The kernel's rules for sample_interval, as explanations."""
    if new >= 0:
        if anolis and cur < 0 < new:
            raise UfenceError(
                f"Anolis refuses to switch sample_interval directly from full mode ({cur}) to sampling ({new}): "
                "set it to 0 first (ufence set kernel sample_interval=0), then to the new interval")
        return
    if not anolis:
        raise UfenceError("a negative sample_interval (full mode) exists only on Anolis OS kernels; upstream "
                          "accepts 0 (off) or an interval in milliseconds")
    if cur > 0:
        raise UfenceError(
            f"Anolis refuses to switch sample_interval directly from sampling ({cur} ms) to full mode ({new}): "
            "it must go through 0 (ufence kernel enable --full does: off, resize, -1)")
    if num_objects is not None and num_objects < OBJECTS_PER_AREA:
        raise UfenceError(
            f"full mode (negative sample_interval) needs num_objects >= {OBJECTS_PER_AREA} (a 1 GiB pool area); "
            f"num_objects is {num_objects} (upstream mode): use ufence kernel enable --full --pool 1G")
