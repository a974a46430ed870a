"""Fixtures for the leak tests: the leaky program running under the real engine."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from leakyprog import LEAKY_C, Running, launch_leaky, stop


@pytest.fixture(scope="session")
def leaky(cc: Callable[..., Path]) -> Path:
    return cc(LEAKY_C, "-Wall", "-Wextra", "-Werror", name="leaky")


@pytest.fixture
def launch(tmp_path: Path) -> Iterator[Callable[..., Running]]:
    """``launch(binary, run_args, prog_args_with_READY)``: READY in prog_args is replaced by a ready-file path."""
    started: list[Running] = []

    def start(binary: Path, run_args: list[str], prog_args: list[str]) -> Running:
        ready = tmp_path / f"ready-{len(started)}"
        args = [str(ready) if a == "READY" else a for a in prog_args]
        r = launch_leaky(binary, run_args, args, ready)
        started.append(r)
        return r

    yield start
    for r in started:
        stop(r)


@pytest.fixture(scope="module")
def full_mode_leaky(leaky: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    """leaky count 20000 in full mode: exactly 2000 leaks from site a, 500 from site b."""
    ready = tmp_path_factory.mktemp("fullleaky") / "ready"
    r = launch_leaky(leaky, ["--mode", "full", "--pool", "20000"], ["count", str(ready), "20000"], ready)
    try:
        yield r
    finally:
        stop(r)

