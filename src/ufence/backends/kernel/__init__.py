"""The kernel backend: the real KFENCE through sysfs, debugfs and the log.

``KernelBackend(root=None)`` drives this machine's KFENCE;
``KernelBackend(root=DIR)`` reads and writes a copied or collected tree
(DIR/sys/module/kfence/parameters, DIR/sys/kernel/debug/kfence,
DIR/sys/kernel/slab, DIR/dmesg.txt) the same way.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import re
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from ufence.backends.kernel import pool
from ufence.backends.kernel.dmesg import messages, read_kmsg
from ufence.backends.kernel.objects_parse import iter_objects
from ufence.backends.kernel.params import (
    PARAMS,
    canonical_read,
    check_interval_change,
    parse_switch,
    validate,
)
from ufence.backends.kernel.reports_parse import iter_reports
from ufence.backends.kernel.stats_parse import parse_stats
from ufence.backends.kernel.sysfs import KernelPaths, Variant, detect, not_built_message, read_text, write_text
from ufence.errors import UfenceError
from ufence.model import Object, Report, Snapshot, Stats

__all__ = ["KernelBackend"]

_INIT_LINE = re.compile(r"kfence: initialized - using (\d+) bytes for (\d+) objects(?! on node)")
NEARLY_FULL = 0.75  # the seed's advice threshold, and upstream's skip_covered default


class KernelBackend:
    name = "kernel"

    def __init__(self, root: str | None = None, dmesg_file: str | None = None) -> None:
        self.paths = KernelPaths.at(root)
        self.dmesg_file = dmesg_file
        self._variant: Variant | None = None
        self._pool_line: tuple[int, int] | tuple[()] | None = None

    # -- discovery ---------------------------------------------------------
    @property
    def variant(self) -> Variant:
        if self._variant is None:
            self._variant = detect(self.paths)
        return self._variant

    def require_built(self) -> Variant:
        v = self.variant
        if not v.built:
            raise UfenceError(not_built_message(self.paths))
        return v

    def params(self) -> dict[str, str]:
        """Every KFENCE module parameter present, canonical values."""
        v = self.require_built()
        out = {}
        for name in sorted(v.params):
            path = self.paths.params / name
            val = canonical_read(name, read_text(path, f"kfence.{name}"))
            p = PARAMS.get(name)
            if p and p.kind in ("int", "uint", "percent") and not re.fullmatch(r"-?\d+", val):
                raise UfenceError(f"{path}: expected a number, read {val[:40]!r} (a corrupt or partial copy?)")
            out[name] = val
        return out

    def interval(self) -> int:
        try:
            return int(self.params().get("sample_interval", "0"))
        except ValueError:
            raise UfenceError(f"{self.paths.params / 'sample_interval'}: not a number") from None

    def _switch_file(self, cache: str) -> tuple[Path, bool] | None:
        """(file, inverted?) of a cache's KFENCE switch, or None."""
        d = self.paths.slab / cache
        if (d / "kfence_enable").exists():
            return d / "kfence_enable", False
        if (d / "skip_kfence").exists():
            return d / "skip_kfence", True
        return None

    def caches(self) -> dict[str, str]:
        """``cache.<name>`` -> on|off for every slab cache with a switch."""
        out: dict[str, str] = {}
        try:
            entries = sorted(p.name for p in self.paths.slab.iterdir())
        except OSError:
            return out
        for name in entries:
            if name.startswith(":"):  # SLUB's merged-cache directory: its aliases (symlinks) are listed
                continue
            sw = self._switch_file(name)
            if sw is None:
                continue
            try:
                raw = sw[0].read_text().strip()
            except OSError:
                continue
            on = raw not in ("0", "N", "n")
            out[f"cache.{name}"] = ("off" if on else "on") if sw[1] else ("on" if on else "off")
        return out

    # -- Backend protocol ------------------------------------------------------
    def settings(self) -> dict[str, str]:
        return {**self.params(), **self.caches()}

    def set(self, changes: dict[str, str]) -> dict[str, str]:
        plan = self.plan_changes(changes)
        self.apply(plan)
        now = self.settings()
        return {key: now.get(key, "?") for key, _, _ in plan}

    def stats(self) -> Stats:
        v = self.require_built()
        text = read_text(self._debugfs_file("stats"), "KFENCE stats")
        parsed = parse_stats(text, str(self.paths.debugfs / "stats"))
        params = self.params()
        try:
            iv = int(params.get("sample_interval", "0"))
        except ValueError:
            iv = 0
        st = Stats(source="kernel", enabled=parsed.enabled, counters=parsed.counters, nodes=parsed.nodes)
        st.mode = "off" if not parsed.enabled or iv == 0 else ("full" if iv < 0 else "sample")
        page = os.sysconf("SC_PAGE_SIZE") if self.paths.live else pool.PAGE_SIZE
        if parsed.nodes:
            st.pool_objects = sum(n.objects for n in parsed.nodes)
            st.pool_bytes = sum(n.bytes for n in parsed.nodes)
            src = "Anolis node table"
        elif "num_objects" in params:
            plan = pool.anolis_plan(max(1, int(params["num_objects"])), page_size=page)
            st.pool_objects, st.pool_bytes, src = plan.objects, plan.bytes, "num_objects parameter"
        else:
            got = self._logged_pool()
            if got:
                st.pool_bytes, st.pool_objects = got
                src = "kernel log (kfence: initialized ...)"
            else:
                n, src = self._config_num_objects()
                st.pool_objects, st.pool_bytes = n, pool.pool_bytes(n, page)
        st.extra = {"sample_interval": iv, "variant": v.family(), "pool_objects_from": src,
                    "labels": parsed.labels}
        if "burst" in params:
            st.extra["burst"] = int(params["burst"])
        use = st.pool_use()
        if use is not None and use >= NEARLY_FULL:
            st.extra["pool_advice"] = self._pool_advice(st, v)
        return st

    def objects(self) -> Iterator[Object]:
        self.require_built()
        path = self._debugfs_file("objects")
        try:
            fp = path.open("rb")  # the parser decodes; faster than a text wrapper
        except PermissionError:
            raise UfenceError(f"cannot read {path}: permission denied (it is 0400: run as root)") from None
        except OSError as e:
            raise UfenceError(f"cannot read {path}: {e.strerror}") from None
        with fp:
            yield from iter_objects(fp, str(path))

    def reports(self) -> Iterator[Report]:
        if self.dmesg_file is not None:
            try:
                fp = open(self.dmesg_file, encoding="utf-8", errors="replace")  # noqa: SIM115 - closed below
            except OSError as e:
                raise UfenceError(f"cannot read {self.dmesg_file}: {e.strerror}") from None
            with fp:
                yield from iter_reports(messages(fp))
            return
        if not self.paths.live:
            f = self.paths.dmesg_file
            if not f.exists():
                raise UfenceError(f"no kernel log in {self.paths.root}: save it as {f} (dmesg > {f}) "
                                  "or pass --file LOG")
            with f.open(encoding="utf-8", errors="replace") as fp:
                yield from iter_reports(messages(fp))
            return
        yield from iter_reports(messages(read_kmsg()))

    def snapshot(self) -> Snapshot:
        st = self.stats()
        objs = list(self.objects())
        iv = st.extra.get("sample_interval")
        return Snapshot(
            source="kernel", target="kernel", taken_at=time.time(), objects=objs, stats=st,
            settings=self.settings(),
            sampling={"mode": st.mode, "interval_ms": iv, "pool_objects": st.pool_objects},
            meta={"release": self.paths.release(), "variant": self.variant.family(),
                  "root": None if self.paths.live else str(self.paths.root)},
        )

    # -- changes -----------------------------------------------------------
    def plan_changes(self, changes: dict[str, str]) -> list[tuple[str, Path, str]]:
        """Validate a batch; returns ordered (key, file, text) writes or raises why not."""
        v = self.require_built()
        if not changes:
            raise UfenceError("nothing to set: give KEY=VALUE")
        cur = self.params()
        first: list[tuple[str, Path, str]] = []
        mid: list[tuple[str, Path, str]] = []
        last: list[tuple[str, Path, str]] = []
        new_iv: int | None = None
        for key, value in changes.items():
            if key.startswith("cache."):
                mid.append(self._plan_cache(key, value))
                continue
            p = PARAMS.get(key)
            path = self.paths.params / key
            if p is None:
                if key in v.params:
                    raise UfenceError(f"{key}: ufence does not know this KFENCE parameter; write it directly "
                                      f"({path}) if you are sure")
                known = ", ".join([*PARAMS, "cache.<name>"])
                raise UfenceError(f"unknown kernel setting {key!r} (known: {known})")
            if key not in v.params:
                raise UfenceError(f"{key} is not available on this kernel ({v.family()}): it exists on {p.where}")
            if p.boot_only or not os.stat(path).st_mode & 0o222:
                raise UfenceError(f"{key} is read-only at run time (0444): it can only be set at boot, "
                                  f"with kfence.{key}={value} on the kernel command line")
            text = validate(key, value)
            if key == "sample_interval":
                new_iv = int(text)
                (first if new_iv == 0 else last).append((key, path, text))
            elif key in ("num_objects", "pool_mode"):
                mid.insert(0, (key, path, text))  # resize before any other change
            else:
                mid.append((key, path, text))
        cur_iv = int(cur.get("sample_interval", "0") or 0)
        iv_at_resize = 0 if new_iv == 0 else cur_iv
        for key, _, text in mid:
            if key in ("num_objects", "pool_mode") and iv_at_resize != 0:
                raise UfenceError(
                    f"{key} can only change while KFENCE is disabled (sample_interval is {cur_iv}): run "
                    f"'ufence kernel disable' first, or 'ufence kernel enable --full --objects N', which does "
                    "off, resize, on")
            if key == "num_objects" and int(text) == 0:
                raise UfenceError("num_objects must be at least 1 (the kernel rejects 0)")
        if new_iv is not None:
            n_obj = None
            if v.anolis:
                n_obj = int(changes.get("num_objects", cur.get("num_objects", "0")) or 0)
            check_interval_change(cur_iv, new_iv, v.anolis, n_obj)
        return first + mid + last

    def _plan_cache(self, key: str, value: str) -> tuple[str, Path, str]:
        name = key[len("cache."):]
        if not name or "/" in name or name in (".", ".."):
            raise UfenceError(f"{key}: not a slab cache name")
        on = parse_switch(key, value)
        if not (self.paths.slab / name).is_dir():
            raise UfenceError(f"no slab cache named {name!r} in {self.paths.slab} (see ls {self.paths.slab})")
        sw = self._switch_file(name)
        if sw is None:
            raise UfenceError(
                f"this kernel has no per-cache KFENCE switch for {name}: Anolis has "
                f"/sys/kernel/slab/<cache>/kfence_enable, upstream kernels since 2022 have "
                f"/sys/kernel/slab/<cache>/skip_kfence (SLUB only)")
        path, inverted = sw
        return key, path, ("0" if on else "1") if inverted else ("1" if on else "0")

    def apply(self, plan: list[tuple[str, Path, str]], dry_run: bool = False) -> list[str]:
        """Write the plan in order; on a refusal, undo what was written. Returns log lines."""
        log = [f"write {text} > {path}" for _, path, text in plan]
        if dry_run:
            return log
        if self.paths.live and os.geteuid() != 0:
            raise UfenceError("changing the kernel's KFENCE settings needs root: run the same command with sudo")
        done: list[tuple[str, Path, str]] = []
        try:
            for key, path, text in plan:
                old = path.read_text().strip() if path.exists() else None
                write_text(path, text, key)
                done.append((key, path, old or ""))
        except UfenceError:
            for key, path, old in reversed(done):
                with contextlib.suppress(UfenceError):  # best effort: the first error is the one to report
                    write_text(path, _raw_for_write(key, old), key)
            raise
        self._variant = None
        return log

    # -- helpers -----------------------------------------------------------
    def _debugfs_file(self, name: str) -> Path:
        path = self.paths.debugfs / name
        try:
            if path.exists():
                return path
            dbg_root_ok = self.paths.debugfs_root.is_dir() and any(self.paths.debugfs_root.iterdir())
        except PermissionError:
            raise UfenceError(f"cannot read {self.paths.debugfs_root}: permission denied "
                              "(debugfs needs root)") from None
        iv = self.interval()
        if iv == 0:
            raise UfenceError(
                "KFENCE is built in but off (kfence.sample_interval=0, the Debian/Ubuntu/Anolis default), so "
                f"{self.paths.debugfs} does not exist yet: enable it with 'ufence kernel enable' "
                "(or boot with kfence.sample_interval=100)")
        if not dbg_root_ok:
            raise UfenceError(f"debugfs is not mounted at {self.paths.debugfs_root}: "
                              f"mount -t debugfs none {self.paths.debugfs_root}")
        raise UfenceError(f"{path} is missing although sample_interval={iv}: KFENCE may have failed to "
                          "initialise (look for 'kfence:' in dmesg)")

    def _logged_pool(self) -> tuple[int, int] | None:
        """(bytes, objects) from the kernel's own ``kfence: initialized - using N bytes
        for M objects`` line: the pool it really has. Cached per backend."""
        if self._pool_line is None:
            self._pool_line = ()
            try:
                if self.dmesg_file is not None or not self.paths.live:
                    f = Path(self.dmesg_file) if self.dmesg_file else self.paths.dmesg_file
                    with f.open(encoding="utf-8", errors="replace") as fp:
                        lines: Iterable[str] = list(fp)
                else:
                    lines = read_kmsg()
            except (OSError, UfenceError):
                return None
            for _, msg in messages(lines):
                m = _INIT_LINE.search(msg)
                if m:
                    self._pool_line = (int(m[1]), int(m[2]))  # the last init wins (late re-init)
        return self._pool_line or None

    def _config_num_objects(self) -> tuple[int, str]:
        """CONFIG_KFENCE_NUM_OBJECTS from the kernel config, else the default 255."""
        rel = self.paths.release()
        cands = [self.paths.root / "proc/config.gz"]
        if rel:
            cands.append(self.paths.root / f"boot/config-{rel}")
        for c in cands:
            try:
                data = gzip.decompress(c.read_bytes()).decode() if c.suffix == ".gz" else c.read_text()
            except (OSError, EOFError, gzip.BadGzipFile, UnicodeDecodeError):
                continue
            m = re.search(r"^CONFIG_KFENCE_NUM_OBJECTS=(\d+)$", data, re.MULTILINE)
            if m:
                return int(m[1]), str(c)
        return pool.DEFAULT_NUM_OBJECTS, "CONFIG_KFENCE_NUM_OBJECTS default"

    @staticmethod
    def _pool_advice(st: Stats, v: Variant) -> str:
        """What to change when the pool is nearly full (the seed's advice, made concrete)."""
        if v.anolis:
            want = pool.anolis_plan(max((st.pool_objects or 1) * 2, pool.OBJECTS_PER_AREA), enlarge_at_runtime=True)
            return (f"raise num_objects (only while disabled), e.g. ufence kernel enable --full --objects "
                    f"{want.objects} ({want.describe()})")
        return ("upstream's pool is fixed at build time: rebuild with a larger CONFIG_KFENCE_NUM_OBJECTS "
                "(each object costs 2 pages)")


def _raw_for_write(key: str, old: str) -> str:
    """Value read back from sysfs -> text the kernel accepts again (bools print Y/N)."""
    if PARAMS.get(key) and PARAMS[key].kind == "bool":
        return "1" if old in ("Y", "y", "1") else "0"
    return old
