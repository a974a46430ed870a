"""docs/bench.md and docs/bench.png from the JSON of one run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harness import chart, targets

ORDER = ("micro", "hackbench", "sysbench", "redis")


def load(out: Path) -> list[dict[str, Any]]:
    docs = []
    for name in ORDER:
        p = out / f"{name}.json"
        if p.exists():
            docs.append(json.loads(p.read_text()))
    return docs


def fmt(v: float) -> str:
    a = abs(v)
    if a >= 100000:
        return f"{v:,.0f}"
    if a >= 100:
        return f"{v:.0f}"
    if a >= 10:
        return f"{v:.1f}"
    if a >= 1:
        return f"{v:.2f}"
    return f"{v:.3f}"


def cell(summary: dict[str, Any], key: str, spread: bool = True) -> str:
    s = summary.get(key)
    if not s:
        return ""
    if not spread or s["n"] < 2:
        return fmt(s["median"])
    return f"{fmt(s['median'])} ({fmt(s['min'])}-{fmt(s['max'])})"


def ratio(case: dict[str, Any], name: str, key: str) -> float | None:
    base = case["results"].get("none", {}).get("summary", {}).get(key)
    this = case["results"].get(name, {}).get("summary", {}).get(key)
    if not base or not this or not base["median"]:
        return None
    return float(this["median"] / base["median"])


def case_table(doc: dict[str, Any], case: dict[str, Any]) -> list[str]:
    metrics = [m for m in doc["metrics"]
               if any(m["name"] in r.get("summary", {}) for r in case["results"].values())]
    main = next(m for m in doc["metrics"] if m["main"])
    head = ["configuration", "status", *[f"{m['name']} ({m['unit']})" for m in metrics], "vs none"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, res in case["results"].items():
        status = res["status"]
        if status != "ok":
            status = f"**{status}**" + (f": {res['message'][:140]}" if res["message"] else "")
            status = status.replace("|", "/")
        cells = [cell(res["summary"], m["name"], spread=m["main"] or m["name"].startswith("lat")) for m in metrics]
        r = ratio(case, name, main["name"])
        rel = f"{100 * r:.1f}%" if r is not None and name != "none" else ""
        lines.append("| " + " | ".join([f"`{name}`", status, *cells, rel]) + " |")
    return lines


def profile_table(out: Path) -> list[str]:
    """The perf breakdown of full mode, if this run made one."""
    p = out / "profile.json"
    if not p.exists():
        return []
    prof = json.loads(p.read_text())
    runs = [r for r in prof["runs"] if "children_pct" in r]
    if not runs:
        return []
    head = ["where the time goes (% of samples, callees included)",
            *[f"`{r['config']}` {r['threads']} thr" for r in runs]]
    lines = ["## Where full mode's time goes", "",
             f"{prof['what']} (`bench/run --profile`). Percentages include callees, so nested rows overlap.", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for sym, what in prof["symbols"].items():
        vals = [r["children_pct"].get(sym) for r in runs]
        if not any(vals):
            continue
        cells = [f"{v:.1f}" if v else "" for v in vals]
        lines.append(f"| {what.replace('  ', '&nbsp;&nbsp;')} (`{sym}`) | " + " | ".join(cells) + " |")
    kern = [r["dso_pct"].get("[kernel.kallsyms]") for r in runs]
    lines.append("| **kernel, all of it** | " + " | ".join(f"{v:.1f}" if v else "" for v in kern) + " |")
    eng = [r["dso_pct"].get("libufence.so") for r in runs]
    lines.append("| **libufence.so, own code** | " + " | ".join(f"{v:.1f}" if v else "" for v in eng) + " |")
    sc = [r.get("syscalls", {}).get("per_alloc_or_free", {}) for r in runs]
    names = sorted({k for d in sc for k in d})
    for n in names:
        lines.append(f"| `{n}` system calls per malloc or free | " +
                     " | ".join(f"{d[n]:.2f}" if n in d else "" for d in sc) + " |")
    return [*lines, ""]


def write(out: Path, docs_dir: Path, quick: bool, note: str = "") -> tuple[Path, Path]:
    docs = load(out)
    md = docs_dir / "bench.md"
    png = docs_dir / "bench.png"
    chart_note = chart.render(docs, png)
    lines: list[str] = ["# ufence benchmarks", ""]
    if docs:
        d0 = docs[0]
        lines += [
            f"Produced by one run of `{d0['reproduce']}` ({d0['mode']} mode, {d0['reps']} repetitions, "
            f"{d0['date']}, {sum(d['seconds'] for d in docs) / 60:.0f} minutes of benchmarks); "
            "the JSON behind every number is in `bench/results/`. " + note,
            "",
            "Machine: " + "; ".join(f"{k} {v}" for k, v in d0["machine"].items()) + ".",
            "",
            f"Engine: `{d0['engine']['path']}` ({d0['engine']['note']}). {d0['launch']}.",
            "",
            "Method: within each case the configurations run in turn, the order rotated by one per repetition "
            "(A B C ... / B C ... A / ...); cells are medians with (min-max) over the repetitions; servers are pinned "
            "to CPU 0 and their clients to CPU 1 with taskset, the 1-thread microbenchmark to CPU 1. The machine "
            "is shared with other work, so only ratios from the same run mean anything.",
            "",
        ]
    lines += [
        "How to run: `bench/run --full` (about 15 minutes on 2 vCPUs: real numbers, writes `bench/results/*.json`, "
        "`docs/bench.md`, `docs/bench.png`), `bench/run --quick` (CI smoke run, under 5 minutes, fails only on a "
        "crash, a hang or a false ufence report, never on timing), `--only micro,hackbench,redis,sysbench`, "
        "`--configs NAME,...`, `--reps N`, `--out DIR`, `--profile`. It apt-gets what is missing (rt-tests, "
        "sysbench, mariadb-server, redis-server, electric-fence, duma, libclang-rt-16-dev, valgrind), builds the "
        "engine into /tmp/bench-build unless `UFENCE_ENGINE` is set, runs servers on 127.0.0.1 with private "
        "datadirs and ports (mariadbd as user mysql), bounds every run with a timeout and kills every server "
        "it started on exit.",
        "",
    ]
    summary = Path(__file__).resolve().parents[1] / "summary.md"  # hand-written reading of the run
    if summary.exists() and not quick:
        lines += [summary.read_text().strip(), ""]
    lines += targets.section(docs)
    lines += ["", f"![chart: each configuration as % of no engine]({png.name})", "", chart_note, ""]
    for doc in docs:
        lines += [f"## {doc['workload']}", "", doc["what"] + ".", ""]
        for case in doc["cases"]:
            lines += [f"### {doc['workload']} / {case['name']}: {case['what']}", "",
                      f"Command: `{case['command']}`; ufence full-mode pool: "
                      + (f"num_objects={case['pool']}." if case["pool"] else
                         "the engine's default (4095 slots, doubled while all are live)."), ""]
            lines += [*case_table(doc, case), ""]
    if docs:
        lines += ["## Configurations", "", "| name | what | settings |", "|---|---|---|"]
        for name, c in docs[0]["configs"].items():
            lines.append(f"| `{name}` | {c['what']} | `{c['settings']}` |")
        lines.append("")
    lines += profile_table(out)
    extra = Path(__file__).resolve().parents[1] / "profile.md"  # hand-written: where the cost goes
    if extra.exists() and not quick:
        lines += ["", extra.read_text().strip(), ""]
    md.write_text("\n".join(lines) + "\n")
    return md, png
