"""The issue's targets, checked against the numbers of this run."""

from __future__ import annotations

from typing import Any

# Per workload, the CPU cost of one unit of work (lower is better): on a
# shared machine it moves far less with the neighbours' load than throughput.
CPU = {"micro": "cpu_ns_per_pair", "hackbench": "cpu_seconds", "sysbench": "cpu_ms_per_txn",
       "redis": "cpu_us_per_req"}


def _yn(ok: bool) -> str:
    return "yes" if ok else "**no**"


def _s(case: dict[str, Any], name: str, key: str) -> dict[str, float] | None:
    res = case["results"].get(name)
    if not res or res["status"] not in ("ok", "hung"):
        return None
    return res["summary"].get(key)


def _main(doc: dict[str, Any]) -> tuple[str, bool]:
    m = next(m for m in doc["metrics"] if m["main"])
    return m["name"], m["higher_is_better"]


def _cost(case: dict[str, Any], name: str, key: str, higher: bool) -> float | None:
    """Slowdown against no engine in %, positive = slower."""
    b, t = _s(case, "none", key), _s(case, name, key)
    if not b or not t or not b["median"] or not t["median"]:
        return None
    r = t["median"] / b["median"]
    return 100 * (1 - r) if higher else 100 * (r - 1)


def _added(case: dict[str, Any], name: str, key: str, base: str) -> float | None:
    """What name adds to base, in key's own units (median vs median)."""
    b, t = _s(case, base, key), _s(case, name, key)
    return t["median"] - b["median"] if b and t else None


def _noise(case: dict[str, Any], key: str) -> float:
    """Run-to-run spread of no engine, % of its median (at least 2%)."""
    b = _s(case, "none", key)
    if not b or not b["median"]:
        return 2.0
    return max(2.0, 100 * (b["max"] - b["min"]) / b["median"])


def _status(case: dict[str, Any], name: str) -> str:
    res = case["results"].get(name)
    return res["status"] if res else "not run"


def _mem(case: dict[str, Any], name: str, key: str, rss_key: str) -> str:
    s = _s(case, name, key)
    if s:
        return f"{s['median']:.1f}"
    return _status(case, name) if key == rss_key else ""


