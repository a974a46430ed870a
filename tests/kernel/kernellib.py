"""Helpers for the kernel backend tests: fixture files and fake sysfs trees.

A fake tree is what ``--root DIR`` reads: DIR/sys/module/kfence/parameters,
DIR/sys/kernel/debug/kfence/{stats,objects}, DIR/sys/kernel/slab/<cache>/,
DIR/dmesg.txt. Parameter files get the kernel's permissions (0600/0644,
0444 for boot-only ones) so read-only refusals are checked for real.
"""

from __future__ import annotations

from pathlib import Path

FIXTURES = Path(__file__).parent / "fixtures"

UPSTREAM_612 = {"sample_interval": ("100", 0o600), "skip_covered_thresh": ("75", 0o644), "burst": ("0", 0o644),
                "deferrable": ("N", 0o444), "check_on_panic": ("N", 0o444)}
UPSTREAM_515 = {"sample_interval": ("100", 0o600), "deferrable": ("N", 0o444)}
ANOLIS = {"sample_interval": ("0", 0o600), "num_objects": ("255", 0o600), "pool_mode": ("global", 0o600),
          "order0_page": ("Y", 0o600), "fault": ("report", 0o600), "skip_covered_thresh": ("75", 0o644),
          "deferrable": ("N", 0o444), "check_on_panic": ("N", 0o444)}
VARIANTS = {"upstream-6.12": UPSTREAM_612, "upstream-5.15": UPSTREAM_515, "anolis": ANOLIS}


def fixture_text(name: str) -> str:
    return (FIXTURES / name).read_text()


def build_tree(root: Path, variant: str = "upstream-6.12", *, params: dict[str, str] | None = None,
               stats: str | None = "stats-after-6-bugs.txt", objects: str | None = "objects-after-excerpt.txt",
               dmesg: str | None = "dmesg-kfence-reports.txt", caches: tuple[str, ...] = ("kmalloc-64", "dentry"),
               built: bool = True) -> Path:
    """Write a fake sysfs/debugfs tree under ``root``; returns root."""
    (root / "sys/kernel/debug").mkdir(parents=True, exist_ok=True)
    (root / "proc/sys/kernel").mkdir(parents=True, exist_ok=True)
    (root / "proc/sys/kernel/osrelease").write_text("6.12.117+deb12-amd64\n")
    if not built:
        return root
    pdir = root / "sys/module/kfence/parameters"
    pdir.mkdir(parents=True, exist_ok=True)
    for name, (value, mode) in VARIANTS[variant].items():
        f = pdir / name
        f.write_text((params or {}).get(name, value) + "\n")
        f.chmod(mode)
    if stats or objects:
        d = root / "sys/kernel/debug/kfence"
        d.mkdir(exist_ok=True)
        if stats:
            (d / "stats").write_text(fixture_text(stats))
        if objects:
            (d / "objects").write_text(fixture_text(objects))
    switch = "kfence_enable" if variant == "anolis" else ("skip_kfence" if variant == "upstream-6.12" else None)
    for c in caches:
        cd = root / "sys/kernel/slab" / c
        cd.mkdir(parents=True, exist_ok=True)
        (cd / "object_size").write_text("64\n")
        if switch:
            (cd / switch).write_text(("1" if switch == "kfence_enable" else "0") + "\n")
    if dmesg:
        (root / "dmesg.txt").write_text(fixture_text(dmesg))
    return root
