"""Time the read path on a real process under the engine: snapshot, objects, save, load.

    PYTHONPATH=src UFENCE_ENGINE=/tmp/b/libufence.so python bench/readpath/run.py [--sizes 20000,100000,200000]

For each size a C program (prog.c, built here) holds that many live objects
from a few call sites under ``ufence run --mode full``; then each operation
runs ``--repeat`` times and the median is printed:

  snapshot  ProcessBackend.snapshot() in this process
  objects   ``ufence objects PID --no-symbolize`` as a subprocess, output to /dev/null
  save      snapshot_io.save_snapshot (plain JSON, not symbolized)
  load      snapshot_file.load_snapshot of that file

Times are wall and CPU seconds (CPU includes the subprocess of ``objects``).

``--churn`` keeps the target replacing objects while it is read (the seqlock path).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent


def build(out: Path) -> Path:
    exe = out / "readpath-prog"
    subprocess.run(["cc", "-O1", "-g", "-fno-omit-frame-pointer", "-o", str(exe), str(HERE / "prog.c")], check=True)
    return exe


def _cpu() -> float:
    """CPU seconds of this process and its waited-for children: on a shared, loaded machine
    the wall clock mostly measures the other users."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def median_of(n: int, fn: Callable[[], object]) -> tuple[float, float]:
    """Median (wall, cpu) seconds of ``n`` calls."""
    walls, cpus = [], []
    for _ in range(n):
        t0, c0 = time.perf_counter(), _cpu()
        fn()
        walls.append(time.perf_counter() - t0)
        cpus.append(_cpu() - c0)
    return statistics.median(walls), statistics.median(cpus)


Row = tuple[int, int, dict[str, tuple[float, float]]]


def measure(pid: int, n: int, work: Path, repeat: int, symbolized: bool) -> Row:
    from ufence.analysis.snapshot_file import load_snapshot
    from ufence.backends.process.backend import ProcessBackend
    from ufence.symbolize import snapshot_io

    b = ProcessBackend(pid)
    try:
        live = b.counters().get("currently_allocated", 0)
        res: dict[str, tuple[float, float]] = {}
        snap = b.snapshot()
        res["snapshot"] = median_of(repeat, b.snapshot)
        objcmd = [sys.executable, "-m", "ufence", "objects", str(pid), "--no-symbolize"]
        res["objects"] = median_of(repeat, lambda: subprocess.run(objcmd, stdout=subprocess.DEVNULL, check=True))
        if symbolized:
            res["objects_sym"] = median_of(repeat, lambda: subprocess.run(
                objcmd[:-1], stdout=subprocess.DEVNULL, check=True))
        f = work / f"snap-{n}.json"
        res["save"] = median_of(repeat, lambda: snapshot_io.save_snapshot(snap, f))
        res["load"] = median_of(repeat, lambda: load_snapshot(f))
        return n, live, res
    finally:
        b.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="20000,100000,200000")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--pool", type=int, default=250000)
    ap.add_argument("--churn", action="store_true")
    ap.add_argument("--symbolized", action="store_true", help="also time `ufence objects` with symbols")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="readpath-"))
    os.chmod(work, 0o700)
    run_dir = work / "run"
    run_dir.mkdir(mode=0o700)
    os.environ["UFENCE_RUN_DIR"] = str(run_dir)
    exe = build(work)
    rows: list[Row] = []
    try:
        for n in (int(x) for x in args.sizes.split(",")):
            cmd = [sys.executable, "-m", "ufence", "run", "--mode", "full", "--pool", str(args.pool),
                   "--guard", "madvise", "--report-dir", str(work / "rep"), "--",
                   str(exe), str(n), "50", "churn" if args.churn else "hold"]
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
            try:
                assert proc.stdout is not None
                if proc.stdout.readline().strip() != "ready":
                    raise SystemExit(f"target for {n} objects did not start")
                rows.append(measure(proc.pid, n, work, args.repeat, args.symbolized))
            finally:
                proc.terminate()
                proc.wait(timeout=30)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    cols = list(rows[0][2]) if rows else []
    print("seconds, median of", args.repeat, "(wall / cpu)")
    print(f"{'objects':>8} {'live':>8} " + " ".join(f"{c:>14}" for c in cols))
    for n, live, res in rows:
        print(f"{n:>8} {live:>8} " + " ".join(f"{res[c][0]:>6.2f}/{res[c][1]:<7.2f}" for c in cols))
    return 0


if __name__ == "__main__":
    sys.exit(main())
