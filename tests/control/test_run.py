"""`ufence run`: the launch contract (environment, exec, exit codes, errors)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from controllib import one_line_error, ufence_argv

from ufence.engine import library_path


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    e = dict(os.environ, **(env or {}))
    return subprocess.run(ufence_argv("run", *args), capture_output=True, text=True, timeout=60, env=e)


def _env_of(*flags: str, env: dict[str, str] | None = None) -> dict[str, str]:
    """The environment the program sees: run a tiny program that prints it."""
    r = _run(*flags, "--", sys.executable, "-c", "import os,json;print(json.dumps(dict(os.environ)))", env=env)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_default_is_sample_100ms() -> None:
    e = _env_of()
    assert e["LD_PRELOAD"].split(":")[0] == str(library_path())
    assert e["UFENCE_OPTIONS"] == "sample_interval=100"
    assert "PYTHONMALLOC" not in e or e["PYTHONMALLOC"] == os.environ.get("PYTHONMALLOC")


def test_flags_to_options(tmp_path: Path) -> None:
    e = _env_of("--mode", "sample", "--sample-rate", "1000", "--pool", "0x100", "--on-bug", "abort",
                "--guard", "mprotect", "--align", "precise", "--no-follow", "--report-dir", str(tmp_path / "r"),
                "--set", "page_allocs=off", "--set", "callers=libfoo.so,libbar.so", "--no-python-malloc",
                env={"LD_PRELOAD": "/lib/other.so"})
    opts = dict(kv.split("=", 1) for kv in e["UFENCE_OPTIONS"].split(":"))
    # --pool N is a fixed pool: full mode's growth ceiling is N too
    assert opts == {"sample_interval": "100", "sample_rate": "1000", "num_objects": "256", "max_objects": "256",
                    "fault": "abort",
                    "guard": "mprotect", "align": "precise", "follow_exec": "0", "page_allocs": "0",
                    "callers": "libfoo.so,libbar.so"}
    # --no-follow: the engine takes itself out of the environment CMD's children inherit
    assert str(library_path()) not in e.get("LD_PRELOAD", "")
    assert e["UFENCE_REPORT_DIR"] == str(tmp_path / "r")
    assert "PYTHONMALLOC" not in e


def test_preload_prepended() -> None:
    e = _env_of(env={"LD_PRELOAD": "/lib/x86_64-linux-gnu/libc.so.6"})
    assert e["LD_PRELOAD"] == f"{library_path()}:/lib/x86_64-linux-gnu/libc.so.6"


def test_full_mode_python_malloc() -> None:
    r = _run("--mode", "full", "--", sys.executable, "-c", "import os;print(os.environ.get('PYTHONMALLOC'))")
    assert r.stdout.strip().splitlines()[-1] == "malloc"
    assert "PYTHONMALLOC=malloc" in r.stderr
    r = _run("--mode", "full", "--", "sh", "-c", "echo $PYTHONMALLOC")
    assert r.stdout.strip().splitlines()[-1] == "malloc", "set for every program: a script may start Python"
    assert "PYTHONMALLOC" not in r.stderr, "said only where the program is Python"
    e = _env_of("--mode", "full", env={"PYTHONMALLOC": "pymalloc"})
    assert e["PYTHONMALLOC"] == "pymalloc", "the user's choice wins"
    e = _env_of("--mode", "full", "--no-python-malloc")
    assert e.get("PYTHONMALLOC") == os.environ.get("PYTHONMALLOC")
    e = _env_of("--python-malloc")
    assert e["PYTHONMALLOC"] == "malloc"
    assert _env_of("--mode", "off")["UFENCE_OPTIONS"] == "sample_interval=0"


def test_exec_keeps_pid_exit_code_and_signals() -> None:
    p = subprocess.Popen(ufence_argv("run", "--", "sh", "-c", "echo $$; exit 7"), stdout=subprocess.PIPE, text=True)
    out, _ = p.communicate(timeout=30)
    assert p.returncode == 7 and int(out.strip()) == p.pid, "CMD replaces ufence: same pid, its exit code"
    r = _run("--", "sh", "-c", "kill -USR1 $$")
    assert r.returncode == -10, "killed by its own signal, not wrapped"


@pytest.mark.parametrize(("args", "code", "text"), [
    (("--", "/nonexistent/prog"), 127, "command not found"),
    (("--", "no-such-command-ufence"), 127, "command not found"),
    (("--", "/etc"), 126, "/etc"),
    ((), 2, "no command"),
    (("--pool", "-1", "--", "true"), 1, "num_objects"),
    (("--pool", "many", "--", "true"), 1, "not an integer"),
    (("--sample-interval", "0", "--", "true"), 2, "--mode off"),
    (("--mode", "full", "--sample-rate", "5", "--", "true"), 2, "--mode sample"),
    (("--set", "bogus=1", "--", "true"), 1, "unknown setting"),
    (("--set", "noequals", "--", "true"), 1, "KEY=VALUE"),
    (("--set", "callers=a:b", "--", "true"), 1, "':'"),
    (("--mode", "fast", "--", "true"), 2, "invalid choice"),
    (("--report-dir", "", "--", "true"), 2, "empty"),
])
def test_bad_input(args: tuple[str, ...], code: int, text: str) -> None:
    r = _run(*args)
    assert r.returncode == code, r.stderr
    assert text in one_line_error(r)


def test_missing_engine(tmp_path: Path) -> None:
    r = _run("--", "true", env={"UFENCE_ENGINE": str(tmp_path / "nope.so")})
    assert "no such file" in one_line_error(r)


def test_pool_with_explicit_ceiling() -> None:
    """--pool N with --set max_objects=M: N slots to start, full mode grows them up to M."""
    e = _env_of("--mode", "full", "--pool", "1000", "--set", "max_objects=50000")
    opts = dict(kv.split("=", 1) for kv in e["UFENCE_OPTIONS"].split(":"))
    assert opts["num_objects"] == "1000" and opts["max_objects"] == "50000", opts
    assert "max_objects" not in _env_of("--mode", "full")["UFENCE_OPTIONS"], "no --pool: the engine's default ceiling"
