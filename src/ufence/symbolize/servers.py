"""Long-lived symbolizer subprocesses: llvm-symbolizer, addr2line, c++filt.

Each tool is started once and fed batches of queries through pipes. A batch
is written by a helper thread while this thread reads the answers, so a
batch of any size cannot deadlock on full pipe buffers. A tool that dies,
hangs (no output for ``UFENCE_SYMBOLIZER_TIMEOUT`` seconds, default 120) or
answers garbage is killed and restarted on the next batch; the batch fails
with ``ServerError`` and the caller leaves those frames unsymbolized.
"""

from __future__ import annotations

import json
import os
import re
import select
import shutil
import subprocess
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


class ServerError(Exception):
    """The tool failed for this batch (it was killed; the next batch restarts it)."""


@dataclass(frozen=True)
class Loc:
    """One source location; a pc maps to several when functions were inlined."""

    function: str | None
    file: str | None
    line: int | None
    column: int | None = None


def _timeout() -> float:
    try:
        return float(os.environ.get("UFENCE_SYMBOLIZER_TIMEOUT", "120"))
    except ValueError:
        return 120.0


class LineServer:
    """A subprocess answering newline-terminated queries on stdout."""

    def __init__(self, argv: Sequence[str]) -> None:
        self.argv = list(argv)
        self.proc: subprocess.Popen[bytes] | None = None
        self._buf = b""
        self.started = 0  # how many times it was (re)started, for tests and stats

    def _ensure(self) -> subprocess.Popen[bytes]:
        if self.proc is None or self.proc.poll() is not None:
            self._buf = b""
            try:
                # stderr to /dev/null: tools warn there, and an unread pipe would fill and block them
                self.proc = subprocess.Popen(self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                             stderr=subprocess.DEVNULL, bufsize=0,
                                             env={**os.environ, "LC_ALL": "C"})
            except OSError as e:
                raise ServerError(f"cannot run {self.argv[0]}: {e.strerror or e}") from None
            self.started += 1
        return self.proc

    def close(self) -> None:
        p, self.proc = self.proc, None
        if p is None:
            return
        try:
            if p.stdin:
                p.stdin.close()
            p.wait(timeout=2)
        except (OSError, subprocess.TimeoutExpired):
            p.kill()
            p.wait()
        finally:
            if p.stdout:
                p.stdout.close()

    def _kill(self) -> None:
        p, self.proc = self.proc, None
        if p is not None:
            p.kill()
            p.wait()
            for s in (p.stdin, p.stdout):
                try:
                    if s:
                        s.close()
                except OSError:
                    pass

    def exchange(self, lines: Sequence[str], expect: int) -> list[bytes]:
        """Send ``lines``; return exactly ``expect`` output lines (without newlines)."""
        return self.converse(lines, lambda next_line: [next_line() for _ in range(expect)])

    def converse(self, lines: Sequence[str], consume: Callable[[Callable[[], bytes]], T]) -> T:
        """Send ``lines`` while ``consume(next_line)`` reads the answers; return what it returns."""
        proc = self._ensure()
        assert proc.stdin is not None and proc.stdout is not None
        payload = "".join(line + "\n" for line in lines).encode()
        failed: list[BaseException] = []

        def write() -> None:
            try:
                assert proc.stdin is not None
                proc.stdin.write(payload)
                proc.stdin.flush()
            except (OSError, ValueError) as e:
                failed.append(e)

        writer = threading.Thread(target=write, daemon=True)
        writer.start()
        reader = _LineReader(self, proc)
        try:
            result = consume(reader.next_line)
        except ServerError:
            self._kill()  # unblocks the writer too
            writer.join()
            raise
        writer.join()
        if failed:
            self._kill()
            raise ServerError(f"{self.argv[0]} stopped reading its input")
        return result