def section(docs: list[dict[str, Any]]) -> list[str]:
    lines = ["## Targets against the measured numbers", "",
             "Cost = slowdown against `none` in the same case (median vs median); noise = the min-max spread "
             "of `none` over the repetitions (at least 2%). Each is judged twice: on throughput (wall clock, "
             "disturbed by whatever else the shared machine runs) and on CPU time per unit of work "
             f"({', '.join(f'{k}: `{v}`' for k, v in CPU.items())}), the steadier measure here.", "",
             "| target | workload / case | measured | verdict |", "|---|---|---|---|"]

    def row(target: str, where: str, measured: str, verdict: str) -> None:
        lines.append(f"| {target} | {where} | {measured} | {verdict} |")

    for doc in docs:
        key, higher = _main(doc)
        for case in doc["cases"]:
            where = f"{doc['workload']}/{case['name']}"
            noise = _noise(case, key)
            ck = CPU.get(doc["workload"], "")
            cnoise = _noise(case, ck)
            for name in ("ufence-off", "ufence-100ms"):
                c = _cost(case, name, key, higher)
                cc = _cost(case, name, ck, False)
                if c is None:
                    row(f"`{name}` within noise of none", where, _status(case, name), "n/a")
                    continue
                ctext = f"; CPU {cc:+.1f}% (noise ±{cnoise:.1f}%)" if cc is not None else ""
                verdict = f"throughput {_yn(c <= noise)}" + (f", CPU {_yn(cc <= cnoise)}" if cc is not None else "")
                row(f"`{name}` within noise of none", where, f"throughput {c:+.1f}% (noise ±{noise:.1f}%){ctext}",
                    verdict)
    for doc in docs:
        if doc["workload"] != "sysbench":
            continue
        for case in doc["cases"]:
            for name in ("ufence-full", "ufence-full-batch", "ufence-full-madvise", "ufence-full-mprotect"):
                b, t = _s(case, "none", "tps"), _s(case, name, "tps")
                if not b or not t:
                    row(f"`{name}` ≥ 80% of no-engine tps", f"sysbench/{case['name']}", _status(case, name), "n/a")
                    continue
                r = 100 * t["median"] / b["median"]
                bc, tc = _s(case, "none", "cpu_ms_per_txn"), _s(case, name, "cpu_ms_per_txn")
                cr = 100 * bc["median"] / tc["median"] if bc and tc and tc["median"] else None
                ctext = (f"; server CPU {tc['median']:.2f} vs {bc['median']:.2f} ms/txn = {cr:.1f}% "
                         "of no-engine throughput per CPU") if cr is not None and tc and bc else ""
                verdict = f"tps {_yn(r >= 80)}" + (f", CPU {_yn(cr >= 80)}" if cr is not None else "")
                row(f"`{name}` ≥ 80% of no-engine tps", f"sysbench/{case['name']}",
                    f"{t['median']:.0f} vs {b['median']:.0f} tps = {r:.1f}%{ctext}", verdict)
    for doc in docs:
        if doc["workload"] != "micro":
            continue
        for case in doc["cases"]:
            for name in ("ufence-full", "ufence-full-batch"):
                full = _s(case, name, "allocs_per_sec")
                for peer in ("efence", "duma"):
                    p = _s(case, peer, "allocs_per_sec")
                    where = f"micro/{case['name']}"
                    if full and p:
                        x = full["median"] / p["median"]
                        row(f"`{name}` ≥ 10x `{peer}`", where,
                            f"{full['median']:,.0f} vs {p['median']:,.0f} pairs/s = {x:,.0f}x",
                            "yes" if x >= 10 else "**no**")
                    elif full:
                        row(f"`{name}` ≥ 10x `{peer}`", where, f"{full['median']:,.0f} pairs/s; {peer}: "
                            f"{_status(case, peer)}",
                            "yes (peer cannot run)" if _status(case, peer) == "died" else "n/a")
            if "1M" in case["name"]:
                st = _status(case, "ufence-full")
                g = _s(case, "ufence-full", "guarded_pct")
                gtxt = f", {g['median']:.1f}% of allocations guarded" if g else ""
                row("`ufence-full` works at 1,000,000 live objects", f"micro/{case['name']}", st + gtxt,
                    "yes" if st == "ok" else "**no**")
    for doc in docs:
        key, higher = _main(doc)
        ck = CPU.get(doc["workload"], "")
        for case in doc["cases"]:
            for n in ("1000", "100"):
                u, g = _cost(case, f"ufence-1in{n}", key, higher), _cost(case, f"scudo-gwp-{n}", key, higher)
                if u is None or g is None:
                    continue
                noise, cnoise = _noise(case, key), _noise(case, ck)
                uc, gc = _cost(case, f"ufence-1in{n}", ck, False), _cost(case, f"scudo-gwp-{n}", ck, False)
                # The sampling's own price, allocator aside: CPU added to the allocator it
                # sits on (GWP-ASan: Scudo without it; ufence: glibc), in the metric's units,
                # since the two bases differ too much for percentages to compare
                ua, ga = _added(case, f"ufence-1in{n}", ck, "none"), _added(case, f"scudo-gwp-{n}", ck, "scudo")
                ctext = f"; CPU {uc:+.1f}% vs {gc:+.1f}%" if uc is not None and gc is not None else ""
                otext = f"; sampling's own CPU {ua:+.3g} vs {ga:+.3g} {ck}" if ua is not None and ga is not None else ""
                verdict = f"throughput {_yn(u <= g + noise)}"
                if uc is not None and gc is not None:
                    verdict += f", CPU {_yn(uc <= gc + cnoise)}"
                if ua is not None and ga is not None:
                    b = _s(case, "none", ck)
                    spread = (b["max"] - b["min"]) if b else 0.0
                    verdict += f", sampling's own CPU {_yn(ua <= ga + spread)}"
                row(f"`ufence-1in{n}` no costlier than `scudo-gwp-{n}`", f"{doc['workload']}/{case['name']}",
                    f"throughput {u:+.1f}% vs {g:+.1f}%{ctext}{otext}", verdict)
    lines += ["", "Memory (medians, MiB): peak RSS under full mode against no engine, and ufence's own pool "
              "(object pages resident) and metadata: the engine's `metadata_bytes` stat and the tmpfs pages its "
              "shm file really holds.", "",
              "| workload / case | RSS none | RSS ufence-full | RSS full-madvise | RSS full-mprotect | pool pages "
              "| metadata (engine stat) | shm file resident |",
              "|---|---|---|---|---|---|---|---|"]
    for doc in docs:
        rk = "max_rss_mib" if doc["workload"] == "micro" else "rss_mib"
        for case in doc["cases"]:
            if not _s(case, "none", rk):
                continue
            cells = [_mem(case, n, k, rk) for n, k in (("none", rk), ("ufence-full", rk),
                                                        ("ufence-full-madvise", rk),
                                                        ("ufence-full-mprotect", rk),
                                                        ("ufence-full", "pool_resident_mib"),
                                                        ("ufence-full", "metadata_mib"),
                                                        ("ufence-full", "shm_resident_mib"))]
            lines.append(f"| {doc['workload']}/{case['name']} | " + " | ".join(cells) + " |")
    return lines
