"""``ufence leaks`` on a real program under the real engine.

leaky.c leaks from leak_site_a (1 in 10 iterations, 24 B) and leak_site_b
(1 in 40, 200 B) among 4 allocate-and-free buffers per iteration; the truth
is what the program itself counted (its ready file says ``a=N b=M``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from leakyprog import LEAKY_C, Running

pytestmark = pytest.mark.slow


def truth(r: Running) -> dict[str, int]:
    return {k: int(v) for k, v in re.findall(r"(\w)=(\d+)", r.ready_text)}


def leaks_json(ufence: Callable[..., Any], *args: str) -> dict[str, Any]:
    p = ufence("leaks", *args, "--format", "json")
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def source_line(marker: str) -> int:
    """Line number of the first line of leaky.c containing ``marker``."""
    for i, line in enumerate(LEAKY_C.read_text().splitlines(), 1):
        if marker in line:
            return i
    raise AssertionError(marker)


def test_full_mode_ranks_the_two_sites_first_with_exact_counts(full_mode_leaky: Running,
                                                               ufence: Callable[..., Any]) -> None:
    t = truth(full_mode_leaky)
    assert t == {"a": 2000, "b": 500}
    d = leaks_json(ufence, str(full_mode_leaky.pid))
    assert d["sampling"]["mode"] == "full" and d["sampling"]["estimate"] == "exact"
    g = d["groups"]
    assert [x["name"] for x in g[:2]] == ["leak_site_a", "leak_site_b"]
    assert (g[0]["count"], g[0]["bytes"]) == (t["a"], t["a"] * 24)
    assert (g[1]["count"], g[1]["bytes"]) == (t["b"], t["b"] * 200)
    assert g[0]["est_count"] == t["a"] and g[1]["est_count"] == t["b"]
    # ranked by bytes, site b (100000 B) beats site a (48000 B)
    assert g[1]["rank_bytes"] == 1 and g[0]["rank_bytes"] == 2
    # the objects are older than the program's 1.5 s nap, not older than the run
    assert g[0]["age"]["min"] >= 1.0 and g[0]["age"]["p50"] >= g[0]["age"]["min"]
    d2 = leaks_json(ufence, str(full_mode_leaky.pid), "--sort", "bytes")
    assert d2["groups"][0]["name"] == "leak_site_b"


def test_symbolized_stacks_show_function_names_and_source_lines(full_mode_leaky: Running,
                                                                ufence: Callable[..., Any]) -> None:
    d = leaks_json(ufence, str(full_mode_leaky.pid))
    frames = {f.get("function"): f for f in d["groups"][0]["frames"]}
    a = frames["leak_site_a"]
    assert a["file"].endswith("leaky.c")
    assert a["line"] == source_line("char *p = malloc(SIZE_A);")
    assert "run_count" in frames and "main" in frames
    p = ufence("leaks", str(full_mode_leaky.pid))
    assert p.returncode == 0, p.stderr
    assert re.search(r"^\s+1\s+2000\s+48000\s+2000\s.*leak_site_a$", p.stdout, re.M), p.stdout
    assert f"leak_site_a {a['file']}:{a['line']}" in p.stdout
    assert "exact" in p.stdout and "full" in p.stdout


def test_min_age_hides_young_objects(full_mode_leaky: Running, ufence: Callable[..., Any]) -> None:
    d = leaks_json(ufence, str(full_mode_leaky.pid), "--min-age", "100000")
    assert d["groups"] == [] and d["totals"]["hidden_young"] >= 2500
    assert d["min_age"] == 100000


def test_count_sampling_estimates_within_25_percent(leaky: Path, launch: Callable[..., Running],
                                                    ufence: Callable[..., Any]) -> None:
    rate = 10
    r = launch(leaky, ["--mode", "sample", "--sample-rate", str(rate)], ["count", "READY", "100000"])
    t = truth(r)
    d = leaks_json(ufence, str(r.pid))
    s = d["sampling"]
    assert s["mode"] == "count" and s["sample_rate"] == rate and s["estimate"] == "estimated"
    assert s["factor"] == rate
    g = {x["name"]: x for x in d["groups"]}
    assert [x["name"] for x in d["groups"][:2]] == ["leak_site_a", "leak_site_b"]
    for site, size in (("a", 24), ("b", 200)):
        x = g[f"leak_site_{site}"]
        assert x["est_count"] == x["count"] * rate
        assert abs(x["est_count"] - t[site]) <= 0.25 * t[site], (site, x["est_count"], t[site])
        assert abs(x["est_bytes"] - t[site] * size) <= 0.25 * t[site] * size
    text = ufence("leaks", str(r.pid)).stdout
    assert "estimate" in text and f"sample_rate={rate}" in text and "est.count" in text


def test_time_sampling_says_the_estimate_is_unavailable(leaky: Path, launch: Callable[..., Running],
                                                        ufence: Callable[..., Any]) -> None:
    r = launch(leaky, ["--mode", "sample", "--sample-interval", "1"], ["count", "READY", "20000"])
    d = leaks_json(ufence, str(r.pid))
    s = d["sampling"]
    assert (s["mode"], s["sample_interval"]) == ("time", 1)
    if s["estimate"] == "unavailable":  # the engine's stats do not count every allocation it saw
        assert s["factor"] is None and all(g["est_count"] is None for g in d["groups"])
        assert "estimate unavailable" in ufence("leaks", str(r.pid)).stdout
    else:  # the engine counts allocations seen: the factor is measured, never guessed
        assert s["estimate"] == "estimated" and s["factor"] > 1


def test_growth_reports_only_the_growing_site(leaky: Path, launch: Callable[..., Running],
                                              ufence: Callable[..., Any]) -> None:
    r = launch(leaky, ["--mode", "full", "--pool", "20000"], ["grow", "READY"])
    time.sleep(1.5)  # let the cache's objects age past --min-age: from here on it is steady
    d = leaks_json(ufence, str(r.pid), "--watch", "1", "--samples", "6")
    gr = d["growth"]
    names = [x["name"] for x in gr["growing"]]
    assert names == ["grow_site"], gr
    g = gr["growing"][0]
    assert g["slope_count"] > 5 and g["slope_bytes"] == pytest.approx(g["slope_count"] * 48, rel=0.01)
    assert g["counts"] == sorted(g["counts"]) and g["counts"][-1] > g["counts"][0]
    # the plateau site is live and large, yet not a leak
    assert any(x["name"] == "cache_site" and x["count"] >= 100 for x in d["groups"])
    text = ufence("leaks", str(r.pid), "--watch", "0.5", "--samples", "4").stdout
    assert "grow_site" in text and "cache_site" not in text


def test_formats_agree_with_the_live_totals(full_mode_leaky: Running, ufence: Callable[..., Any],
                                            tmp_path: Path) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "formats"))
    from profile_check import check_pprof  # tests/formats/profile_check.py

    pid = str(full_mode_leaky.pid)
    d = leaks_json(ufence, pid)
    total_count = sum(x["count"] for x in d["groups"])
    total_bytes = sum(x["bytes"] for x in d["groups"])
    out = tmp_path / "heap.pb.gz"
    p = ufence("leaks", pid, "--format", "pprof", "-o", str(out))
    assert p.returncode == 0, p.stderr
    prof = check_pprof(out.read_bytes(), total_count, total_bytes)
    names = {prof.string_table[f.name] for f in prof.function}
    assert {"leak_site_a", "leak_site_b", "run_count", "main"} <= names
    assert any(prof.string_table[m.filename].endswith("/leaky") and m.build_id for m in prof.mapping)
    folded = ufence("leaks", pid, "--format", "folded").stdout.splitlines()
    assert sum(int(line.rsplit(" ", 1)[1]) for line in folded) == total_count
    assert any(line.endswith(";main;run_count;leak_site_a 2000") for line in folded), folded
    assert any(line.endswith(";main;run_count;leak_site_b 500") for line in folded), folded
    speed = json.loads(ufence("leaks", pid, "--format", "speedscope").stdout)
    assert [p["endValue"] for p in speed["profiles"]] == [total_bytes, total_count]
    svg = ufence("leaks", pid, "--format", "flamegraph", "-o", str(tmp_path / "leaks.svg"))
    assert svg.returncode == 0, svg.stderr
    text = (tmp_path / "leaks.svg").read_text()
    assert "<title>leak_site_a — " in text and "<title>leak_site_b — " in text
    prom = ufence("leaks", pid, "--format", "prometheus").stdout
    assert f'ufence_leak_group_objects{{target="{pid}",source="process",site="leak_site_a",rank="1"' in prom


@pytest.mark.skipif(shutil.which("go") is None, reason="go tool pprof not installed (apt-get install golang-go)")
@pytest.mark.parametrize("symbolize", [True, False])
def test_go_tool_pprof_loads_the_profile(full_mode_leaky: Running, ufence: Callable[..., Any], tmp_path: Path,
                                         symbolize: bool) -> None:
    out = tmp_path / "heap.pb.gz"
    extra = [] if symbolize else ["--no-symbolize"]
    p = ufence("leaks", str(full_mode_leaky.pid), "--format", "pprof", "-o", str(out), *extra)
    assert p.returncode == 0, p.stderr
    # unsymbolized: pprof itself symbolizes through the mapping (file name, build id, text segment)
    top = subprocess.run(["go", "tool", "pprof", "-top", "-lines", "-sample_index=inuse_objects", str(out)],
                         capture_output=True, text=True, timeout=120,
                         env={**os.environ, "HOME": str(tmp_path), "PPROF_TMPDIR": str(tmp_path)})
    assert top.returncode == 0, top.stderr
    rows = {m.group(2): int(m.group(1)) for m in re.finditer(r"^\s*(\d+)\s.*?%\s+(leak_site_[ab]) ", top.stdout, re.M)}
    assert rows == {"leak_site_a": 2000, "leak_site_b": 500}, top.stdout
    assert f"leaky.c:{source_line('char *p = malloc(SIZE_A);')}" in top.stdout


def test_saved_snapshot_gives_the_same_leaks(full_mode_leaky: Running, ufence: Callable[..., Any],
                                             tmp_path: Path) -> None:
    snap = tmp_path / "leaky.snap.json.gz"
    p = ufence("snapshot", str(full_mode_leaky.pid), "-o", str(snap))
    assert p.returncode == 0, p.stderr
    live = leaks_json(ufence, str(full_mode_leaky.pid))
    saved = leaks_json(ufence, str(snap))
    assert saved["target"] == str(full_mode_leaky.pid)
    pick = [(g["name"], g["count"], g["bytes"]) for g in saved["groups"][:2]]
    assert pick == [(g["name"], g["count"], g["bytes"]) for g in live["groups"][:2]]
    assert pick == [("leak_site_a", 2000, 48000), ("leak_site_b", 500, 100000)]
