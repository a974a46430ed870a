"""Shared test fixtures: run the real CLI, build C programs, find the engine.

Tests run against the installed package (``pip install .``) or from the
source tree. From the tree, when no engine is installed and UFENCE_ENGINE is
unset, the engine is built once with CMake into build/pytest-engine.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _ensure_engine() -> None:
    from ufence.engine import library_path
    from ufence.errors import UfenceError

    try:
        library_path()
        return
    except UfenceError:
        if os.environ.get("UFENCE_ENGINE"):
            raise
    build = REPO / "build" / "pytest-engine"
    subprocess.run(["cmake", "-S", str(REPO), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release"],
                   check=True, stdout=subprocess.DEVNULL)
    subprocess.run(["cmake", "--build", str(build)], check=True, stdout=subprocess.DEVNULL)
    os.environ["UFENCE_ENGINE"] = str(build / "libufence.so")


def pytest_sessionstart(session: pytest.Session) -> None:
    del session
    src = REPO / "src"
    try:
        import ufence  # noqa: F401
    except ImportError:
        sys.path.insert(0, str(src))
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(src), os.environ.get("PYTHONPATH")]))
    _ensure_engine()


def ufence_argv(*args: str) -> list[str]:
    """argv that runs the ufence CLI of the package under test."""
    return [sys.executable, "-m", "ufence", *args]


@pytest.fixture
def ufence() -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run ``ufence ARGS``; returns the CompletedProcess (text, captured). Never checks the exit code."""

    def run(*args: str, timeout: float = 120, env: dict[str, str] | None = None,
            input: str | None = None) -> subprocess.CompletedProcess[str]:
        full_env = dict(os.environ)
        if env:
            full_env.update(env)
        return subprocess.run(ufence_argv(*args), capture_output=True, text=True, timeout=timeout,
                              env=full_env, input=input)

    return run


@pytest.fixture(scope="session")
def build_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cbuild")


def compile_c(source: Path, out: Path, flags: Sequence[str] = (), cxx: bool = False) -> Path:
    """Compile a test program with debug info and frame pointers; returns the binary."""
    compiler = "g++" if cxx else "cc"
    cmd = [compiler, "-g", "-O0", "-fno-omit-frame-pointer", "-o", str(out), str(source), "-pthread", *flags]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    return out


@pytest.fixture(scope="session")
def cc(build_dir: Path) -> Callable[..., Path]:
    """``cc(path_to_source, *flags)`` -> compiled binary path (cached per session)."""
    cache: dict[tuple[str, tuple[str, ...]], Path] = {}

    def build(source: Path, *flags: str, cxx: bool = False, name: str | None = None) -> Path:
        key = (str(source), flags)
        if key not in cache:
            out = build_dir / (name or (Path(source).stem + ("-" + str(abs(hash(flags))) if flags else "")))
            cache[key] = compile_c(Path(source), out, flags, cxx=cxx)
        return cache[key]

    return build
