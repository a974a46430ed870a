"""The run directory that holds one ``<pid>.shm`` file per engine process.

Same rules as the engine (docs/design.md): ``UFENCE_RUN_DIR`` or
``/dev/shm/ufence-<uid>``; used only if it is a real directory (not a
symlink) owned by the expected user with no group/other access, so nobody
else can plant, swap or read the files in it.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from ufence.errors import UfenceError


def default_dir(uid: int | None = None) -> Path:
    env = os.environ.get("UFENCE_RUN_DIR")
    if env:
        return Path(env)
    return Path(f"/dev/shm/ufence-{os.geteuid() if uid is None else uid}")


def check_dir(path: Path, uid: int | None = None) -> Path:
    """Return ``path`` if it is safe to use; UfenceError saying why not."""
    want = os.geteuid() if uid is None else uid
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        raise UfenceError(f"run directory {path} does not exist: no ufence process has run as this user") from None
    except OSError as e:
        raise UfenceError(f"run directory {path}: {e.strerror}") from None
    if stat.S_ISLNK(st.st_mode):
        raise UfenceError(f"run directory {path} is a symlink: refusing it (remove it or set UFENCE_RUN_DIR)")
    if not stat.S_ISDIR(st.st_mode):
        raise UfenceError(f"run directory {path} is not a directory")
    if st.st_uid != want:
        raise UfenceError(f"run directory {path} is owned by uid {st.st_uid}, not {want}: refusing it")
    if st.st_mode & 0o077:
        raise UfenceError(f"run directory {path} is accessible by group/others (mode {st.st_mode & 0o777:04o}): "
                          f"refusing it (chmod 700 {path})")
    return path


def check_file(fd: int, path: Path, uid: int) -> os.stat_result:
    """Checks on an opened state file: regular, owned by ``uid``, owner-only."""
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        raise UfenceError(f"{path} is not a regular file: refusing it")
    if st.st_uid != uid:
        raise UfenceError(f"{path} is owned by uid {st.st_uid}, not {uid}: refusing it")
    if st.st_mode & 0o077:
        raise UfenceError(f"{path} is accessible by group/others (mode {st.st_mode & 0o777:04o}): refusing it")
    return st


def proc_uid(pid: int) -> int | None:
    try:
        return os.stat(f"/proc/{pid}").st_uid
    except OSError:
        return None


def locate(pid: int) -> tuple[Path, int]:
    """The state file of ``pid`` and the uid that must own it.

    Our own run directory first; root (or anyone with UFENCE_RUN_DIR unset)
    looking at another user's live process also tries that user's directory.
    """
    mine = default_dir()
    candidates: list[tuple[Path, int]] = [(mine, os.geteuid())]
    owner = proc_uid(pid)
    if "UFENCE_RUN_DIR" not in os.environ and owner is not None and owner != os.geteuid():
        candidates.append((default_dir(owner), owner))
    for n, (d, uid) in enumerate(candidates):
        f = d / f"{pid}.shm"
        if n == 0:
            if not os.path.lexists(d):
                continue
            check_dir(d, uid)  # our own directory is unsafe: say so, never look past it
        else:
            try:
                check_dir(d, uid)
            except UfenceError:
                continue
        if os.path.lexists(f):
            return f, uid
    if owner is None:
        raise UfenceError(f"no process {pid} and no ufence state for it in {mine}")
    raise UfenceError(f"pid {pid} is not running under ufence (no {mine}/{pid}.shm; start it with 'ufence run')")


def _stat_fields(pid: int) -> list[bytes] | None:
    """/proc/PID/stat from field 3 (state) on; None if no such process."""
    try:
        data = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    # comm may contain spaces and parentheses: split after the last ')'
    return data[data.rfind(b")") + 2:].split()


def proc_starttime(pid: int) -> int | None:
    """Field 22 of /proc/PID/stat (clock ticks since boot), None if no such process."""
    f = _stat_fields(pid)
    try:
        return int(f[19]) if f else None
    except (IndexError, ValueError):
        return None


def alive(pid: int, starttime: int) -> bool:
    """The process that wrote a file with this (pid, starttime) still runs: not exited, not a
    zombie waiting for its parent, and not another process that reused the pid."""
    f = _stat_fields(pid)
    if not f or len(f) < 20 or f[0] in (b"Z", b"X", b"x"):
        return False
    try:
        return starttime == 0 or int(f[19]) == starttime
    except ValueError:
        return False
