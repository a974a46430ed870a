"""``ufence run``: start a program under the ufence engine.

Builds the environment of the launch contract (docs/design.md): the engine
is prepended to LD_PRELOAD, settings go in UFENCE_OPTIONS, and the program
replaces this process (execvpe), so its signals, exit code and pid are its
own and ``ufence ps``/``ufence set PID`` find it by the pid the shell saw.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

from ufence import engine, settings
from ufence.errors import UfenceError, UsageError

NAME = "run"
HELP = "run CMD with the ufence engine (KFENCE for processes)"

DEFAULT_INTERVAL_MS = 100  # KFENCE's CONFIG_KFENCE_SAMPLE_INTERVAL default

_EPILOG = f"""\
modes:
  sample  (default) guard the next allocation after every --sample-interval MS
          (default {DEFAULT_INTERVAL_MS} ms, KFENCE's default), or 1 in --sample-rate N allocations
  full    guard every eligible allocation (up to a page); the pool doubles while
          every slot is live, up to max_objects (--pool N: a fixed pool of N)
  off     load the engine but guard nothing; switch on later with 'ufence set PID ...'

Every value is validated against the engine's settings table before CMD starts.
--set KEY=VALUE takes any setting (see 'ufence get PID') and is applied after
the other flags. In full mode PYTHONMALLOC=malloc is set (unless already set
or --no-python-malloc) so CPython's objects are guarded too.

examples:
  ufence run -- ./server --port 8080
  ufence run --mode full --pool 100000 -- python3 script.py
  ufence run --mode off -- ./daemon      # then: ufence set PID sample_interval=-1
"""


def register(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = _EPILOG
    parser.add_argument("--mode", choices=("off", "sample", "full"), default=None,
                        help="off | sample | full (default: sample, every 100 ms)")
    parser.add_argument("--sample-interval", metavar="MS", default=None,
                        help=f"sample mode: ms between guarded allocations (default {DEFAULT_INTERVAL_MS})")
    parser.add_argument("--sample-rate", metavar="N", default=None,
                        help="sample mode: guard 1 in N allocations instead of by time")
    parser.add_argument("--pool", metavar="N", default=None,
                        help="pool slots (num_objects), fixed at N; without it full mode starts at 4095 and "
                             "doubles the pool while every slot is live, up to max_objects (1048576)")
    parser.add_argument("--on-bug", choices=("report", "abort"), default=None,
                        help="after a report: continue (default) or die with the original signal")
    parser.add_argument("--guard", choices=("auto", "uffd", "madvise", "mprotect"), default=None,
                        help="guard mechanism (default auto: uffd, else madvise, else mprotect)")
    parser.add_argument("--align", choices=("default", "precise"), default=None,
                        help="right-edge alignment: 16 bytes (default) or precise (odd sizes touch the guard)")
    parser.add_argument("--no-follow", action="store_true",
                        help="do not keep the engine in programs that CMD executes")
    parser.add_argument("--report-dir", metavar="DIR", default=None,
                        help="where JSON reports go (default ~/.local/state/ufence/reports)")
    parser.add_argument("--set", metavar="KEY=VALUE", action="append", default=[], dest="set_",
                        help="any engine setting; repeatable")
    parser.add_argument("--python-malloc", action=argparse.BooleanOptionalAction, default=None,
                        help="set PYTHONMALLOC=malloc (default: on in full mode)")
    parser.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- CMD ARGS...",
                        help="the program to run")


def _options(args: argparse.Namespace) -> tuple[str, dict[str, str]]:
    """The mode and the validated settings (name -> canonical text) the flags ask for."""
    mode = args.mode
    if mode is None:
        mode = "sample"
    if mode != "sample" and (args.sample_interval is not None or args.sample_rate is not None):
        raise UsageError(f"--sample-interval/--sample-rate apply to --mode sample, not --mode {mode}")
    raw: dict[str, str] = {}
    if mode == "full":
        raw["sample_interval"] = "-1"
    elif mode == "off":
        raw["sample_interval"] = "0"
    else:
        raw["sample_interval"] = args.sample_interval if args.sample_interval is not None else str(DEFAULT_INTERVAL_MS)
        if args.sample_rate is not None:
            raw["sample_rate"] = args.sample_rate
    if args.pool is not None:
        # "a pool of N": full mode does not grow it past what was asked for
        raw["num_objects"] = raw["max_objects"] = args.pool
    if args.on_bug is not None:
        raw["fault"] = args.on_bug
    if args.guard is not None:
        raw["guard"] = args.guard
    if args.align is not None:
        raw["align"] = args.align
    if args.no_follow:
        raw["follow_exec"] = "0"
    raw.update(settings.parse_assignments(args.set_))

    out: dict[str, str] = {}
    for key, value in raw.items():
        canon = settings.by_name(key).canonical(value)
        if key == "sample_interval" and args.sample_interval is not None and canon in ("0", "-1"):
            other = "off" if canon == "0" else "full"
            raise UsageError(f"--sample-interval {canon} is not sampling: use --mode {other}")
        if ":" in canon:  # UFENCE_OPTIONS separates entries with ':'
            raise UfenceError(f"{key}: value may not contain ':'")
        out[key] = canon
    # --set may have switched the mode after all (e.g. --set sample_interval=-1)
    iv = int(out["sample_interval"])
    mode = "full" if iv < 0 else "off" if iv == 0 else "sample"
    return mode, out


def build_env(args: argparse.Namespace, base: dict[str, str]) -> dict[str, str]:
    """The program's environment: ``base`` plus the engine's variables."""
    mode, opts = _options(args)
    env = dict(base)
    lib = str(engine.library_path())
    if any(c in lib for c in " :"):
        raise UfenceError(f"engine path {lib!r} contains a space or ':' and cannot go in LD_PRELOAD")
    env["LD_PRELOAD"] = f"{lib}:{base['LD_PRELOAD']}" if base.get("LD_PRELOAD") else lib
    env["UFENCE_OPTIONS"] = ":".join(f"{k}={v}" for k, v in opts.items())
    if args.report_dir is not None:
        if not args.report_dir:
            raise UsageError("--report-dir: empty path")
        # absolute, so a program that changes directory still writes there
        env["UFENCE_REPORT_DIR"] = str(Path(args.report_dir).expanduser().absolute())
    pm = args.python_malloc
    if pm is None:
        pm = mode == "full" and "PYTHONMALLOC" not in base
    if pm:
        # set for every program (a shell script may start Python), said only where it is Python
        env["PYTHONMALLOC"] = "malloc"
        if args.python_malloc is None and _is_python(next(iter(_argv(args)), ""), env):
            print("ufence: PYTHONMALLOC=malloc (Python objects go through malloc and can be guarded; "
                  "--no-python-malloc to keep pymalloc)", file=sys.stderr)
    return env


def _argv(args: argparse.Namespace) -> list[str]:
    """CMD ARGS, without the '--' that separates them from ufence's options."""
    cmd = list(args.cmd)
    return cmd[1:] if cmd and cmd[0] == "--" else cmd


def _is_python(cmd: str, env: dict[str, str]) -> bool:
    """CMD is a Python interpreter, or a script whose #! line names one."""
    path = shutil.which(cmd, path=env.get("PATH")) if cmd else None
    if not path:
        return False
    if os.path.basename(os.path.realpath(path)).startswith(("python", "pypy")):
        return True
    try:
        with open(path, "rb") as f:
            first = f.readline(256)
    except OSError:
        return False
    return first.startswith(b"#!") and b"python" in first


def run(args: argparse.Namespace) -> int:
    cmd = _argv(args)
    if not cmd:
        raise UsageError("no command given: ufence run [OPTIONS] -- CMD ARGS...")
    env = build_env(args, dict(os.environ))
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execvpe(cmd[0], cmd, env)
    except FileNotFoundError:
        raise UfenceError(f"{cmd[0]}: command not found", exit_code=127) from None
    except PermissionError:
        raise UfenceError(f"{cmd[0]}: permission denied", exit_code=126) from None
    except OSError as e:
        raise UfenceError(f"{cmd[0]}: cannot execute: {e.strerror}", exit_code=126) from None
    return 0  # not reached
