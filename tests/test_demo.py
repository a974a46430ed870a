"""The README's first command: ``ufence demo`` catches both planted bugs."""

from __future__ import annotations

import json
from pathlib import Path


def test_demo_reports_overflow_and_use_after_free(ufence, tmp_path: Path) -> None:
    r = ufence("demo", "--keep", str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert "BUG: UFENCE: use-after-free read in audit" in r.stderr
    # the off-by-one label write: caught at free (cancelled order) or at exit (the others)
    assert "BUG: UFENCE: memory corruption in cancel_order" in r.stderr
    reports = [json.loads(p.read_text()) for p in sorted((tmp_path / "reports").glob("*.json"))]
    bugs = {rep["bug"] for rep in reports}
    assert {"use-after-free", "memory corruption"} <= bugs
    uaf = next(rep for rep in reports if rep["bug"] == "use-after-free")
    names = [f.get("function") for f in uaf["object"]["free"]["frames"]]
    assert "cancel_order" in names
    alloc = [f.get("function") for f in uaf["object"]["alloc"]["frames"]]
    assert "new_order" in alloc
