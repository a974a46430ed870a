"""Helpers for the engine tests: run a program under ``ufence run``, collect and parse its reports.

A test gets a ``Run``: the finished process, what the program printed about
itself (pid, pool range, guard mechanism, applied settings: see
progs/ufpool.h), the KFENCE-shaped text reports split out of stderr, and the
JSON reports of the report directory parsed with ``ufence.model.Report``.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from ufence.model import Report

SEP = "=" * 66
TRACK = re.compile(r"^(allocated|freed) by thread (\d+) at (\d+\.\d{6})s \((\d+\.\d{6})s ago\):$")
# the function may be a demangled C++ name: spaces, "+", parentheses
FRAME = re.compile(r"^ (?P<func>\S.*?)\+0x(?P<off>[0-9a-f]+)/0x(?P<size>[0-9a-f]+) \[(?P<module>[^\]]+)\]$")
OBJECT = re.compile(
    r"^ufence-#(?P<index>\d+): 0x(?P<start>[0-9a-f]+)-0x(?P<end>[0-9a-f]+), size=(?P<size>\d+), "
    r"cache=(?P<cache>\S+)$")
RAW_FRAME = re.compile(r"^ (?P<pc>0x[0-9a-f]+)(?: \[(?P<module>[^\]+]+)\+0x(?P<off>[0-9a-f]+)\])?$")
PROC = re.compile(r"^PID: (?P<pid>\d+) TID: (?P<tid>\d+) Comm: (?P<comm>.*) Exe: (?P<exe>\S+)$")

GUARD_IDS = {"madvise": 1, "mprotect": 2, "uffd": 3}
GUARDS = tuple(GUARD_IDS)

# --mode arguments of the detection matrix: full, time sampling, count sampling
MODES: dict[str, tuple[str, ...]] = {
    "full": ("--mode", "full"),
    "interval": ("--mode", "sample", "--sample-interval", "1"),
    "rate": ("--mode", "sample", "--sample-rate", "3"),
}


@dataclass
class TextFrame:
    func: str
    offset: int
    size: int
    module: str


@dataclass
class TextTrack:
    kind: str
    tid: int
    at: float
    ago: float
    frames: list[TextFrame]


@dataclass
class TextReport:
    """One report block of the engine's stderr, split into its KFENCE parts."""

    lines: list[str]
    title: str = ""
    access: str = ""
    stack: list[TextFrame] = field(default_factory=list)
    object: re.Match[str] | None = None
    tracks: dict[str, TextTrack] = field(default_factory=dict)
    proc: re.Match[str] | None = None
    report_path: str | None = None
    other: list[str] = field(default_factory=list)  # lines matching no known part

    def funcs(self) -> list[str]:
        return [f.func for f in self.stack]


def _frames(lines: list[str], i: int) -> tuple[list[TextFrame], int]:
    out: list[TextFrame] = []
    while i < len(lines) and lines[i].startswith(" "):
        m = FRAME.match(lines[i])
        if m:
            out.append(TextFrame(m["func"], int(m["off"], 16), int(m["size"], 16), m["module"]))
        elif m := RAW_FRAME.match(lines[i]):  # unsymbolized: " 0xPC [module+0xOFF]"
            out.append(TextFrame(m["pc"], int(m["off"] or "0", 16), 0, m["module"] or "?"))
        else:  # unknown shape: keep it whole, it must still not be the engine's
            out.append(TextFrame(lines[i].strip(), 0, 0, lines[i].strip()))
        i += 1
    return out, i


def parse_block(lines: list[str]) -> TextReport:
    r = TextReport(lines=lines)
    body = [ln for ln in lines]
    i = 0
    while i < len(body) and not body[i].strip():
        i += 1
    if i < len(body):
        r.title = body[i]
        i += 1
    while i < len(body) and not body[i].strip():
        i += 1
    if i < len(body):
        r.access = body[i]
        r.stack, i = _frames(body, i + 1)
    while i < len(body):
        ln = body[i]
        if not ln.strip():
            i += 1
            continue
        if m := OBJECT.match(ln):
            r.object = m
            i += 1
        elif m := TRACK.match(ln):
            frames, i = _frames(body, i + 1)
            r.tracks[m[1]] = TextTrack(m[1], int(m[2]), float(m[3]), float(m[4]), frames)
        elif m := PROC.match(ln):
            r.proc = m
            i += 1
        elif ln.startswith("Report: "):
            r.report_path = ln[len("Report: "):]
            i += 1
        else:
            r.other.append(ln)
            i += 1
    return r


def split_reports(stderr: str) -> tuple[list[TextReport], list[str]]:
    """Report blocks between the 66-'=' lines, and the lines outside any block."""
    blocks: list[TextReport] = []
    outside: list[str] = []
    cur: list[str] | None = None
    for ln in stderr.splitlines():
        if ln == SEP:
            if cur is None:
                cur = []
            else:
                blocks.append(parse_block(cur))
                cur = None
        elif cur is not None:
            cur.append(ln)
        else:
            outside.append(ln)
    if cur is not None:  # an unterminated block is a broken report: keep it visible
        blocks.append(parse_block(cur))
    return blocks, outside


@dataclass
class Run:
    proc: subprocess.CompletedProcess[str]
    report_dir: Path
    text: list[TextReport]
    outside: list[str]
    json: list[Report]
    json_paths: list[Path]
    info: dict[str, str]  # "key=value" tokens the program printed on stdout
    settings: dict[str, str]  # applied engine settings, by name

    @property
    def rc(self) -> int:
        return self.proc.returncode

    def describe(self) -> str:
        return (f"rc={self.proc.returncode}\n--- stdout\n{self.proc.stdout[-3000:]}\n"
                f"--- stderr\n{self.proc.stderr[-6000:]}")

    def value(self, key: str) -> int:
        return int(self.info[key], 0)

    def stderr_before(self, marker: str) -> str:
        idx = self.proc.stderr.find(marker)
        assert idx >= 0, f"marker {marker!r} missing\n{self.describe()}"
        return self.proc.stderr[:idx]


RunFn = Callable[..., Run]


def parse_stdout(stdout: str) -> tuple[dict[str, str], dict[int, str]]:
    info: dict[str, str] = {}
    settings: dict[int, str] = {}
    for ln in stdout.splitlines():
        if m := re.match(r"^setting (\d+)=(.*)$", ln):
            settings[int(m[1])] = m[2]
            continue
        for tok in ln.split():
            k, sep, v = tok.partition("=")
            if sep and k not in info:
                info[k] = v
    return info, settings


def load_json(report_dir: Path) -> tuple[list[Report], list[Path]]:
    import json

    if not report_dir.is_dir():
        return [], []

    def order(p: Path) -> tuple[int, int]:
        pid, _, seq = p.stem.partition("-")
        return (int(pid), int(seq)) if pid.isdigit() and seq.isdigit() else (0, 0)

    paths = sorted(report_dir.glob("*.json"), key=order)
    return [Report.from_dict(json.loads(p.read_text())) for p in paths], paths


@cache
def build_id(path: str) -> str | None:
    out = subprocess.run(["readelf", "-n", path], capture_output=True, text=True).stdout
    m = re.search(r"Build ID: ([0-9a-f]+)", out)
    return m[1] if m else None


def addr2line(path: str, offsets: list[int]) -> list[str]:
    """Function names of return addresses (offset - 1 lands inside the calling instruction)."""
    if not offsets:
        return []
    out = subprocess.run(["addr2line", "-f", "-e", path, *[f"{o - 1:#x}" for o in offsets]],
                         capture_output=True, text=True, check=True).stdout.splitlines()
    return out[0::2]
