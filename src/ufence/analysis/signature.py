"""Dedup signatures for bug reports, titled the way syzbot titles them.

``KFENCE: use-after-free read in kq_uaf_read`` (kernel) or
``UFENCE: out-of-bounds write in parse_header`` (process): the bug type and
the first frame that is the caller's code, after skipping allocator,
KFENCE/ufence and runtime helper frames. No offsets or addresses, and
compiler clone suffixes (``.isra.0``, ``.constprop.3``, ``.cold``) are
dropped, so the same bug gives the same signature across boots, builds and
pointer hashing.
"""

from __future__ import annotations

import re

from ufence.model import BugType, Frame, Report

# Kernel frames that are never where the bug is.
_KERNEL_SKIP = re.compile(
    r"^(?:__?kfence_\w*|kfence_\w*|kasan_\w*|__kasan_\w*|__?kmalloc\w*|kmalloc\w*|kmem_cache_\w*|__kmem_cache_\w*"
    r"|kfree\w*|__kfree\w*|kvfree\w*|kvmalloc\w*|kvzalloc\w*|kzalloc\w*|kcalloc\w*|krealloc\w*|kmemdup\w*|kstrdup\w*"
    r"|_{0,3}slab_\w*|__?free_pages?\w*|__?alloc_pages?\w*|rcu_do_batch|rcu_core\w*|mem(?:cpy|move|set|cmp)\w*"
    r"|__mem(?:cpy|move|set)\w*|str(?:n?cpy|n?cmp|n?len|n?cat|scpy)\w*|copy_(?:to|from)_user\w*|_copy_(?:to|from)_user\w*"
    r"|__?asan_\w*)$"
)
# Process frames: allocator entry points, the engine, libc allocator and mem*/str* helpers.
_PROCESS_SKIP = re.compile(
    r"^(?:malloc|free|calloc|realloc|reallocarray|posix_memalign|aligned_alloc|memalign|valloc|pvalloc|cfree"
    r"|malloc_usable_size|strn?dup|__libc_\w+|__GI_\w+|_int_\w+|tcache_\w+|__default_morecore"
    r"|_Zn[wa]\w*|_Zd[la]\w*|operator new.*|operator delete.*"
    r"|u?fence_\w*|__ufence\w*|uf_\w*"
    r"|mem(?:cpy|move|set|cmp|chr|rchr|mem|pcpy)(?:_\w+)?|__mem\w*|__str\w*|__wcs\w*|__wmem\w*|stpn?cpy"
    r"|str(?:n?cpy|n?cat|n?cmp|n?len|r?chr|str|n?casecmp|c?spn|pbrk|tok(?:_r)?|lcpy|lcat|coll|xfrm)(?:_\w+)?"
    r"|wcs(?:n?cpy|n?len|n?cmp|n?cat)(?:_\w+)?)$"
)
_SKIP_MODULES = ("libufence.so",)
_SUFFIX = re.compile(r"(?:\.(?:isra|constprop|part|cold|llvm|lto_priv|localalias)(?:\.\d+)*)+$")
_WHAT = {
    BugType.DOUBLE_FREE: "invalid free",
}


def clean_function(name: str) -> str:
    """Symbol without ``+off/size`` and without compiler clone suffixes."""
    name = name.split("+", 1)[0].strip()
    return _SUFFIX.sub("", name) or name


def _frame_name(f: Frame) -> str | None:
    if f.function:
        return clean_function(f.function)
    if f.module:
        return f.module.rsplit("/", 1)[-1]
    return None


def _skipped(f: Frame, kernel: bool) -> bool:
    if f.module and f.module.rsplit("/", 1)[-1].startswith(_SKIP_MODULES):
        return True
    if not f.function:
        return f.module is None  # a bare address says nothing
    name = clean_function(f.function)
    return bool((_KERNEL_SKIP if kernel else _PROCESS_SKIP).match(name))


def top_frames(report: Report, n: int = 3) -> list[str]:
    """The first ``n`` caller frames (names only) after skipping helpers."""
    kernel = report.source == "kernel"
    out: list[str] = []
    for f in report.stack:
        if _skipped(f, kernel):
            continue
        name = _frame_name(f)
        if name:
            out.append(name)
        if len(out) >= n:
            break
    if not out and report.function:
        out.append(clean_function(report.function))
    return out


def bug_title(report: Report) -> str:
    """``use-after-free read``, ``memory corruption``, ``invalid free`` ..."""
    what = _WHAT.get(report.bug, report.bug.value) if report.source == "kernel" else report.bug.value
    if report.access and report.bug in (BugType.OUT_OF_BOUNDS, BugType.USE_AFTER_FREE, BugType.INVALID_ACCESS):
        what = f"{what} {report.access}"
    return what


def signature(report: Report) -> str:
    """The dedup title: ``KFENCE: <bug> in <first caller frame>``."""
    tool = "KFENCE" if report.source == "kernel" else "UFENCE"
    frames = top_frames(report, 1)
    return f"{tool}: {bug_title(report)} in {frames[0] if frames else '?'}"


def signature_key(report: Report, depth: int = 3) -> str:
    """A finer grouping key: bug type + the top ``depth`` caller frames."""
    return "|".join([bug_title(report), *top_frames(report, depth)])
