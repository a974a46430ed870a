"""Where the kernel's KFENCE lives, on this machine or in a collected tree.

Every path is relative to ``root`` (``/`` live; ``--root DIR`` for a copied
tree: DIR/sys/module/kfence/parameters, DIR/sys/kernel/debug/kfence, ...).
Also detects the variant from which parameters exist.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from pathlib import Path

from ufence.errors import UfenceError

ANOLIS_PARAMS = ("num_objects", "pool_mode", "order0_page")


@dataclass
class KernelPaths:
    root: Path
    live: bool

    @classmethod
    def at(cls, root: str | None) -> KernelPaths:
        if root is None:
            return cls(Path("/"), True)
        p = Path(root)
        try:
            ok = p.is_dir() and os.access(p, os.R_OK | os.X_OK)
        except OSError as e:
            raise UfenceError(f"--root {root}: {e.strerror}") from None
        if not ok:
            raise UfenceError(f"--root {root}: not a directory" if not os.path.isdir(p)
                              else f"--root {root}: permission denied")
        return cls(p, False)

    def _p(self, rel: str) -> Path:
        return self.root / rel

    @property
    def params(self) -> Path:
        return self._p("sys/module/kfence/parameters")

    @property
    def debugfs_root(self) -> Path:
        return self._p("sys/kernel/debug")

    @property
    def debugfs(self) -> Path:
        return self._p("sys/kernel/debug/kfence")

    @property
    def slab(self) -> Path:
        return self._p("sys/kernel/slab")

    @property
    def dmesg_file(self) -> Path:
        return self._p("dmesg.txt")

    def show(self, path: Path) -> str:
        """Path as the user should see it in messages."""
        return str(path)

    def release(self) -> str | None:
        """Kernel release (uname -r) of the target, when known."""
        p = self._p("proc/sys/kernel/osrelease")
        try:
            return p.read_text().strip() or None
        except OSError:
            return os.uname().release if self.live else None


def read_text(path: Path, what: str) -> str:
    """Read a sysfs/debugfs file; permission problems become explanations."""
    try:
        with path.open(encoding="utf-8", errors="replace") as f:
            return f.read()
    except PermissionError:
        raise UfenceError(f"cannot read {path}: permission denied ({what} needs root: try sudo)") from None
    except IsADirectoryError:
        raise UfenceError(f"{path} is a directory, expected the {what} file") from None
    except OSError as e:
        raise UfenceError(f"cannot read {path}: {e.strerror}") from None


_EINVAL_HINTS = {
    "sample_interval": ("upstream refuses it after KFENCE disabled itself on an internal warning (see 'kfence:' "
                        "in dmesg); Anolis refuses sign switches without 0 in between and full mode below "
                        "131071 objects"),
    "num_objects": "Anolis accepts it only while KFENCE is disabled, and never 0",
    "pool_mode": "Anolis accepts global or node, only while KFENCE is disabled",
}


def write_text(path: Path, value: str, what: str) -> None:
    """Write one value the way ``echo VALUE > file`` does."""
    try:
        with path.open("w") as f:
            f.write(value + "\n")
    except PermissionError:
        raise UfenceError(f"cannot write {path}: permission denied (changing {what} needs root: try sudo)") from None
    except OSError as e:
        if e.errno == errno.EINVAL:
            hint = _EINVAL_HINTS.get(what)
            raise UfenceError(f"the kernel rejected {what}={value} (invalid argument)"
                              + (f": {hint}" if hint else "")) from None
        if e.errno == errno.EBUSY:
            raise UfenceError(f"the kernel refused {what}={value}: busy (disable KFENCE first: "
                              "ufence kernel disable)") from None
        raise UfenceError(f"cannot write {value} to {path}: {e.strerror}") from None


@dataclass
class Variant:
    """Which KFENCE this is, from the parameters present."""

    built: bool
    params: frozenset[str]

    @property
    def anolis(self) -> bool:
        return any(p in self.params for p in ANOLIS_PARAMS)

    def family(self) -> str:
        if not self.built:
            return "not built (CONFIG_KFENCE is not set)"
        if self.anolis:
            return "Anolis OS enhanced KFENCE"
        if "burst" in self.params:
            return "upstream Linux 6.12 or newer"
        if "skip_covered_thresh" in self.params:
            return "upstream Linux 5.16 to 6.11"
        return "upstream Linux 5.12 to 5.15"


def detect(paths: KernelPaths) -> Variant:
    d = paths.params
    try:
        names = frozenset(p.name for p in d.iterdir() if not p.name.startswith("."))
    except FileNotFoundError:
        return Variant(False, frozenset())
    except NotADirectoryError:
        raise UfenceError(f"{d} is not a directory") from None
    except PermissionError:
        raise UfenceError(f"cannot list {d}: permission denied") from None
    return Variant(True, names)


def not_built_message(paths: KernelPaths) -> str:
    if not paths.live and not paths._p("sys").is_dir():
        return f"{paths.root} has no sys/ directory: expected a copied tree with sys/module/kfence/parameters"
    return ("KFENCE is not built into this kernel (no /sys/module/kfence: CONFIG_KFENCE is not set); "
            "it needs a kernel built with CONFIG_KFENCE=y (Debian 6.12+, Fedora, RHEL, Ubuntu 5.15+ and Anolis "
            "have it)")
