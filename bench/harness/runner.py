"""Run every case of a workload under every configuration, alternating.

Within a case the configurations run in turn (A B C ... A B C ...), the order
rotated by one each repetition so no configuration always runs first after a
server start or right after the slowest peer. A configuration that died,
crashed or timed out is not repeated for that case (its fate does not change
and a timed-out peer would eat the time budget).
"""

from __future__ import annotations

import statistics
import sys
import time
from typing import Any

from harness.configs import Config, available
from harness.context import Context
from harness.workloads.base import MEASURED, OK, Case, Outcome, Workload


def _summary(runs: list[Outcome]) -> dict[str, dict[str, float]]:
    keys = sorted({k for r in runs if r.status in MEASURED for k in r.metrics})
    out: dict[str, dict[str, float]] = {}
    for k in keys:
        vals = [r.metrics[k] for r in runs if r.status in MEASURED and k in r.metrics]
        if vals:
            out[k] = {"median": statistics.median(vals), "min": min(vals), "max": max(vals), "n": len(vals)}
    return out


def run_case(ctx: Context, wl: Workload, case: Case, configs: list[Config], reps: int) -> dict[str, Any]:
    names = [c.name for c in configs if case.configs is None or c.name in case.configs]
    cfgs = {c.name: c for c in configs}
    runs: dict[str, list[Outcome]] = {n: [] for n in names}
    skipped: dict[str, str] = {}
    for n in names:
        why = available(cfgs[n], ctx.engine)
        if why:
            skipped[n] = why
    live = [n for n in names if n not in skipped]
    order_log: list[str] = []
    reps = min(reps, case.reps or reps)
    for rep in range(reps):
        k = rep % len(live) if live else 0
        for n in live[k:] + live[:k]:
            if runs[n] and runs[n][-1].status not in MEASURED:
                continue
            t0 = time.monotonic()
            try:
                o = wl.run_once(ctx, cfgs[n], case)
            except Exception as e:  # one broken run must not lose the others
                o = Outcome("failed", message=f"harness: {type(e).__name__}: {e}")
            ctx.runs += 1
            order_log.append(n)
            runs[n].append(o)
            main = next((m.name for m in wl.metrics if m.main), "")
            shown = f"{o.metrics.get(main, 0):.4g}" if o.status in MEASURED else ""
            if o.status != OK:
                shown += f" {o.status}: {o.message[:120]}"
            print(f"  {wl.name}/{case.name} rep {rep + 1}/{reps} {n:<22} {shown}  ({time.monotonic() - t0:.1f} s)",
                  file=sys.stderr, flush=True)
    results: dict[str, Any] = {}
    for n in names:
        if n in skipped:
            results[n] = {"status": "skipped", "message": skipped[n], "expected": True, "runs": [], "summary": {}}
            continue
        rs = runs[n]
        bad = next((r for r in rs if r.status != OK), None)
        results[n] = {
            "status": bad.status if bad else OK,
            "message": bad.message if bad else "",
            "expected": bad.expected if bad else False,
            "runs": [{"status": r.status, "metrics": r.metrics, "message": r.message, **r.extra} for r in rs],
            "summary": _summary(rs),
        }
    return {"name": case.name, "what": case.what, "command": wl.command(case), "pool": case.pool,
            "order": order_log, "results": results}
