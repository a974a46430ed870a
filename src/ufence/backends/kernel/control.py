"""``ufence kernel enable|disable``: the seed's procedures, done right.

Full mode (Anolis only): switch off, resize ``num_objects`` to whole 1 GiB
areas, switch to ``-1``, then read back to verify. Sampling mode: write
the interval (through 0 when leaving full mode). Each step says why.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ufence.backends.kernel import KernelBackend, pool
from ufence.backends.kernel.sysfs import read_text
from ufence.errors import UfenceError


@dataclass
class Step:
    key: str
    path: Path
    value: str
    why: str


def _cur(kb: KernelBackend) -> tuple[int, dict[str, str]]:
    params = kb.params()
    return int(params.get("sample_interval", "0") or 0), params


def plan_full(kb: KernelBackend, pool_size: int | None = None, objects: int | None = None) -> tuple[list[Step], str]:
    v = kb.require_built()
    if not v.anolis:
        raise UfenceError(
            f"full mode (sample_interval=-1, every allocation guarded) exists only on Anolis OS kernels; this is "
            f"{v.family()}. Closest upstream setting: ufence kernel enable --sample 1 (pool size is fixed by "
            "CONFIG_KFENCE_NUM_OBJECTS)")
    iv, params = _cur(kb)
    page = pool.PAGE_SIZE
    if objects is not None:
        if objects <= 0:
            raise UfenceError("--objects must be at least 1")
        want = objects
    elif pool_size is not None:
        want = pool.objects_for_pool(pool_size, page)
    else:
        want = max(int(params.get("num_objects", "0") or 0), pool.OBJECTS_PER_AREA)
    plan = pool.anolis_plan(want, enlarge_at_runtime=True, page_size=page)
    note = plan.describe()
    if objects is not None and plan.objects != objects:
        note += f" (Anolis rounds {objects} up to whole 1 GiB areas for full mode)"
    if pool_size is not None and plan.bytes != pool_size:
        note += f" (requested {pool_size} bytes; pools are whole 1 GiB areas)"
    if params.get("pool_mode") == "node":
        note += " on every NUMA node (pool_mode=node)"
    cur_n = int(params.get("num_objects", "0") or 0)
    if iv < 0 and cur_n == plan.objects:
        return [], f"already in full mode with {note}"
    steps: list[Step] = []
    pdir = kb.paths.params
    if iv != 0:
        steps.append(Step("sample_interval", pdir / "sample_interval", "0",
                          "switch off: Anolis resizes and changes sign only while disabled"))
    if cur_n != plan.objects:
        steps.append(Step("num_objects", pdir / "num_objects", str(plan.objects), f"resize: {note}"))
    if "pool_mode" in params and params["pool_mode"] not in ("global", "node"):
        raise UfenceError(f"pool_mode reads {params['pool_mode']!r}: expected global or node")
    steps.append(Step("sample_interval", pdir / "sample_interval", "-1",
                      "full mode: every eligible slab/page allocation goes to KFENCE"))
    return steps, note


def check_full(kb: KernelBackend, planned: int) -> str | None:
    """After enabling: the newer Anolis line rewrites num_objects to what it really
    allocated; say so when that is less than planned (memory was short)."""
    got = int(kb.params().get("num_objects", "0") or 0)
    if got < planned:
        return (f"warning: the kernel reports num_objects={got} after enabling, fewer than the {planned} planned: "
                "it could not reserve all 1 GiB areas (free memory or fragmentation)")
    return None


def plan_sample(kb: KernelBackend, ms: int) -> list[Step]:
    kb.require_built()
    if ms <= 0:
        raise UfenceError("--sample takes a positive interval in milliseconds (0 is 'ufence kernel disable')")
    iv, _ = _cur(kb)
    pdir = kb.paths.params
    steps = []
    if iv < 0:
        steps.append(Step("sample_interval", pdir / "sample_interval", "0",
                          "leave full mode first: Anolis refuses a direct switch from negative to positive"))
    if iv != ms:
        steps.append(Step("sample_interval", pdir / "sample_interval", str(ms),
                          f"sample one allocation every {ms} ms"))
    return steps


def plan_disable(kb: KernelBackend) -> list[Step]:
    kb.require_built()
    iv, _ = _cur(kb)
    if iv == 0:
        return []
    return [Step("sample_interval", kb.paths.params / "sample_interval", "0",
                 "0 disables KFENCE (Anolis also frees the unused pool memory)")]


def run(kb: KernelBackend, steps: list[Step], dry_run: bool) -> list[str]:
    """Execute steps one by one (each must succeed), then verify by reading back."""
    if dry_run:
        return [f"would write {s.value} > {s.path}   # {s.why}" for s in steps]
    out = []
    for s in steps:
        kb.apply([(s.key, s.path, s.value)])
        got = read_text(s.path, s.key).strip()
        out.append(f"wrote {s.value} > {s.path}   # {s.why}")
        if s.key == "num_objects":
            if int(got or 0) < int(s.value):
                raise UfenceError(f"the kernel kept num_objects={got} after writing {s.value}: "
                                  "it could not reserve that much memory (try a smaller --pool)")
        elif got != s.value:
            raise UfenceError(f"verify failed: {s.path} reads {got!r} after writing {s.value}")
    return out
