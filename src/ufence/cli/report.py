"""``ufence report FILE...``: re-render saved bug reports, symbolized.

FILE is a report JSON the engine wrote (``<pid>-<seq>.json``, plain or
gzipped) or a directory of them. Frames are symbolized from this machine's
binaries and debug files when their build ids match the recorded ones, so a
report copied from a production host reads with file:line on a developer's
machine that has the same build. A file that is not a report gets one line
on stderr naming it; the others are still shown, and the exit code is 1.
"""

from __future__ import annotations

import argparse
import json
import stat
import sys
from pathlib import Path

from ufence.errors import UfenceError
from ufence.fileio import gunzip_if_needed
from ufence.model import Report

NAME = "report"
HELP = "re-render saved bug reports (engine JSON) symbolized, KFENCE-shaped"

_MAX_BYTES = 64 << 20  # a bug report is a few KB; refuse to slurp a huge wrong file


def register(p: argparse.ArgumentParser) -> None:
    p.add_argument("files", nargs="+", metavar="FILE", help="report JSON file(s), or directories of them")
    p.add_argument("--json", action="store_true",
                   help="print the (symbolized) report as JSON: one object for one file, else a JSON array")
    p.add_argument("--no-symbolize", action="store_true", help="show frames as recorded (module+offset)")
    p.add_argument("--search", action="append", default=[], metavar="DIR",
                   help="also look for the binaries in DIR by file name (build id still checked); repeatable")


def load_report(path: Path) -> Report:
    """Read one report file; UfenceError naming the file for anything that is not a report."""
    try:
        st = path.stat()
        if not stat.S_ISREG(st.st_mode):
            raise UfenceError(f"{path}: not a regular file")
        if st.st_size > _MAX_BYTES:
            raise UfenceError(f"{path}: not a ufence bug report (larger than {_MAX_BYTES >> 20} MiB)")
        raw = path.read_bytes()
    except OSError as e:
        raise UfenceError(f"cannot read {path}: {e.strerror or e}") from None
    raw = gunzip_if_needed(raw, path)
    if not raw.strip():
        raise UfenceError(f"{path}: empty file, not a ufence bug report")
    try:
        data = json.loads(raw)
    except UnicodeDecodeError:
        raise UfenceError(f"{path}: not a ufence bug report (binary data, not JSON)") from None
    except json.JSONDecodeError as e:
        truncated = e.pos >= len(raw.rstrip()) - 1 or e.msg.startswith("Unterminated")
        what = "truncated JSON" if truncated else "not valid JSON"
        raise UfenceError(f"{path}: not a ufence bug report ({what}: {e.msg} at line {e.lineno} column {e.colno})") \
            from None
    if not isinstance(data, dict) or not str(data.get("schema", "")).startswith("ufence.report/"):
        raise UfenceError(f"{path}: not a ufence bug report (no 'ufence.report/N' schema field)")
    try:
        _shape(data)
        rep = Report.from_dict(data)
        _check(rep)
    except KeyError as e:
        raise UfenceError(f"{path}: malformed bug report (missing field {e})") from None
    except (TypeError, ValueError, AttributeError) as e:
        raise UfenceError(f"{path}: malformed bug report ({e})") from None
    return rep


def _frames_shape(v: object, where: str) -> None:
    if not isinstance(v, list) or not all(isinstance(f, dict) for f in v):
        raise ValueError(f"{where} is not a list of frame objects")
    for f in v:
        if "inlined" in f:
            _frames_shape(f["inlined"], f"{where} inlined")


def _shape(d: dict[str, object]) -> None:
    """The containers from_dict walks, so a wrong type is named, not a Python error."""
    _frames_shape(d.get("stack", []), "stack")
    obj = d.get("object")
    if obj is None:
        return
    if not isinstance(obj, dict):
        raise ValueError("object is not an object")
    for k in ("alloc", "free"):
        t = obj.get(k)
        if t is None:
            continue
        if not isinstance(t, dict):
            raise ValueError(f"object.{k} is not an object")
        _frames_shape(t.get("frames", []), f"object.{k}.frames")
    c = d.get("corruption", [])
    if not isinstance(c, list) or not all(isinstance(b, dict) for b in c):
        raise ValueError("corruption is not a list of byte objects")


def _check(rep: Report) -> None:
    """Types the renderer relies on (from_dict copies values as given)."""
    frames = list(rep.stack)
    if rep.object:
        for t in (rep.object.alloc, rep.object.free):
            if t:
                frames += t.frames
    for f in frames:
        for k in ("pc", "offset", "function_offset", "function_size", "line"):
            v = getattr(f, k)
            if v is not None and (not isinstance(v, int) or isinstance(v, bool)):
                raise ValueError(f"frame {k} is {v!r}, not a number")
        for k in ("module", "function", "file", "build_id"):
            v = getattr(f, k)
            if v is not None and not isinstance(v, str):
                raise ValueError(f"frame {k} is {v!r}, not text")
    for k in ("distance", "pid", "tid"):
        v = getattr(rep, k)
        if v is not None and not isinstance(v, int):
            raise ValueError(f"{k} is {v!r}, not a number")


def _expand(files: list[str]) -> list[Path]:
    out: list[Path] = []
    for name in files:
        p = Path(name)
        if p.is_dir():
            found = sorted(p.glob("*.json")) + sorted(p.glob("*.json.gz"))
            if not found:
                raise UfenceError(f"{p}: no report files (*.json) in this directory")
            out += found
        else:
            out.append(p)
    return out


def run(args: argparse.Namespace) -> int:
    paths = _expand(args.files)
    reports: list[tuple[Path, Report]] = []
    failed = 0
    for p in paths:
        try:
            reports.append((p, load_report(p)))
        except UfenceError as e:
            print(f"ufence: {e}", file=sys.stderr)
            failed += 1
    if not args.no_symbolize and reports:
        from ufence import symbolize as sym

        sym.set_search_dirs(args.search)
        frames, exact = [], []
        for _p, r in reports:
            fr, ex = sym.report_frames(r)
            frames += fr
            exact += ex
        sym.symbolize(frames, exact=exact)  # one batch for every file
        for n in sym.notices():
            print(f"ufence: note: {n}", file=sys.stderr)
    if args.json:
        docs = [r.to_dict() for _p, r in reports]
        if docs:
            out = docs[0] if len(args.files) == 1 and len(paths) == 1 else docs
            sys.stdout.write(json.dumps(out, indent=2) + "\n")
    else:
        from ufence.formats.report_text import render

        for i, (p, r) in enumerate(reports):
            if i:
                sys.stdout.write("\n")
            sys.stdout.write(render(r, str(p)))
    sys.stdout.flush()
    return 1 if failed else 0
