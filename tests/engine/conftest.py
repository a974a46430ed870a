"""Fixtures of the engine tests: build the C programs in progs/, run them under ``ufence run``."""

from __future__ import annotations

import itertools
import resource
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:  # enginelib imports ufence, which the root conftest puts on sys.path at session start
    from enginelib import Run, RunFn

HERE = Path(__file__).resolve().parent
PROGS = HERE / "progs"
INCLUDE = HERE.parent.parent / "engine" / "include"



# --on-bug=abort kills test programs on purpose: no core files in the tree (inherited by every child)
_, _hard = resource.getrlimit(resource.RLIMIT_CORE)
resource.setrlimit(resource.RLIMIT_CORE, (0, _hard))


@pytest.fixture(scope="session")
def prog(cc: Callable[..., Path]) -> Callable[..., Path]:
    """``prog("kunit.c")`` -> binary built from progs/ with the engine's headers."""

    def build(name: str, *flags: str, out: str | None = None) -> Path:
        src = PROGS / name
        cxx = src.suffix in (".cc", ".cpp")
        return cc(src, f"-I{INCLUDE}", f"-I{PROGS}", *flags, cxx=cxx, name=out or src.stem)

    return build


@pytest.fixture
def run_ufence(ufence: Callable[..., subprocess.CompletedProcess[str]], tmp_path: Path) -> RunFn:
    """``run_ufence(cmd, *ufence_run_args)`` -> Run, with its own run and report directory per call."""
    from enginelib import Run, load_json, parse_stdout, split_reports

    from ufence.settings import table

    names = {s.index: s.name for s in table()}
    counter = itertools.count()
    rundir = tmp_path / "run"
    rundir.mkdir(mode=0o700)

    def run(cmd: Sequence[str | Path], *args: str, env: dict[str, str] | None = None,
            timeout: float = 60, report_dir: Path | None = None) -> Run:
        rd = report_dir or tmp_path / f"reports{next(counter)}"
        full_env = {"UFENCE_RUN_DIR": str(rundir)}
        full_env.update(env or {})
        proc = ufence("run", "--report-dir", str(rd), *args, "--", *map(str, cmd),
                      timeout=timeout, env=full_env)
        text, outside = split_reports(proc.stderr)
        reports, paths = load_json(rd)
        info, settings = parse_stdout(proc.stdout)
        return Run(proc=proc, report_dir=rd, text=text, outside=outside, json=reports, json_paths=paths,
                   info=info, settings={names.get(i, str(i)): v for i, v in settings.items()})

    return run
