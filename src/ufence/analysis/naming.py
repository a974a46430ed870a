"""Name a leak group after the first frame that is the program's own code.

The leaf frames of an allocation stack are the allocator itself (malloc,
operator new, the engine's interposers; kmalloc and slab internals in the
kernel). Naming a group "malloc" tells nobody anything, so we skip those from
the top and name it after the first caller; the full stack is kept.
"""

from __future__ import annotations

import re

from ufence.model import Frame

# Allocation entry points and allocator internals: libc, C++, the engine, the
# Python/Rust/GLib runtimes' malloc wrappers, and the kernel's slab allocators.
_ALLOC_FUNCS = re.compile(
    r"""^(?:
        malloc|calloc|realloc|reallocarray|free|memalign|posix_memalign|aligned_alloc|valloc|pvalloc
      | strn?dup|wcsdup|asprintf|vasprintf|getline|getdelim
      | __libc_\w+|_int_\w+|__GI_\w+|tcache_\w+
      | operator\ new.*|operator\ delete.*|_Zn[wa]\w*|_Zd[la]\w*
      | __kmalloc\w*|kmalloc\w*|kzalloc\w*|kcalloc\w*|krealloc\w*|kvmalloc\w*|kvzalloc\w*|kvcalloc\w*
      | kmem_cache_alloc\w*|__kmem_cache_alloc\w*|kmem_cache_zalloc\w*|kmalloc_trace\w*|__do_kmalloc\w*
      | slab_alloc\w*|__slab_alloc\w*|___slab_alloc\w*|alloc_slab\w*|kfence_\w*|__kfence_\w*
      | kstrn?dup\w*|kmemdup\w*|devm_kmalloc\w*|devm_kzalloc\w*
      | ufence_\w*|uf_\w*|__interceptor_\w*
      | PyMem_\w*|PyObject_(?:Malloc|Calloc|Realloc)|_PyObject_\w*[Aa]lloc\w*|_PyMem_\w*|pymalloc_\w*
      | __rust_alloc\w*|__rust_realloc|__rdl_\w*|__rg_\w*|alloc::\S+|<alloc::\S+
      | g_malloc\w*|g_realloc\w*|g_slice_alloc\w*|g_new\w*|xmalloc|xcalloc|xrealloc|xstrdup
    )$""",
    re.X,
)
# Modules whose frames are never the user's code.
_ALLOC_MODULES = re.compile(r"(?:^|/)(?:libufence[^/]*\.so[^/]*|libc\.so[^/]*|libc-[^/]*\.so|libstdc\+\+\.so[^/]*)$")


def is_allocator(f: Frame) -> bool:
    if f.function:
        name = f.function.split("(", 1)[0].strip()
        if _ALLOC_FUNCS.match(name):
            return True
    return bool(f.module and _ALLOC_MODULES.search(f.module))


def first_own_frame(frames: list[Frame]) -> Frame | None:
    """The first frame from the leaf that is not the allocator; the leaf if all are."""
    for f in frames:
        if not is_allocator(f):
            return f
    return frames[0] if frames else None


def group_name(frames: list[Frame]) -> str:
    f = first_own_frame(frames)
    return frame_label(f) if f else "(no stack)"


def frame_label(f: Frame) -> str:
    """Short display name: function if known, else module+offset, else the pc."""
    if f.function:
        return f.function
    return f.key()


def frame_location(f: Frame) -> str:
    """``function file:line [module]`` for tables and hover titles."""
    parts = [frame_label(f)]
    if f.file:
        parts.append(f"{f.file}:{f.line}" if f.line else f.file)
    if f.module and f.function:
        parts.append(f"[{f.module.rsplit('/', 1)[-1]}]")
    return " ".join(parts)
