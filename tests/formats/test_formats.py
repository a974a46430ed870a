"""Every leak output format: structure, escaping, and totals equal to the leak totals."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from profile_check import check_pprof, leaf_function
from synthetic_leaks import BUILD_ID, PROG, WEIRD, expected_totals

from ufence.analysis.leaks import LeakReport
from ufence.errors import UfenceError
from ufence.formats import flamegraph, folded, json_out, leaks_text, pprof, prometheus, speedscope
from ufence.formats.protowire import Message, varint


def test_varint_matches_the_protobuf_spec() -> None:
    assert varint(0) == b"\x00"
    assert varint(1) == b"\x01"
    assert varint(300) == b"\xac\x02"
    assert varint(-1) == b"\xff" * 9 + b"\x01"  # int64 -1: ten bytes
    assert bytes(Message().num(1, 150)) == b"\x08\x96\x01"  # the spec's example
    assert bytes(Message().text(2, "testing")) == b"\x12\x07testing"


def test_pprof_parses_with_the_official_schema(report: LeakReport) -> None:
    count, nbytes = expected_totals()
    prof = check_pprof(pprof.render(report, [{"path": PROG, "start": 0x555500000000, "end": 0x555500010000,
                                              "base": 0x555500000000, "build_id": BUILD_ID}]), count, nbytes)
    st = prof.string_table
    # locations are leaf first: every user-space sample starts in malloc
    leaves = sorted(leaf_function(prof, s) for s in prof.sample)
    assert leaves == ["kmalloc_trace", "malloc", "malloc"]
    app = next(m for m in prof.mapping if st[m.filename] == PROG)
    assert st[app.build_id] == BUILD_ID
    assert (app.memory_start, app.memory_limit) == (0x555500000000, 0x555500010000)
    # the inlined frame: one location, two lines, the caller (site_b) last
    fname = {f.id: st[f.name] for f in prof.function}
    inl = [loc for loc in prof.location if len(loc.line) == 2]
    assert len(inl) == 1 and [fname[ln.function_id] for ln in inl[0].line] == ["helper", "site_b"]
    assert [ln.line for ln in inl[0].line] == [20, 30]
    assert any(fname[i] == WEIRD for i in fname)
    assert prof.period == 4 and prof.time_nanos == 1_700_000_000 * 10**9
    assert any("estimate" in st[c] for c in prof.comment)


def test_pprof_is_reproducible(report: LeakReport) -> None:
    assert pprof.render(report) == pprof.render(report)


def test_folded_lines_and_totals(report: LeakReport) -> None:
    count, nbytes = expected_totals()
    lines = folded.lines(report)
    for line in lines:
        assert re.fullmatch(r"[^\n]+ \d+", line)
    assert sum(int(x.rsplit(" ", 1)[1]) for x in lines) == count
    assert sum(int(x.rsplit(" ", 1)[1]) for x in folded.lines(report, "bytes")) == nbytes
    assert "main;site_a;malloc 120" in lines  # root first, leaf last, estimated (30 x 4)
    assert "main;site_b;helper;malloc 40" in lines  # inlined caller between its frame and the real caller
    weird = next(x for x in lines if "kmalloc_trace" in x)
    assert weird.count(";") == 2  # the ';' inside the name was replaced


def test_speedscope_structure_and_totals(report: LeakReport) -> None:
    count, nbytes = expected_totals()
    d = json.loads(speedscope.render(report))
    assert d["$schema"] == "https://www.speedscope.app/file-format-schema.json"
    frames = d["shared"]["frames"]
    assert all("name" in f for f in frames)
    by_unit = {p["unit"]: p for p in d["profiles"]}
    assert set(by_unit) == {"bytes", "none"}
    for unit, total in (("bytes", nbytes), ("none", count)):
        p = by_unit[unit]
        assert p["type"] == "sampled" and p["startValue"] == 0
        assert len(p["samples"]) == len(p["weights"]) == 3
        assert sum(p["weights"]) == p["endValue"] == total
        for stack in p["samples"]:
            assert all(0 <= i < len(frames) for i in stack)
    stacks = [[frames[i]["name"] for i in s] for s in by_unit["none"]["samples"]]
    assert ["main", "site_a", "malloc"] in stacks  # root first
    assert len({json.dumps(f, sort_keys=True) for f in frames}) == len(frames)  # shared table has no duplicates


def test_flamegraph_svg_is_well_formed_with_frame_names(report: LeakReport) -> None:
    svg = flamegraph.render(report)
    root = ET.fromstring(svg)
    ns = "{http://www.w3.org/2000/svg}"
    assert root.tag == f"{ns}svg"
    titles = [t.text or "" for t in root.iter(f"{ns}title")]
    for name in ("main", "site_a", "site_b", "helper", "malloc", WEIRD):
        assert any(t.startswith(name + " — ") for t in titles), name
    rects = root.findall(f".//{ns}g/{ns}rect")
    widths = {t.text.split(" — ")[0]: float(r.get("width", 0))
              for g in root.iter(f"{ns}g") for t in g.findall(f"{ns}title") for r in g.findall(f"{ns}rect")
              if t.text}
    assert rects and widths["all"] == pytest.approx(flamegraph.WIDTH - 2 * flamegraph.PAD)
    # bytes: site_b (10 x 200 B) is wider than site_a (30 x 24 B)
    assert widths["site_b"] > widths["site_a"]
    by_count = ET.fromstring(flamegraph.render(report, weight="count"))
    w2 = {t.text.split(" — ")[0]: float(r.get("width", 0))
          for g in by_count.iter(f"{ns}g") for t in g.findall(f"{ns}title") for r in g.findall(f"{ns}rect")
          if t.text}
    assert w2["site_a"] > w2["site_b"]


_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_]\w*="(?:[^"\\\n]|\\[\\"n])*",?)*\})? (\S+)$')


def parse_prometheus(text: str) -> dict[str, list[tuple[str, float]]]:
    """Line-by-line parse of the text exposition; asserts HELP/TYPE come first and no timestamps."""
    declared: dict[str, str] = {}
    helped: set[str] = set()
    samples: dict[str, list[tuple[str, float]]] = {}
    assert text.endswith("\n")
    for line in text.splitlines():
        if line.startswith("# HELP "):
            helped.add(line.split()[2])
            continue
        if line.startswith("# TYPE "):
            _, _, name, typ = line.split(" ", 3)
            assert typ in ("counter", "gauge") and name in helped and name not in declared
            declared[name] = typ
            continue
        m = _SAMPLE.match(line)
        assert m, f"bad sample line: {line!r}"
        name = m.group(1)
        assert name.startswith("ufence_") and name in declared, name
        if declared[name] == "counter":
            assert name.endswith("_total")
        samples.setdefault(name, []).append((m.group(2) or "", float(m.group(3))))
    return samples


def test_prometheus_exposition_parses(report: LeakReport) -> None:
    s = parse_prometheus(prometheus.render(report, report_stats()).decode())
    assert s["ufence_allocations_total"][0][1] == 100
    assert s["ufence_currently_allocated"][0][1] == 45
    assert s["ufence_sampling_factor"][0][1] == 4
    objs = s["ufence_leak_group_objects"]
    assert sum(v for _, v in objs) == 45
    assert sum(v for _, v in s["ufence_leak_group_estimated_objects"]) == expected_totals()[0]
    weird = next(lab for lab, _ in objs if "kmalloc" not in lab and "odd" in lab)
    assert 'site="odd\\"name\\\\with;semi<&>"' in weird
    assert all('target="4242"' in lab for lab, _ in objs)


def report_stats():  # type: ignore[no-untyped-def]
    from ufence.model import Stats

    return Stats(source="process", enabled=True, counters={"currently_allocated": 45, "total_allocations": 100})


def test_write_atomic_replaces_and_leaves_no_temp(tmp_path: Path) -> None:
    out = tmp_path / "ufence.prom"
    out.write_text("old\n")
    prometheus.write_atomic(out, b"new\n")
    assert out.read_text() == "new\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ufence.prom"]
    assert (out.stat().st_mode & 0o777) == 0o644
    with pytest.raises(UfenceError, match="cannot write"):
        prometheus.write_atomic(tmp_path / "missing-dir" / "x.prom", b"x")


def test_json_schema_keys(report: LeakReport) -> None:
    d = json.loads(json_out.render(report))
    assert d["schema"] == "ufence.leaks/1"
    assert set(d) >= {"target", "source", "taken_at", "min_age", "sort", "sampling", "totals", "groups", "growth"}
    assert d["sampling"] == {"mode": "count", "sample_rate": 4, "sample_interval": 0, "estimate": "estimated",
                             "factor": 4.0, "note": d["sampling"]["note"], "caveats": []}
    assert d["totals"]["count"] == 45 and d["totals"]["est_count"] == 180
    g0 = d["groups"][0]
    assert g0["name"] == "site_a" and g0["count"] == 30 and g0["est_count"] == 120 and g0["rank_count"] == 1
    assert [b["count"] for b in g0["age"]["histogram"]] == [0, 5, 25, 0, 0, 0]
    assert g0["age"]["min"] == 5.0 and g0["age"]["max"] == 34.0
    assert g0["frames"][1]["function"] == "site_a"


def test_text_table(report: LeakReport) -> None:
    t = leaks_text.render(report).decode()
    assert "count sampling" in t and "sample_rate=4" in t
    assert re.search(r"^\s+1\s+120\s+2880\s+30\s+19\.5s\s+34\.0s\s+site_a$", t, re.M), t
    assert "site_a app.c:10 [app]" in t
    assert "\n      malloc" not in t  # allocator frames are not shown as the program's code
