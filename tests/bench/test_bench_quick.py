"""bench/run --quick: every configuration runs the fast workloads without crashing or false reports."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run_quick(tmp_path: Path, only: str, timeout: float) -> Path:
    """bench/run --quick --only ONLY; the results directory, once it passed."""
    out = tmp_path / "out"
    env = dict(os.environ)
    # The harness builds the engine itself unless UFENCE_ENGINE points at one.
    env.setdefault("BENCH_BUILD_DIR", str(tmp_path / "build"))
    r = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run"), "--quick", "--only", only, "--out", str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert "bench: passed" in r.stderr
    return out


@pytest.mark.skipif(not shutil.which("gcc"), reason="needs a C compiler")
def test_quick_micro_hackbench(tmp_path: Path) -> None:
    out = run_quick(tmp_path, "micro,hackbench", 400)
    for name in ("micro", "hackbench"):
        doc = json.loads((out / f"{name}.json").read_text())
        assert doc["mode"] == "quick"
        results = [res for case in doc["cases"] for res in case["results"].values()]
        # The baseline and the full mode really ran and produced numbers.
        for case in doc["cases"]:
            for cfg in ("none", "ufence-full"):
                res = case["results"][cfg]
                assert res["status"] == "ok", (name, case["name"], cfg, res["message"])
                assert res["summary"], (name, case["name"], cfg)
        assert not [r for r in results if r["status"] not in ("ok", "skipped") and not r["expected"]]
    micro = json.loads((out / "micro.json").read_text())
    full = micro["cases"][0]["results"]["ufence-full"]["summary"]
    # full mode guards (nearly) every allocation of the microbenchmark
    assert full["guarded_pct"]["median"] > 50
    assert (out / "bench.md").read_text().startswith("# ufence benchmarks")
    assert (out / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.skipif(not shutil.which("gcc"), reason="needs a C compiler")
@pytest.mark.skipif(os.geteuid() != 0 and not (shutil.which("mariadbd") or os.path.exists("/usr/sbin/mariadbd")),
                    reason="needs root to install MariaDB, sysbench and redis (the harness apt-gets them)")
def test_quick_servers(tmp_path: Path) -> None:
    """The server workloads: every configuration starts mariadbd and redis-server, survives the
    client's load and shuts down cleanly, without a false report."""
    out = run_quick(tmp_path, "redis,sysbench", 900)
    for name, metric in (("redis", "rps"), ("sysbench", "tps")):
        doc = json.loads((out / f"{name}.json").read_text())
        for case in doc["cases"]:
            for cfg in ("none", "ufence-off", "ufence-100ms", "ufence-full"):
                res = case["results"][cfg]
                assert res["status"] == "ok", (name, case["name"], cfg, res["message"])
                assert res["summary"][metric]["median"] > 0, (name, case["name"], cfg)
            full = case["results"]["ufence-full"]["runs"][0]
            # full mode really guarded the server's allocations, and found nothing to report
            assert full["stats"]["total_allocations"] > 1000, (name, full["stats"])
            assert full["stats"]["total_bugs"] == 0, (name, full["stats"])
