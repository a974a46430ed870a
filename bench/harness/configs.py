"""The configurations every workload is run under.

ufence is loaded directly with LD_PRELOAD + UFENCE_OPTIONS (not through
`python -m ufence run`) so the timed process is exactly the workload: no
Python launcher start-up inside the measurement, and the options are spelled
out in the results. The launcher builds the same two variables (docs/design.md
"Launch contract").
"""

from __future__ import annotations

import glob
import os
import shutil
from dataclasses import dataclass, field

EFENCE = "/usr/lib/libefence.so"
DUMA = "/usr/lib/libduma.so"
SCUDO_GLOB = "/usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.scudo_standalone-x86_64.so"
GWP_SLOTS = 4095  # same as ufence's default num_objects: a like-for-like pool


def scudo_path() -> str | None:
    """The newest Debian libclang-rt Scudo (GWP-ASan Recoverable needs LLVM 16+)."""
    found = sorted(glob.glob(SCUDO_GLOB), key=lambda p: int(p.split("llvm-")[1].split("/")[0]))
    return found[-1] if found else None


@dataclass(frozen=True)
class Config:
    name: str
    kind: str  # "base" | "ufence" | "peer"
    what: str  # one line for the tables
    options: str = ""  # UFENCE_OPTIONS (ufence kinds); full mode adds the case's num_objects, if it has one
    preload: str = ""  # peer library
    env: dict[str, str] = field(default_factory=dict)
    wrapper: tuple[str, ...] = ()  # e.g. valgrind

    def environment(self, engine: str | None, pool: int) -> dict[str, str]:
        """Variables to add to the workload's (server's) environment."""
        env = dict(self.env)
        if self.kind == "ufence":
            if not engine:
                raise ValueError("no engine")
            env["LD_PRELOAD"] = engine
            opts = self.options
            if pool and "sample_interval=-1" in opts:
                opts += f":num_objects={pool}"
            env["UFENCE_OPTIONS"] = opts
        elif self.preload:
            env["LD_PRELOAD"] = self.preload
        return env

    def describe(self, engine: str | None, pool: int) -> str:
        """The exact settings, as written to the results."""
        env = self.environment(engine or "libufence.so", pool) if self.kind != "base" else {}
        parts = [f"{k}={v}" for k, v in sorted(env.items())]
        if self.wrapper:
            parts.append(" ".join(self.wrapper))
        return " ".join(parts) or "(nothing)"


def all_configs() -> list[Config]:
    scudo = scudo_path() or ""
    gwp = "GWP_ASAN_SampleRate={n}:GWP_ASAN_MaxSimultaneousAllocations=" + f"{GWP_SLOTS}:GWP_ASAN_Recoverable=1"
    return [
        Config("none", "base", "no engine (glibc malloc; jemalloc for redis)"),
        Config("ufence-off", "ufence", "ufence loaded, sampling off", "sample_interval=0"),
        Config("ufence-100ms", "ufence", "ufence, one sample every 100 ms", "sample_interval=100"),
        Config("ufence-10ms", "ufence", "ufence, one sample every 10 ms", "sample_interval=10"),
        Config("ufence-1ms", "ufence", "ufence, one sample every 1 ms", "sample_interval=1"),
        Config("ufence-1in1000", "ufence", "ufence, 1 in 1000 allocations", "sample_rate=1000"),
        Config("ufence-1in100", "ufence", "ufence, 1 in 100 allocations", "sample_rate=100"),
        Config(
            "ufence-full",
            "ufence",
            "ufence full mode, the default guard here: guard regions + pages recycled by UFFDIO_MOVE (guard=uffd)",
            "sample_interval=-1:guard=uffd",
        ),
        Config(
            "ufence-full-page",
            "ufence",
            "ufence full mode, guard=uffd, the whole page's canary checked at free (canary=page) instead of the "
            "cache lines around the object",
            "sample_interval=-1:guard=uffd:canary=page",
        ),
        Config(
            "ufence-full-batch",
            "ufence",
            "ufence full mode, guard=uffd, freed pages revoked 64 at a time (revoke_batch=64: one TLB flush per "
            "64 frees; use-after-free writes caught at revocation, reads in the window missed)",
            "sample_interval=-1:guard=uffd:revoke_batch=64",
        ),
        Config(
            "ufence-full-madvise",
            "ufence",
            "ufence full mode, guard regions only (MADV_GUARD_INSTALL, no userfaultfd)",
            "sample_interval=-1:guard=madvise",
        ),
        Config(
            "ufence-full-mprotect",
            "ufence",
            "ufence full mode, mprotect fallback",
            "sample_interval=-1:guard=mprotect",
        ),
        Config(
            "efence",
            "peer",
            "Electric Fence 2.2 (every allocation)",
            preload=EFENCE,
            env={"EF_ALLOW_MALLOC_0": "1"},
        ),
        Config("duma", "peer", "DUMA 2.5 (every allocation)", preload=DUMA, env={"DUMA_SHOW_ALLOC": "0"}),
        Config(
            "scudo",
            "peer",
            "Scudo allocator, GWP-ASan disabled",
            preload=scudo,
            env={"SCUDO_OPTIONS": "GWP_ASAN_Enabled=false"},
        ),
        Config(
            "scudo-gwp-1000",
            "peer",
            "Scudo + GWP-ASan, 1 in 1000",
            preload=scudo,
            env={"SCUDO_OPTIONS": gwp.format(n=1000)},
        ),
        Config(
            "scudo-gwp-100",
            "peer",
            "Scudo + GWP-ASan, 1 in 100",
            preload=scudo,
            env={"SCUDO_OPTIONS": gwp.format(n=100)},
        ),
        Config(
            "valgrind",
            "peer",
            "valgrind memcheck",
            wrapper=("valgrind", "--tool=memcheck", "-q", "--error-exitcode=99"),
        ),
    ]


def available(cfg: Config, engine: str | None) -> str | None:
    """None if the configuration can run here, else why not."""
    if cfg.kind == "ufence" and not engine:
        return "engine not built"
    if cfg.kind == "peer" and cfg.wrapper and not shutil.which(cfg.wrapper[0]):
        return f"{cfg.wrapper[0]} not installed"
    if cfg.kind == "peer" and not cfg.wrapper and not (cfg.preload and os.path.exists(cfg.preload)):
        return f"{cfg.preload or 'library'} not installed"
    return None


# valgrind runs only the small microbenchmark case (it finishes there).
NO_VALGRIND = tuple(c.name for c in all_configs() if c.name != "valgrind")
