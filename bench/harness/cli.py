"""bench/run [--quick|--full] [--only NAME,...] [--configs NAME,...] [--reps N] [--out DIR]."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from harness import machine, proc, setup
from harness.configs import all_configs
from harness.context import Context
from harness.errors import BenchError
from harness.runner import run_case
from harness.workloads import ALL

ROOT = setup.ROOT


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2
        self.exit(2, f"bench: {message} (see 'bench/run --help')\n")


def parse(argv: list[str]) -> argparse.Namespace:
    p = _Parser(prog="bench/run", description="ufence benchmarks against no engine and the peers.")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="tiny smoke run of everything (CI); never judges timing")
    mode.add_argument("--full", action="store_true", help="real numbers (default)")
    p.add_argument("--only", default="", help="workloads, comma-separated: " + ",".join(w.name for w in ALL))
    p.add_argument("--configs", default="", help="configurations, comma-separated (default: all)")
    p.add_argument("--reps", type=int, default=0, help="repetitions (default 3 full, 1 quick)")
    p.add_argument("--out", default="", help="directory for the JSON, bench.md and bench.png "
                   "(default: bench/results + docs/ for --full, a temp dir for --quick)")
    p.add_argument("--no-install", action="store_true", help="do not apt-get install missing tools")
    p.add_argument("--profile", action="store_true",
                   help="perf-profile full mode on the microbenchmark (default with --full when micro runs)")
    p.add_argument("--render", default="", metavar="DIR",
                   help="only redraw: copy DIR/*.json into bench/results (or --out) and rewrite bench.md and "
                   "bench.png from them; runs nothing")
    p.add_argument("--keep", action="store_true", help="keep the scratch directory (server logs)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    try:
        return _main(args, sys.argv[1:] if argv is None else argv)
    except BenchError as e:
        print(f"bench: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
        return 130
    finally:
        proc.kill_all()


def _select(names: str, known: list[str], what: str) -> list[str]:
    if not names:
        return known
    want = [n.strip() for n in names.split(",") if n.strip()]
    bad = [n for n in want if n not in known]
    if bad:
        raise BenchError(f"unknown {what} {', '.join(bad)} (known: {', '.join(known)})")
    return [n for n in known if n in want]


def _main(args: argparse.Namespace, argv: list[str]) -> int:
    quick = bool(args.quick)
    reps = args.reps or (1 if quick else 3)
    if reps < 1 or reps > 50:
        raise BenchError("--reps must be 1..50")
    wl_names = _select(args.only, [w.name for w in ALL], "workload")
    cfg_names = _select(args.configs, [c.name for c in all_configs()], "configuration")
    if args.out:
        out = Path(args.out).resolve()
        docs = out
    elif quick:
        out = Path(tempfile.mkdtemp(prefix="bench-quick-"))
        docs = out
    else:
        out, docs = ROOT / "bench" / "results", ROOT / "docs"
    out.mkdir(parents=True, exist_ok=True)
    docs.mkdir(parents=True, exist_ok=True)

    if args.render:
        return _render(Path(args.render), out, docs)
    t_start = time.monotonic()
    if not args.no_install:
        setup.install()
    # after the install: a peer's library path (Scudo) is only known once it is there
    configs = [c for c in all_configs() if c.name in cfg_names]
    tmp = Path(tempfile.mkdtemp(prefix="bench-"))
    shm = Path(tempfile.mkdtemp(prefix="ufence-bench-", dir="/dev/shm")) if os.path.isdir("/dev/shm") else None
    try:
        engine, engine_note = setup.engine(Path(os.environ.get("BENCH_BUILD_DIR", "/tmp/bench-build")))
        print(f"bench: engine: {engine or 'none'} ({engine_note})", file=sys.stderr)
        ctx = Context(tmp=tmp, engine=engine, tools=setup.helpers(tmp / "bin"), quick=quick,
                      ncpu=os.cpu_count() or 1, shm=shm)
        facts = machine.facts()
        reproduce = "bench/run " + " ".join(shlex.quote(a) for a in argv)
        written: list[Path] = []
        failures: list[str] = []
        if engine is None and any(c.kind == "ufence" for c in configs):
            failures.append(f"ufence configurations not run: {engine_note}")
        for wl in [w for w in ALL if w.name in wl_names]:
            missing = wl.missing()
            if missing:
                print(f"bench: {wl.name}: skipped ({missing})", file=sys.stderr)
                failures.append(f"{wl.name}: {missing}")
                continue
            print(f"bench: {wl.name}", file=sys.stderr, flush=True)
            t0 = time.monotonic()
            wl.setup(ctx)
            try:
                cases = [run_case(ctx, wl, c, configs, reps) for c in wl.cases(quick)]
            finally:
                wl.teardown(ctx)
            doc: dict[str, Any] = {
                "schema": 1,
                "workload": wl.name,
                "what": wl.what,
                "mode": "quick" if quick else "full",
                "reps": reps,
                "reproduce": reproduce,
                "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "seconds": round(time.monotonic() - t0, 1),
                "machine": facts,
                "engine": {"path": engine, "note": engine_note},
                "launch": "LD_PRELOAD + UFENCE_OPTIONS set directly by the harness (no launcher in the timing)",
                "metrics": [vars(m) for m in wl.metrics],
                "configs": {c.name: {"kind": c.kind, "what": c.what, "settings": c.describe(engine, 0)}
                            for c in configs},
                "cases": cases,
            }
            path = out / f"{wl.name}.json"
            path.write_text(json.dumps(doc, indent=1) + "\n")
            written.append(path)
            failures += _failures(doc)
        if "micro" in wl_names and (args.profile or not quick):
            from harness import profile

            print("bench: profiling full mode (perf record -e cpu-clock -g)", file=sys.stderr, flush=True)
            if profile.run(ctx, configs, out) is None:
                print("bench: perf unusable here; no profile", file=sys.stderr)
        from harness import report

        md, png = report.write(out, docs, quick)
        elapsed = time.monotonic() - t_start
        print(f"bench: {ctx.runs} runs in {elapsed:.0f} s; results in {out}; table {md}; chart {png}",
              file=sys.stderr)
        if failures:
            print("bench: FAILED:\n  " + "\n  ".join(failures), file=sys.stderr)
            return 1
        print("bench: passed", file=sys.stderr)
        return 0
    finally:
        if shm:
            shutil.rmtree(shm, ignore_errors=True)  # state files: memory, never kept
        if args.keep:
            print(f"bench: scratch kept in {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def _render(src: Path, out: Path, docs: Path) -> int:
    """Rewrite the table and chart from the JSON of an earlier run (no benchmark is run)."""
    from harness import report

    found = sorted(src.glob("*.json"))
    if not found:
        raise BenchError(f"--render {src}: no *.json results there")
    for p in found:
        try:
            json.loads(p.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise BenchError(f"--render {p}: not a results file ({e})") from None
        if p.resolve().parent != out.resolve():
            shutil.copyfile(p, out / p.name)
    note = (f"The JSON was copied into `bench/results/` and this page drawn from it by "
            f"`bench/run --render {src}` (nothing re-run).")
    md, png = report.write(out, docs, quick=False, note=note)
    print(f"bench: rewrote {md} and {png} from {len(found)} result files", file=sys.stderr)
    return 0


def _failures(doc: dict[str, Any]) -> list[str]:
    """Crashes and false bug reports; documented peer limits and skips are not failures."""
    out = []
    for case in doc["cases"]:
        for name, res in case["results"].items():
            if res["status"] in ("ok", "skipped") or res["expected"]:
                continue
            out.append(f"{doc['workload']}/{case['name']}/{name}: {res['status']}: {res['message']}")
    return out
