"""How many real allocations one guarded object stands for.

- full mode (``sample_interval=-1``): every eligible allocation is guarded;
  counts are exact (factor 1), unless the pool overflowed.
- count sampling (``sample_rate=N``, as GWP-ASan): each allocation is guarded
  with probability 1/N, so each guarded object stands for N (factor N).
- time sampling (``sample_interval=MS``, as KFENCE): the guarded fraction
  depends on the allocation rate, so the only honest factor is measured:
  allocations the engine saw / allocations it guarded, when the stats carry
  both. Without them there is no estimate and we say so instead of guessing.

Allocations the engine wanted but could not guard (pool full, skip-covered)
make any estimate a lower bound; the note says that too.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ufence.model import Snapshot, Stats

# Stats keys (counters or extra) under which a backend may report every
# allocation it saw, guarded or not. The first present one is used.
SEEN_KEYS = ("seen_allocations", "total_seen_allocations", "engine_allocations", "all_allocations")


@dataclass
class Estimate:
    mode: str  # "full" | "count" | "time" | "off" | "unknown"
    factor: float | None  # None: no estimate possible
    exact: bool
    sample_rate: int | None = None
    sample_interval: int | None = None
    note: str = ""
    caveats: list[str] = field(default_factory=list)

    @property
    def kind(self) -> str:
        """``exact`` | ``estimated`` | ``unavailable`` (for JSON and metrics)."""
        if self.factor is None:
            return "unavailable"
        return "exact" if self.exact else "estimated"

    def describe(self) -> str:
        """One line for the text output."""
        return "; ".join([self.note, *self.caveats])


def _int(v: object) -> int | None:
    if v is None or isinstance(v, bool):
        return None
    try:
        return int(str(v), 0)
    except ValueError:
        return None


def _seen(stats: Stats | None) -> int | None:
    if stats is None:
        return None
    for k in SEEN_KEYS:
        v = _int(stats.counters.get(k))
        if v is None:
            v = _int(stats.extra.get(k))
        if v is not None:
            return v
    return None


def estimate_for(snapshot: Snapshot) -> Estimate:
    s = dict(snapshot.settings)
    s.update({k: v for k, v in snapshot.sampling.items() if v is not None})
    mode = str(s.get("mode") or "")
    rate = _int(s.get("sample_rate"))
    interval = _int(s.get("sample_interval"))
    if interval is None:
        interval = _int(s.get("interval_ms"))  # the kernel backend's name for it
    stats = snapshot.stats
    est = _base_estimate(mode, rate, interval, stats)
    if stats is not None:
        cap = stats.counters.get("skipped_capacity") or 0
        cov = stats.counters.get("skipped_covered") or 0
        if cap:
            est.caveats.append(f"{cap} allocations were not guarded because the pool was full: "
                               "counts are lower bounds (raise num_objects)")
            est.exact = False
        if cov:
            est.caveats.append(f"{cov} allocations were skipped by skip_covered_thresh: counts are lower bounds")
            est.exact = False
    return est


def _base_estimate(mode: str, rate: int | None, interval: int | None, stats: Stats | None) -> Estimate:
    if mode == "full" or interval == -1:
        return Estimate("full", 1.0, True, rate, -1,
                        "full mode: every eligible allocation is guarded, counts are exact")
    if rate:
        return Estimate("count", float(rate), False, rate, interval,
                        f"count sampling, 1 in {rate} allocations guarded: counts and bytes are estimates "
                        f"(guarded x {rate})")
    if interval and interval > 0:
        seen = _seen(stats)
        guarded = stats.counters.get("total_allocations") if stats else None
        if seen and guarded:
            f = seen / guarded
            return Estimate("time", f, False, rate, interval,
                            f"time sampling every {interval} ms: estimates scale by allocations seen / guarded "
                            f"= {seen}/{guarded} = {f:.1f}")
        return Estimate("time", None, False, rate, interval,
                        f"time sampling every {interval} ms: estimate unavailable (the stats do not count "
                        "all allocations), counts are of guarded objects only")
    if mode == "off" or interval == 0:
        return Estimate("off", None, False, rate, interval,
                        "sampling is off: only objects guarded while it was on are shown, no estimate")
    return Estimate("unknown", None, False, rate, interval,
                    "sampling settings unknown: counts are of guarded objects only, no estimate")
