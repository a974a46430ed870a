"""Backends: where objects, stats, settings and reports come from.

``open_target("1234")`` gives the process backend for pid 1234 (its engine's
shared-memory file); ``open_target("kernel")`` gives the kernel KFENCE
backend (sysfs, debugfs, dmesg), optionally rooted at a collected tree.
Every CLI command that takes a TARGET goes through this one function.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from ufence.errors import UsageError
from ufence.model import Object, Report, Snapshot, Stats


class Backend(Protocol):
    """What every target offers. Methods raise UfenceError on failure."""

    name: str  # "process" | "kernel"

    def settings(self) -> dict[str, str]:
        """Current settings, canonical text values, by setting name."""
        ...

    def set(self, changes: dict[str, str]) -> dict[str, str]:
        """Apply all changes or none; return the new values. Refusal -> UfenceError saying why."""
        ...

    def stats(self) -> Stats: ...

    def objects(self) -> Iterator[Object]:
        """Every slot (unused ones too), streamed."""
        ...

    def reports(self) -> Iterator[Report]: ...

    def snapshot(self) -> Snapshot: ...


def open_target(target: str, root: str | None = None) -> Backend:
    """Resolve a CLI TARGET: a pid, ``self``-less; or ``kernel``."""
    if target == "kernel":
        from ufence.backends.kernel import KernelBackend

        return KernelBackend(root=root)
    if root is not None:
        raise UsageError("--root applies only to the target 'kernel'")
    try:
        pid = int(target)
    except ValueError:
        raise UsageError(f"target must be a pid or 'kernel', not {target!r}") from None
    if pid <= 0:
        raise UsageError(f"target must be a positive pid, not {target!r}")
    from ufence.backends.process import ProcessBackend

    return ProcessBackend(pid)
