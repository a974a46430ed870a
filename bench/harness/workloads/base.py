"""The shape of a workload: cases, metrics, one measured run."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from harness.configs import Config
from harness.context import Context

# Statuses. "hung" = the measurement finished but the server did not exit
# after SIGTERM (its numbers are kept and it is repeated). "died", "crashed"
# and "failed" with expected=True are documented limits of a peer (Electric
# Fence / DUMA at ~32,000 live objects); anything else not "ok" fails quick mode.
OK = "ok"
HUNG = "hung"
MEASURED = (OK, HUNG)  # statuses whose metrics count


@dataclass
class Metric:
    name: str
    unit: str
    higher_is_better: bool
    main: bool = False  # the one charted and compared against "none"


@dataclass
class Case:
    name: str
    what: str
    params: dict[str, Any] = field(default_factory=dict)
    # ufence num_objects for full mode; 0 = the engine's default, as `ufence run --mode full` gives
    # (4095 slots, doubled while every one is live): the pool follows the live set
    pool: int = 0
    configs: tuple[str, ...] | None = None  # None = every configuration
    reps: int = 0  # cap on repetitions (0 = the run's --reps): the 1M-object case is long


@dataclass
class Outcome:
    status: str  # ok | died | crashed | timeout | false-bug | failed
    metrics: dict[str, float] = field(default_factory=dict)
    message: str = ""
    expected: bool = False  # a documented limit of a peer, not a harness failure
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. ufence stats


class Workload:
    name = ""
    what = ""
    metrics: list[Metric] = []

    def cases(self, quick: bool) -> list[Case]:
        raise NotImplementedError

    def missing(self) -> str | None:
        """None if the tools are installed, else what is missing."""
        return None

    def command(self, case: Case) -> str:
        """The workload's command line, for the report."""
        return ""

    def setup(self, ctx: Context) -> None:
        pass

    def teardown(self, ctx: Context) -> None:
        pass

    def run_once(self, ctx: Context, cfg: Config, case: Case) -> Outcome:
        raise NotImplementedError


def classify(rc: int | None, timed_out: bool) -> str:
    if timed_out:
        return "timeout"
    if rc is not None and rc < 0:
        return "crashed"
    return "failed"


def tail(text: str, n: int = 2) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return " | ".join(lines[-n:])[:300]
