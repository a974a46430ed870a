#!/usr/bin/env python3
"""Split the guest's transfer log back into files: unpack-transfer.py LOG OUTDIR.

kernel/guest-init.sh writes every collected file to the second serial port as
base64 between ``=== KQ-BEGIN path`` and ``=== KQ-END path size sha256``, then
``=== KQ-DONE count``. Each file is checked against its size and sha256; a
missing end, a bad checksum or a path leaving OUTDIR is a one-line error and
exit status 1, so a truncated capture never passes for a complete one.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import sys
from pathlib import Path


class TransferError(Exception):
    pass


def _target(outdir: Path, rel: str) -> Path:
    path = (outdir / rel).resolve()
    if rel.startswith("/") or outdir.resolve() not in path.parents:
        raise TransferError(f"path {rel!r} leaves the output directory")
    return path


def unpack(log: Path, outdir: Path) -> int:
    """Write every file of LOG under OUTDIR; returns how many."""
    current: str | None = None
    chunks: list[str] = []
    written = 0
    for lineno, raw in enumerate(log.read_text(errors="replace").splitlines(), 1):
        line = raw.strip("\r\x00 ")
        if line.startswith("=== KQ-BEGIN "):
            if current is not None:
                raise TransferError(f"line {lineno}: {current} has no KQ-END")
            current, chunks = line.split(" ", 2)[2], []
        elif line.startswith("=== KQ-END "):
            fields = line.split()
            if current is None or fields[2] != current:
                raise TransferError(f"line {lineno}: KQ-END without a matching KQ-BEGIN")
            if len(fields) != 5 or not fields[3].isdigit():
                raise TransferError(f"line {lineno}: malformed KQ-END line (cut short?)")
            try:
                data = base64.b64decode("".join(chunks), validate=True)
            except binascii.Error as e:
                raise TransferError(f"{current}: bad base64 ({e})") from None
            if len(data) != int(fields[3]) or hashlib.sha256(data).hexdigest() != fields[4]:
                raise TransferError(f"{current}: size or sha256 differs from what the guest sent")
            path = _target(outdir, current)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            written += 1
            current = None
        elif line.startswith("=== KQ-DONE "):
            if current is not None:
                raise TransferError(f"{current} has no KQ-END")
            if int(line.split()[2]) != written:
                raise TransferError(f"guest sent {line.split()[2]} files, {written} arrived")
            return written
        elif current is not None and line:
            chunks.append(line)
    raise TransferError("transfer ended before KQ-DONE (guest crashed or timed out?)")


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print("usage: unpack-transfer.py LOG OUTDIR", file=sys.stderr)
        return 2
    try:
        n = unpack(Path(argv[1]), Path(argv[2]))
    except (OSError, ValueError, TransferError) as e:
        print(f"unpack-transfer: {e}", file=sys.stderr)
        return 1
    print(f"unpack-transfer: {n} files")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