class _LineReader:
    def __init__(self, server: LineServer, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        self.server = server
        self.fd = proc.stdout.fileno()
        self.limit = _timeout()
        self.poll = select.poll()  # poll, not select: the fd may be above FD_SETSIZE in a busy process
        self.poll.register(self.fd, select.POLLIN)

    def next_line(self) -> bytes:
        srv = self.server
        while True:
            nl = srv._buf.find(b"\n")
            if nl >= 0:
                line = srv._buf[:nl]
                srv._buf = srv._buf[nl + 1:]
                return line
            if not self.poll.poll(self.limit * 1000):
                raise ServerError(f"{srv.argv[0]} gave no answer for {self.limit:g}s")
            chunk = os.read(self.fd, 1 << 16)
            if not chunk:
                raise ServerError(f"{srv.argv[0]} exited unexpectedly")
            srv._buf += chunk


def find_tool(names: Sequence[str]) -> str | None:
    for n in names:
        p = shutil.which(n)
        if p:
            return p
    return None


def llvm_symbolizer_path() -> str | None:
    return find_tool(["llvm-symbolizer"] + [f"llvm-symbolizer-{v}" for v in range(20, 10, -1)])


class LlvmSymbolizer:
    """One llvm-symbolizer for every module (it keeps each opened file cached)."""

    name = "llvm-symbolizer"

    def __init__(self, path: str) -> None:
        self.server = LineServer([path, "--output-style=JSON", "--inlines", "--demangle",
                                  "--functions=linkage", "--no-untag-addresses"])

    @staticmethod
    def accepts(path: str) -> bool:
        # its input line quotes the file name; a quote or newline in the name cannot be passed
        return '"' not in path and "\n" not in path

    def query(self, path: str, addrs: Sequence[int]) -> list[list[Loc]]:
        return self.query_pairs([(path, a) for a in addrs])

    def query_pairs(self, pairs: Sequence[tuple[str, int]]) -> list[list[Loc]]:
        """One batch over any number of modules: one JSON answer line per query line."""
        if not pairs:
            return []
        lines = [f'CODE "{p}" {a:#x}' for p, a in pairs]
        raw = self.server.exchange(lines, len(lines))
        return [self._parse(r) for r in raw]

    def _parse(self, raw: bytes) -> list[Loc]:
        try:
            d = json.loads(raw)
        except ValueError:
            self.server._kill()
            raise ServerError("llvm-symbolizer printed something that is not JSON") from None
        if not isinstance(d, dict) or "Error" in d:
            return []
        locs = []
        for s in d.get("Symbol", []) or []:
            if not isinstance(s, dict):
                continue
            fn = s.get("FunctionName") or None
            file = s.get("FileName") or None
            line = s.get("Line") or None
            col = s.get("Column") or None
            if fn is None and file is None:
                continue
            locs.append(Loc(fn, file, line if isinstance(line, int) else None, col if isinstance(col, int) else None))
        return locs

    def close(self) -> None:
        self.server.close()


_ADDR_RE = re.compile(rb"^0x[0-9a-f]+$")
_LOC_RE = re.compile(rb"^(.*):(\d+|\?)(?: \(discriminator \d+\))?$")
_SENTINEL = 0xFFFFFFFFFFFFFFF0


class Addr2Line:
    """``addr2line -a -f -i -C -e FILE``, one process per module file.

    With -i the number of output lines per address varies, so each answer
    begins with the address (-a) and every batch ends with a sentinel
    address that resolves to nothing, whose header marks the end.
    """

    name = "addr2line"

    def __init__(self, path: str) -> None:
        self.tool = path
        self.servers: dict[str, LineServer] = {}

    @staticmethod
    def accepts(path: str) -> bool:
        return True

    def query(self, path: str, addrs: Sequence[int]) -> list[list[Loc]]:
        if not addrs:
            return []
        srv = self.servers.get(path)
        if srv is None:
            if len(self.servers) >= 64:  # bound open processes: drop the oldest
                oldest = next(iter(self.servers))
                self.servers.pop(oldest).close()
            srv = self.servers[path] = LineServer([self.tool, "-a", "-f", "-i", "-C", "-e", path])
        lines = [f"{a:#x}" for a in addrs] + [f"{_SENTINEL:#x}"]

        def consume(next_line: Callable[[], bytes]) -> list[list[Loc]]:
            out: list[list[Loc]] = []
            first = next_line().rstrip(b"\r")
            if not _ADDR_RE.match(first):
                raise ServerError("addr2line printed an unexpected answer")
            pending: list[bytes] = []
            while True:
                line = next_line().rstrip(b"\r")
                if not _ADDR_RE.match(line):
                    pending.append(line)
                    continue
                out.append(self._pairs(pending))
                pending = []
                if len(out) == len(addrs):  # this header is the sentinel's
                    next_line()
                    next_line()
                    return out

        return srv.converse(lines, consume)

    @staticmethod
    def _pairs(lines: list[bytes]) -> list[Loc]:
        locs = []
        for i in range(0, len(lines) - 1, 2):
            fn = lines[i].decode("utf-8", "replace")
            m = _LOC_RE.match(lines[i + 1])
            file = line = None
            if m:
                f = m.group(1).decode("utf-8", "replace")
                file = None if f == "??" else f
                line = int(m.group(2)) if m.group(2) != b"?" and m.group(2) != b"0" else None
            func = None if fn == "??" else fn
            if func is None and file is None:
                continue
            locs.append(Loc(func, file, line))
        return locs

    def close(self) -> None:
        for s in self.servers.values():
            s.close()
        self.servers.clear()


# Rust, as the engine's text report and rustc's backtraces print it: c++filt and llvm-symbolizer
# keep the legacy scheme's hash (``::h`` and 16 hex digits, last) and v0's crate disambiguators
# (16 hex digits in brackets right after the crate's name), which name no more than the path does
_RUST_LEGACY_HASH = re.compile(r"::h[0-9a-f]{16}$")
_RUST_V0_CRATE = re.compile(r"(?<=[A-Za-z0-9_])\[[0-9a-f]{16}\]")


def tidy_rust(name: str) -> str:
    """A demangled name without Rust's hashes; any other name as it is."""
    return _RUST_V0_CRATE.sub("", _RUST_LEGACY_HASH.sub("", name))


class Demangler:
    """c++filt (or llvm-cxxfilt) kept running: one mangled name in, one line out. C++ (``_Z``) and
    Rust, legacy (``_ZN...17h...E``) and v0 (``_R``)."""

    def __init__(self) -> None:
        tool = find_tool(["c++filt", "llvm-cxxfilt"])
        self.server = LineServer([tool]) if tool else None

    def demangle(self, names: Sequence[str]) -> list[str]:
        todo = [n for n in names if n.startswith(("_Z", "_R")) and "\n" not in n]
        if not todo or self.server is None:
            return list(names)
        try:
            out = self.server.exchange(todo, len(todo))
        except ServerError:
            return list(names)
        m = {a: tidy_rust(b.decode("utf-8", "replace")) or a for a, b in zip(todo, out, strict=True)}
        return [m.get(n, n) for n in names]

    def close(self) -> None:
        if self.server:
            self.server.close()
