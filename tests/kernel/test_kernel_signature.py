"""Dedup signatures: kernel and process reports, helper frames skipped."""

from __future__ import annotations

from ufence.analysis.signature import clean_function, signature, signature_key, top_frames
from ufence.model import BugType, Frame, Report


def _rep(source: str, bug: BugType, access: str | None, funcs: list[str | None], module: str | None = None) -> Report:
    stack = [Frame(function=f, function_offset=0x10, module=module) if f else Frame(pc=0x1234) for f in funcs]
    return Report(source=source, bug=bug, access=access, function=funcs[0], stack=stack)


def test_kernel_skips_allocator_and_kfence_frames() -> None:
    r = _rep("kernel", BugType.USE_AFTER_FREE, "read",
             ["kfence_handle_page_fault", "__kmalloc_node", "memcpy_orig", "kq_uaf_read.constprop.0", "kq_init"])
    assert signature(r) == "KFENCE: use-after-free read in kq_uaf_read"
    assert top_frames(r, 2) == ["kq_uaf_read", "kq_init"]
    assert signature_key(r) == "use-after-free read|kq_uaf_read|kq_init"


def test_kernel_invalid_free_of_double_free() -> None:
    r = _rep("kernel", BugType.DOUBLE_FREE, None, ["kfree", "kq_double_free.isra.0"])
    assert signature(r) == "KFENCE: invalid free in kq_double_free"


def test_process_skips_malloc_free_engine_libc() -> None:
    r = _rep("process", BugType.OUT_OF_BOUNDS, "write",
             ["__memcpy_avx_unaligned_erms", "memcpy", "ufence_check", None, "parse_header", "main"])
    assert signature(r) == "UFENCE: out-of-bounds write in parse_header"
    r2 = _rep("process", BugType.DOUBLE_FREE, None, ["free", "__libc_free", "_ZdlPv", "Buffer_release", "main"])
    assert signature(r2) == "UFENCE: double free in Buffer_release"
    # user functions that merely look like libc names are kept
    r3 = _rep("process", BugType.USE_AFTER_FREE, "read", ["strlen", "string_append", "main"])
    assert signature(r3) == "UFENCE: use-after-free read in string_append"


def test_engine_module_frames_skipped() -> None:
    stack = [Frame(function="uf_guarded_alloc", module="/usr/lib/ufence/_engine/libufence.so"),
             Frame(function="handler", module="/srv/app")]
    r = Report(source="process", bug=BugType.MEMORY_CORRUPTION, access=None, function="handler", stack=stack)
    assert signature(r) == "UFENCE: memory corruption in handler"


def test_unsymbolized_falls_back_to_module_then_title_function() -> None:
    r = Report(source="process", bug=BugType.INVALID_FREE, access=None, function=None,
               stack=[Frame(pc=0x1, module="/lib/libfoo.so.1", offset=0x40)])
    assert signature(r) == "UFENCE: invalid free in libfoo.so.1"
    r2 = Report(source="kernel", bug=BugType.INVALID_ACCESS, access="write", function="test_invalid_access", stack=[])
    assert signature(r2) == "KFENCE: invalid write in test_invalid_access"


def test_clean_function() -> None:
    assert clean_function("kq_read.isra.0+0xb/0x20") == "kq_read"
    assert clean_function("foo.cold") == "foo"
    assert clean_function("do_execveat_common.isra.0") == "do_execveat_common"
    assert clean_function("bar.part.1.constprop.0") == "bar"
