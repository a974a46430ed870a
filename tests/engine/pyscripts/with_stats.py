"""Run a script (argv[1]), then print this process's engine counters, read through ufence's own backend.

Proves a Python workload really ran under the engine with its objects
guarded, not merely that it exited 0.
"""

from __future__ import annotations

import os
import runpy
import sys

print("PYTHONMALLOC=" + os.environ.get("PYTHONMALLOC", ""))
script = sys.argv[1]
sys.argv = sys.argv[1:]
runpy.run_path(script, run_name="__main__")

from ufence.backends import open_target  # noqa: E402 - after the workload, so it does not shape it

counters = open_target(str(os.getpid())).stats().counters
print(" ".join(f"{k}={counters.get(k, 0)}" for k in ("total_allocations", "total_frees", "skipped_capacity",
                                                      "pool_slots", "total_bugs", "reports_deduplicated")))
