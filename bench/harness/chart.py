"""docs/bench.png: every case, every configuration, as % of no engine.

matplotlib comes from PyPI into a private directory (/tmp/bench-pydeps) if it
is not importable; without it the tiny renderer in pngbars.py draws the same
bars with a built-in bitmap font.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

PYDEPS = Path("/tmp/bench-pydeps")
COLORS = {"base": "#555555", "ufence": "#1f77b4", "peer": "#d62728"}


def _matplotlib() -> Any:
    try:
        import matplotlib
    except ImportError:
        if str(PYDEPS) not in sys.path:
            sys.path.insert(0, str(PYDEPS))
        try:
            import matplotlib
        except ImportError:
            r = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--target", str(PYDEPS), "matplotlib"],
                               capture_output=True, timeout=300)
            if r.returncode != 0:
                return None
            import importlib

            importlib.invalidate_caches()
            try:
                import matplotlib
            except ImportError:
                return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def panels(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One panel per case: (config, kind, % of none or None, status)."""
    out = []
    for doc in docs:
        main = next(m for m in doc["metrics"] if m["main"])
        for case in doc["cases"]:
            base = case["results"].get("none", {}).get("summary", {}).get(main["name"])
            bars = []
            for name, res in case["results"].items():
                if res["status"] == "skipped":
                    continue
                s = res["summary"].get(main["name"])
                pct = None
                if s and base and base["median"] and s["median"]:
                    r = s["median"] / base["median"]
                    pct = 100 * (r if main["higher_is_better"] else 1 / r)
                kind = doc["configs"].get(name, {}).get("kind", "peer")
                bars.append((name, kind, pct, res["status"]))
            out.append({"title": f"{doc['workload']} / {case['name']}", "bars": bars,
                        "metric": main["name"] + (" (inverted)" if not main["higher_is_better"] else "")})
    return out


def render(docs: list[dict[str, Any]], png: Path) -> str:
    ps = panels(docs)
    if not ps:
        return "(no results to chart)"
    plt = _matplotlib()
    if plt is None:
        from harness import pngbars

        pngbars.render(ps, png)
        return "Chart drawn by bench/harness/pngbars.py (matplotlib was not installable)."
    cols = 3 if len(ps) > 4 else 2
    rows = (len(ps) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(6.2 * cols, 0.33 * 15 * rows + 0.8), squeeze=False)
    for ax, p in zip(axes.flat, ps, strict=False):
        names = [b[0] for b in p["bars"]][::-1]
        vals = [b[2] if b[2] else 0.0 for b in p["bars"]][::-1]
        cols_ = [COLORS.get(b[1], "#999999") for b in p["bars"]][::-1]
        ax.barh(names, [max(v, 0.01) for v in vals], color=cols_)
        ax.set_xscale("log")
        ax.set_xlim(0.01, 300)
        ax.axvline(100, color="black", lw=0.8, ls="--")
        ax.set_title(f"{p['title']}  [{p['metric']}]", fontsize=9)
        ax.tick_params(axis="y", labelsize=7)
        ax.tick_params(axis="x", labelsize=7)
        for i, b in enumerate(p["bars"][::-1]):
            label = f"{b[2]:.1f}%" if b[2] else b[3]
            ax.text(max(vals[i], 0.01) * 1.1, i, label, va="center", fontsize=6.5)
    for ax in list(axes.flat)[len(ps):]:
        ax.axis("off")
    fig.suptitle("Throughput as % of no engine (log scale; higher is better; hackbench inverted from seconds). "
                 "Grey: none, blue: ufence, red: peers", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    fig.savefig(png, dpi=110)
    plt.close(fig)
    return "Chart drawn with matplotlib."
