"""Kernel log text -> (timestamp, message) pairs, whatever the capture.

Accepted line shapes (mixed freely): ``dmesg`` (``[    5.219650] msg``),
``dmesg -r``/console (``<3>[    5.2] msg``, ``<3>msg``), caller ids
(``[  T149] msg``), /dev/kmsg records (``3,123,456789,-;msg``, with their
`` KEY=value`` continuation lines dropped), syslog/journal lines
(``Dec  2 05:30:09 host kernel: msg``) and vmcore-dmesg output. The one
space after the timestamp belongs to the prefix; what follows (stack lines
start with a space) is the message as printed.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import subprocess
from collections.abc import Iterable, Iterator

from ufence.errors import UfenceError

_KMSG = re.compile(r"^(\d+),(\d+),(\d+),[^;]*;(.*)$")
_SYSLOG = re.compile(r"^(?:\w{3} [ \d]\d \d\d:\d\d:\d\d|\d{4}-\d\d-\d\dT\S+) \S+ kernel: ")
_LEVEL = re.compile(r"^<\d{1,3}>")
_TS = re.compile(r"^\[\s*(\d+\.\d+)\] ?")
_CALLER = re.compile(r"^\[\s*[TC]\d+\] ?")


def messages(lines: Iterable[str]) -> Iterator[tuple[float | None, str]]:
    """Strip log prefixes; yields (seconds since boot or None, message)."""
    kmsg = False
    for raw in lines:
        line = raw.rstrip("\r\n")
        m = _KMSG.match(line)
        if m:
            kmsg = True
            yield int(m[3]) / 1e6, m[4]
            continue
        if kmsg and line.startswith(" ") and "=" in line:
            continue  # /dev/kmsg dictionary line (SUBSYSTEM=..., DEVICE=...)
        m = _SYSLOG.match(line)
        if m:
            line = line[m.end():]
        m = _LEVEL.match(line)
        if m:
            line = line[m.end():]
        ts = None
        m = _TS.match(line)
        if m:
            ts = float(m[1])
            line = line[m.end():]
            m = _LEVEL.match(line)
            if m:
                line = line[m.end():]
        m = _CALLER.match(line)
        if m:
            line = line[m.end():]
        yield ts, line


def read_kmsg() -> list[str]:
    """The live kernel log: /dev/kmsg (all records, non-blocking), else `dmesg`."""
    try:
        fd = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)
    except PermissionError:
        return _dmesg_command()
    except OSError:
        return _dmesg_command()
    out: list[str] = []
    try:
        while True:
            try:
                rec = os.read(fd, 8192)
            except BlockingIOError:
                break
            except OSError as e:
                if e.errno == errno.EPIPE:  # a record was overwritten while reading: skip it
                    continue
                if e.errno == errno.EAGAIN:
                    break
                raise UfenceError(f"reading /dev/kmsg failed: {e.strerror}") from None
            if not rec:
                break
            out.extend(rec.decode("utf-8", "replace").splitlines())
    finally:
        os.close(fd)
    return out


def _dmesg_command() -> list[str]:
    exe = shutil.which("dmesg")
    hint = ("reading the kernel log needs root when kernel.dmesg_restrict=1: run as root, "
            "or save it with 'sudo dmesg > log.txt' and use --file log.txt")
    if not exe:
        raise UfenceError(hint)
    try:
        r = subprocess.run([exe], capture_output=True, text=True, timeout=30, errors="replace")
    except (OSError, subprocess.TimeoutExpired):
        raise UfenceError(hint) from None
    if r.returncode != 0:
        raise UfenceError(hint)
    return r.stdout.splitlines()
