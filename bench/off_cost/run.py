#!/usr/bin/env python3
"""Cost of the engine when off: callgrind instruction counts and A/B wall-clock medians.

Three configurations of one malloc-heavy program (malloc_heavy.c):
  none     no engine
  off      engine loaded, sample_interval=0 (what `ufence run --mode off` gives)
  sample   engine at 1 in 1000 allocations (`ufence run --sample-rate 1000`)
The environments are built by `ufence run`'s own code, so they are what a user gets.

Instruction counts are taken at two round counts: the difference is the
per-round (fast path) cost without start-up; the totals include start-up.
Wall-clock runs alternate none/off/sample so drift hits all alike; medians.

Writes bench/results/off_cost.json and docs/bench-off-cost.md.
Usage: bench/off_cost/run.py [--rounds N] [--wall-rounds N] [--repeats K]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(REPO / "src"))

from ufence.cli import build_parser  # noqa: E402
from ufence.cli.run import build_env  # noqa: E402
from ufence.engine import library_path  # noqa: E402

CONFIGS: dict[str, list[str] | None] = {
    "none": None,
    "off": ["--mode", "off"],
    "sample": ["--mode", "sample", "--sample-rate", "1000"],
}


def env_for(flags: list[str] | None, base: dict[str, str]) -> dict[str, str]:
    if flags is None:
        return {k: v for k, v in base.items() if k not in ("LD_PRELOAD", "UFENCE_OPTIONS")}
    args = build_parser().parse_args(["run", *flags, "--", "true"])
    return build_env(args, base)


def callgrind_ir(prog: Path, rounds: int, env: dict[str, str], tmp: Path) -> tuple[int, int]:
    """(whole-program instructions, instructions in the engine's own functions)."""
    out = tmp / f"cg-{rounds}-{time.monotonic_ns()}.out"
    subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", str(prog), str(rounds)],
                   env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=600)
    text = out.read_text()
    m = re.search(r"^(?:summary|totals):\s*(\d+)", text, re.M)
    if not m:
        raise SystemExit(f"no instruction total in {out}")
    return int(m[1]), engine_ir(out)


def engine_ir(out: Path) -> int:
    """Exclusive instructions of functions in libufence.so (callgrind_annotate's per-function table)."""
    if not shutil.which("callgrind_annotate"):
        return 0
    r = subprocess.run(["callgrind_annotate", "--threshold=100", str(out)], capture_output=True, text=True,
                       timeout=120)
    total = 0
    for line in r.stdout.splitlines():
        m = re.match(r"^\s*([\d,]+)\s+\([^)]*\)\s+(\S+)(?:\s+\[(\S+)\])?", line)
        if m and ("libufence" in (m[3] or "") or m[2].startswith("engine/")):
            total += int(m[1].replace(",", ""))
    return total


