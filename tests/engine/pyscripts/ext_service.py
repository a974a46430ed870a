"""A Python "service" whose C extension (argv[1]: the directory of ufbuggy.so) has two bugs.

It first builds a live set of many thousand Python objects, more than the engine's
default pool holds, as a real service would, then calls into the extension.
"""

from __future__ import annotations

import json
import sys

sys.path.insert(0, sys.argv[1])
import ufbuggy

cache = {f"customer-{i:07d}": {"id": i, "tags": [str(i)] * 3} for i in range(20000)}
print(f"live_set={len(json.dumps(cache))}")

names = [f"customer-{i:011d}" for i in range(100)]  # 20 characters each
first = ufbuggy.copy_name(names[0])
for n in names[1:]:
    ufbuggy.copy_name(n)
print(f"copy_buf={first:#x} copies={len(names)}", flush=True)

stale = ufbuggy.remember("session-token")
ufbuggy.forget()
print(f"stale_buf={stale:#x}", flush=True)
ufbuggy.recall()
print("done", flush=True)
