"""Install the workloads from Debian, build the engine and the C helpers."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from harness import proc
from harness.errors import BenchError

ROOT = Path(__file__).resolve().parents[2]  # the repository

# tool or file -> Debian package that provides it
PACKAGES = {
    "hackbench": "rt-tests",
    "sysbench": "sysbench",
    "mariadbd": "mariadb-server",
    "redis-server": "redis-server",
    "redis-benchmark": "redis-tools",
    "/usr/lib/libefence.so": "electric-fence",
    "/usr/lib/libduma.so": "duma",
    "valgrind": "valgrind",
    "cmake": "cmake",
    "gcc": "gcc",
    "taskset": "util-linux",
}
SCUDO_PACKAGES = ("libclang-rt-16-dev", "libclang-rt-19-dev", "libclang-rt-14-dev")


def _have(what: str) -> bool:
    return os.path.exists(what) if what.startswith("/") else bool(shutil.which(what) or
                                                                    os.path.exists(f"/usr/sbin/{what}"))


def _apt(pkgs: list[str]) -> bool:
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    cmd = ["apt-get", "install", "-y", "--no-install-recommends", *pkgs]
    if proc.run(cmd, env=env, timeout=900).rc == 0:
        return True
    proc.run(["apt-get", "update"], env=env, timeout=300)
    return proc.run(cmd, env=env, timeout=900).rc == 0


def install(log: bool = True) -> None:
    """apt-get install whatever is missing (root only); a peer that stays missing is skipped later."""
    from harness.configs import scudo_path

    missing = sorted({pkg for what, pkg in PACKAGES.items() if not _have(what)})
    if scudo_path() is None:
        missing.append(SCUDO_PACKAGES[0])
    if not missing:
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        print(f"bench: not root or no apt-get; missing: {' '.join(missing)}", file=sys.stderr)
        return
    if log:
        print(f"bench: apt-get install {' '.join(missing)}", file=sys.stderr)
    if not _apt(missing):
        # install one by one so one unknown name does not block the others
        for pkg in missing:
            if not _apt([pkg]) and pkg == SCUDO_PACKAGES[0]:
                for alt in SCUDO_PACKAGES[1:]:
                    if _apt([alt]):
                        break


def engine(build_dir: Path) -> tuple[str | None, str]:
    """UFENCE_ENGINE if set, else build the engine with cmake; (path or None, note)."""
    given = os.environ.get("UFENCE_ENGINE")
    if given:
        if not os.path.isfile(given):
            raise BenchError(f"UFENCE_ENGINE={given}: no such file")
        return given, f"UFENCE_ENGINE={given}"
    installed = _installed_engine()
    if installed:
        return installed, f"installed package engine {installed}"
    if not list((ROOT / "engine" / "src").glob("*.c")):
        return None, "engine/src is empty"
    cfg = proc.run(["cmake", "-S", str(ROOT), "-B", str(build_dir), "-DCMAKE_BUILD_TYPE=Release"], timeout=300)
    if cfg.rc != 0:
        return None, "cmake configure failed: " + cfg.stderr.strip()[-300:]
    b = proc.run(["cmake", "--build", str(build_dir)], timeout=600)
    lib = build_dir / "libufence.so"
    if b.rc != 0 or not lib.exists():
        return None, "engine build failed: " + (b.stdout + b.stderr).strip()[-300:]
    return str(lib), f"built from {git_head()} into {build_dir}"


def _installed_engine() -> str | None:
    """The engine of an installed ufence package (pip install .), if there is one."""
    try:
        from ufence.engine import library_path
        from ufence.errors import UfenceError
    except ImportError:
        return None
    try:
        path = library_path()
    except (UfenceError, OSError):
        return None
    return str(path) if path.is_file() else None


def helpers(out: Path) -> dict[str, str]:
    """Compile bench/micro/alloc.c and shmstats.c (C11, -Werror)."""
    out.mkdir(parents=True, exist_ok=True)
    micro = ROOT / "bench" / "micro"
    tools: dict[str, str] = {}
    flags = ["-std=c11", "-O2", "-g", "-fno-omit-frame-pointer", "-Wall", "-Wextra", "-Werror", "-pthread"]
    for name, extra in (("alloc", []), ("shmstats", [f"-I{ROOT / 'engine' / 'include'}"])):
        exe = out / name
        r = proc.run(["gcc", *flags, *extra, "-o", str(exe), str(micro / f"{name}.c")], timeout=120)
        if r.rc != 0:
            raise BenchError(f"compiling bench/micro/{name}.c failed: {r.stderr.strip()[-300:]}")
        tools[name] = str(exe)
    return tools


def git_head() -> str:
    try:
        return subprocess.run(["git", "-C", str(ROOT), "log", "-1", "--format=%h %cI", "--", "engine/"],
                              capture_output=True, text=True, timeout=10).stdout.strip() or "unknown"
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