def wall(prog: Path, rounds: int, env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds user+sys of the child): on a shared machine the CPU time is the
    steadier of the two, since waiting for a core is not counted in it."""
    t0 = time.perf_counter()
    p = subprocess.Popen([str(prog), str(rounds)], env=env, stdout=subprocess.DEVNULL)
    _, status, ru = os.wait4(p.pid, 0)
    elapsed = time.perf_counter() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        raise SystemExit(f"{prog} failed with {p.returncode}")
    return elapsed, ru.ru_utime + ru.ru_stime


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=200_000, help="callgrind rounds (also run at 2x)")
    ap.add_argument("--wall-rounds", type=int, default=2_000_000)
    ap.add_argument("--repeats", type=int, default=11, help="alternating wall-clock runs per configuration")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "off_cost.json")
    ap.add_argument("--doc", type=Path, default=REPO / "docs" / "bench-off-cost.md")
    a = ap.parse_args()
    if not shutil.which("valgrind"):
        raise SystemExit("valgrind not found (apt-get install valgrind)")
    with tempfile.TemporaryDirectory(prefix="ufence-offcost-") as td:
        tmp = Path(td)
        os.chmod(tmp, 0o700)
        prog = tmp / "malloc_heavy"
        subprocess.run(["cc", "-O2", "-o", str(prog), str(HERE / "malloc_heavy.c")], check=True)
        base = dict(os.environ, UFENCE_RUN_DIR=str(tmp / "run"), UFENCE_REPORT_DIR=str(tmp / "reports"))
        envs = {name: env_for(flags, base) for name, flags in CONFIGS.items()}

        n1, n2 = a.rounds, 2 * a.rounds
        raw = {name: {str(n): callgrind_ir(prog, n, env, tmp) for n in (n1, n2)} for name, env in envs.items()}
        ir = {name: {n: v[0] for n, v in d.items()} for name, d in raw.items()}
        eng = {name: {n: v[1] for n, v in d.items()} for name, d in raw.items()}
        per_round = {name: (v[str(n2)] - v[str(n1)]) / (n2 - n1) for name, v in ir.items()}
        engine_per_round = {name: (v[str(n2)] - v[str(n1)]) / (n2 - n1) for name, v in eng.items()}

        times: dict[str, list[float]] = {name: [] for name in envs}
        cpu: dict[str, list[float]] = {name: [] for name in envs}
        for env in envs.values():  # warm-up: page cache, first-run effects
            wall(prog, a.wall_rounds // 10, env)
        for _ in range(a.repeats):
            for name, env in envs.items():
                w, c = wall(prog, a.wall_rounds, env)
                times[name].append(w)
                cpu[name].append(c)
        # start-up and exit alone: zero rounds
        start: dict[str, list[float]] = {name: [] for name in envs}
        for _ in range(a.repeats):
            for name, env in envs.items():
                start[name].append(wall(prog, 0, env)[0])
    smed = {name: statistics.median(v) for name, v in start.items()}
    med = {name: statistics.median(v) for name, v in times.items()}
    cmed = {name: statistics.median(v) for name, v in cpu.items()}
    base_ir = ir["none"][str(n2)]
    result = {
        "engine": str(library_path()),
        "machine": {"cpu": platform.processor() or platform.machine(), "kernel": platform.release(),
                    "nproc": os.cpu_count()},
        "program": "bench/off_cost/malloc_heavy.c (cc -O2); one round = one free + one malloc/calloc of 8..520 B",
        "callgrind": {
            "rounds": [n1, n2],
            "instructions": ir,
            "per_round": per_round,
            "engine_functions": eng,
            "engine_functions_per_round": engine_per_round,
            "total_overhead_pct": {k: 100 * (ir[k][str(n2)] / base_ir - 1) for k in ir},
            "per_round_overhead_pct": {k: 100 * (per_round[k] / per_round["none"] - 1) for k in per_round},
        },
        "wall": {
            "rounds": a.wall_rounds, "repeats": a.repeats, "seconds": times, "median": med,
            "ratio_to_none": {k: med[k] / med["none"] for k in med},
            "cpu_seconds": cpu, "cpu_median": cmed,
            "cpu_ratio_to_none": {k: cmed[k] / cmed["none"] for k in cmed},
            "startup_exit_median": smed,
        },
        "target": "engine off adds < 2% instructions",
    }
    result["pass"] = result["callgrind"]["total_overhead_pct"]["off"] < 2.0
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=2) + "\n")
    a.doc.write_text(markdown(result))
    print(markdown(result))
    return 0


def markdown(r: dict) -> str:  # type: ignore[type-arg]
    cg, w = r["callgrind"], r["wall"]
    n2 = str(cg["rounds"][1])
    rows = [
        f"| {name} | {cg['instructions'][name][n2]:,} | {cg['total_overhead_pct'][name]:+.2f}% | "
        f"{cg['per_round'][name]:.1f} | {cg['per_round_overhead_pct'][name]:+.2f}% | "
        f"{w['median'][name] * 1000:.1f} ms | {w['ratio_to_none'][name]:.3f} | "
        f"{w['cpu_median'][name] * 1000:.1f} ms | {w['cpu_ratio_to_none'][name]:.3f} |"
        for name in ("none", "off", "sample")
    ]
    return "\n".join([
        "# Cost of the engine when off",
        "",
        "Generated by `bench/off_cost/run.py` (raw data: `bench/results/off_cost.json`).",
        f"Program: {r['program']}.",
        f"Machine: {r['machine']['cpu']}, Linux {r['machine']['kernel']}, {r['machine']['nproc']} CPUs (shared).",
        "",
        "- **none**: no engine; **off**: engine loaded, `sample_interval=0` (`ufence run --mode off`);",
        "  **sample**: 1 in 1000 allocations guarded (`ufence run --sample-rate 1000`).",
        f"- Instructions: `valgrind --tool=callgrind`, whole program, {int(n2):,} rounds; per round = difference",
        f"  between {cg['rounds'][0]:,} and {int(n2):,} rounds, divided by the extra rounds (start-up cancels out).",
        f"- Wall clock: median of {w['repeats']} alternating runs (none, off, sample, none, ...) of "
        f"{w['rounds']:,} rounds each; CPU = user+sys of the run (the steadier figure on a shared machine).",
        "",
        "| config | instructions | vs none | instr/round | vs none | wall (median) | wall ratio | CPU (median) "
        "| CPU ratio |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        *rows,
        "",
        f"Target: {r['target']} — **{'met' if r['pass'] else 'NOT met'}** "
        f"({cg['total_overhead_pct']['off']:+.2f}% total, {cg['per_round_overhead_pct']['off']:+.2f}% per round).",
        "",
        "Start-up plus exit alone (0 rounds, median wall): "
        + ", ".join(f"{k} {w['startup_exit_median'][k] * 1000:.1f} ms" for k in ("none", "off", "sample"))
        + "; this fixed cost is part of the wall figures above.",
        "",
        "Where the instructions go when off (per round, from callgrind's per-function table): the engine's own",
        f"functions (the interposed `malloc`/`calloc`/`free` fast paths) execute "
        f"{cg['engine_functions_per_round']['off']:.1f} instructions; the remaining "
        f"{cg['per_round']['off'] - cg['per_round']['none'] - cg['engine_functions_per_round']['off']:.1f} "
        "are in glibc, which does more work behind the extra call level.",
        "A round of this program costs only "
        f"{cg['per_round']['none']:.0f} instructions without the engine (glibc's tcache fast paths), so even a",
        "branch-and-jump interposer is a visible fraction here; real programs do work between allocations.",
        "",
    ])


if __name__ == "__main__":
    raise SystemExit(main())
