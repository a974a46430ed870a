"""The symbolizer: frames in, function/file:line/inlined filled in place.

Per call, frames are grouped by module; each module is resolved once per
process (build-id check, debug file search, symbol table); the addresses not
yet cached go to the line-table tool in one batch; results are cached by
(build id or path, looked-up offset).

Address convention: ``Frame.offset`` is ``pc - load bias``, i.e. the
address in the ELF file's own virtual address space (what ``nm`` prints and
``st_value``/``p_vaddr`` use; for a non-PIE executable it equals the pc).
Non-leaf frames hold return addresses, so ``offset - 1`` is looked up to
name the call instruction's line; a frame passed in ``exact`` (the faulting
instruction) is looked up as is. ``function_offset`` is computed from the
raw offset, as the kernel's ``%pS`` prints it.

Inlining (model.Frame's contract): the frame describes the innermost
source function at the pc (``function``, ``file:line`` there) and
``inlined`` lists the callers it was inlined into, innermost first; the last
of them is the physical function, the symbol containing the pc. Without
inlining the frame itself is that function. ``function_offset``/
``function_size`` (``func+0xoff/0xsize``) always belong to the symbol, so
they sit on whichever entry names it (the frame, or the last inlined one).
This is the order pprof's Location.line uses.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Any

from ufence.model import Frame
from ufence.symbolize import elf, modules, servers


@dataclass(frozen=True)
class Result:
    locs: tuple[servers.Loc, ...]  # innermost first; empty = no line info
    symbol: elf.Symbol | None


class Symbolizer:
    def __init__(self, tool: str | None = None) -> None:
        self.tool_name, self.backend = _make_backend(tool)
        self.demangler = servers.Demangler()
        self._search_dirs: list[str] = []
        self._modules: dict[tuple[str, str | None], modules.Module] = {}
        self._cache: dict[tuple[str, int], Result] = {}
        self._demangled: dict[str, str] = {}
        self._patches: dict[tuple[Any, ...], dict[str, Any]] = {}
        self._notices: dict[str, None] = {}  # ordered set
        self._lock = threading.Lock()
        self.queries = 0  # addresses sent to the tool (not answered from cache)

    @property
    def search_dirs(self) -> list[str]:
        return list(self._search_dirs)

    @search_dirs.setter
    def search_dirs(self, dirs: list[str]) -> None:
        """Extra directories to find binaries in by file name; modules are looked up again."""
        self._search_dirs = list(dirs)
        self._modules.clear()

    def close(self) -> None:
        if self.backend is not None:
            self.backend.close()
        self.demangler.close()

    # ---- notices ---------------------------------------------------------
    def notices(self) -> list[str]:
        return list(self._notices)

    def clear_notices(self) -> None:
        self._notices.clear()

    def _notice(self, text: str) -> None:
        self._notices.setdefault(text, None)

    # ---- main entry --------------------------------------------------------
    def symbolize(self, frames: Iterable[Frame], exact: Collection[Frame] = ()) -> None:
        exact_ids = {id(f) for f in exact}
        with self._lock:
            work: list[tuple[Frame, modules.Module, int]] = []
            for f in frames:
                if f.module is None or f.offset is None or not f.module.startswith("/") or f.offset < 0:
                    continue  # kernel frames, [vdso], anonymous code: left as they are
                mod = self._module(f.module, f.build_id)
                if not mod.usable:
                    continue
                look = f.offset if (id(f) in exact_ids or f.offset == 0) else f.offset - 1
                work.append((f, mod, look))
            local = self._fill_cache(work)
            self._demangle_symbols(local)
            for f, mod, look in work:
                k = (mod.cache_key, look)
                res = self._cache.get(k)
                if res is not None:
                    self._apply(f, mod, look, res, memo=True)
                elif (res := local.get(k)) is not None:
                    self._apply(f, mod, look, res, memo=False)  # degraded (tool failed): not remembered

    def _module(self, path: str, build_id: str | None) -> modules.Module:
        mod = self._modules.get((path, build_id))
        if mod is None:
            key = (path, build_id.lower() if build_id else None)
            mod = self._modules.get(key)
            if mod is None:
                mod = modules.resolve(path, build_id, self._search_dirs)
            self._modules[key] = self._modules[(path, build_id)] = mod
        if mod.notices:
            for n in mod.notices:
                self._notice(n)
        return mod

    def _fill_cache(self, work: list[tuple[Frame, modules.Module, int]]) -> dict[tuple[str, int], Result]:
        """Answer the uncached addresses; returns this call's new results (also cached unless degraded)."""
        todo: dict[str, tuple[modules.Module, dict[int, None]]] = {}
        for _f, mod, look in work:
            if (mod.cache_key, look) not in self._cache:
                todo.setdefault(mod.cache_key, (mod, {}))[1].setdefault(look, None)
        local: dict[tuple[str, int], Result] = {}
        if not todo:
            return local
        by_file: dict[str, list[int]] = {}
        for mod, addrs in todo.values():
            if mod.dwarf and self.backend is not None and self.backend.accepts(mod.dwarf):
                by_file.setdefault(mod.dwarf, []).extend(addrs)
        answers: dict[tuple[str, int], list[servers.Loc]] = {}
        failed = False
        if by_file and self.backend is not None:
            try:
                answers = self.backend.query_many(by_file)
                self.queries += sum(len(a) for a in by_file.values())
            except servers.ServerError as e:
                self._notice(f"{self.tool_name} failed ({e}); showing symbol-table names only")
                failed = True
        if len(self._cache) > 2_000_000:  # bound memory in long-running watchers
            self._cache.clear()
        for mod, addrs in todo.values():
            for look in addrs:
                locs = answers.get((mod.dwarf, look), []) if mod.dwarf else []
                if not any(loc.file for loc in locs):
                    locs = []  # the tool's symbol-table guess (e.g. "_end" far past the code): ours is checked
                res = Result(tuple(locs), mod.symbols.lookup(look) if mod.symbols else None)
                local[(mod.cache_key, look)] = res
                if not (failed and mod.dwarf):  # a degraded answer is not kept: the tool may work next time
                    self._cache[(mod.cache_key, look)] = res
        return local

    def _demangle_symbols(self, local: dict[tuple[str, int], Result]) -> None:
        """Demangle the symbol-table names of this call's new results (old ones already are)."""
        names: dict[str, None] = {}
        for res in local.values():
            sym = res.symbol
            if sym is not None and sym.name.startswith(("_Z", "_R")) and sym.name not in self._demangled:
                names.setdefault(sym.name, None)
        if names:
            todo = list(names)
            for a, b in zip(todo, self.demangler.demangle(todo), strict=True):
                self._demangled[a] = b

    def _apply(self, f: Frame, mod: modules.Module, look: int, res: Result, memo: bool) -> None:
        """Set the frame's fields from ``res``; the same pc of the same module gets the same
        patch, computed once (the ``inlined`` list is then shared by those frames)."""
        key = (mod.cache_key, look, f.offset, f.module)
        patch = self._patches.get(key) if memo else None
        if patch is None:
            patch = self._patch(f, mod, res)
            if memo:
                if len(self._patches) > 1_000_000:
                    self._patches.clear()
                self._patches[key] = patch
        f.__dict__.update(patch)
        if f.build_id is None and mod.build_id:
            f.build_id = mod.build_id

    def _patch(self, f: Frame, mod: modules.Module, res: Result) -> dict[str, Any]:
        assert f.offset is not None
        out: dict[str, Any] = {}
        sym = res.symbol
        symname = self._demangled.get(sym.name, sym.name) if sym else None
        off = size = None
        if sym is not None:
            off, size = f.offset - sym.start, sym.size or None
        if sym is not None or res.locs:
            # offsets not ours to keep when a symbol was not found: they described another name
            out["function_offset"], out["function_size"] = off, size
        if res.locs:
            outer = servers.tidy_rust(res.locs[-1].function) if res.locs[-1].function else None
            # keep the symbol's name when it is a compiler clone of the DWARF function
            # (foo.cold, foo.constprop.0): function+off/size must refer to that symbol
            if symname and (outer is None or symname.startswith(outer + ".")):
                outer = symname
            chain = [Frame(module=f.module, function=servers.tidy_rust(loc.function) if loc.function else None,
                           file=loc.file, line=loc.line, column=loc.column) for loc in res.locs]
            chain[-1].function = outer or chain[-1].function
            if len(chain) > 1:
                # the symbol's offset/size move to the physical function's entry
                chain[-1].function_offset, chain[-1].function_size = off, size
                out["function_offset"] = out["function_size"] = None
            inner = chain[0]
            if inner.function:
                out["function"] = inner.function
            out["file"], out["line"], out["column"] = inner.file, inner.line, inner.column
            out["inlined"] = chain[1:]
        elif symname:
            out["function"] = symname
        return out


class _Backend:
    name: str

    def accepts(self, path: str) -> bool:
        raise NotImplementedError

    def query_many(self, by_file: dict[str, list[int]]) -> dict[tuple[str, int], list[servers.Loc]]:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class _Llvm(_Backend):
    def __init__(self, path: str) -> None:
        self.tool = servers.LlvmSymbolizer(path)
        self.name = "llvm-symbolizer"
        a2l = servers.find_tool(["addr2line"])
        # file names llvm-symbolizer's input syntax cannot carry (a '"' or newline) go to addr2line,
        # which takes the file as an argument
        self.odd: _Addr2Line | None = _Addr2Line(a2l) if a2l else None

    def accepts(self, path: str) -> bool:
        return self.tool.accepts(path) or self.odd is not None

    def query_many(self, by_file: dict[str, list[int]]) -> dict[tuple[str, int], list[servers.Loc]]:
        # one exchange for every module: a single process answers them all
        pairs = [(p, a) for p, addrs in by_file.items() if self.tool.accepts(p) for a in addrs]
        out = dict(zip(pairs, self.tool.query_pairs(pairs), strict=True))
        odd = {p: addrs for p, addrs in by_file.items() if not self.tool.accepts(p)}
        if odd and self.odd is not None:
            out.update(self.odd.query_many(odd))
        return out

    def close(self) -> None:
        self.tool.close()
        if self.odd is not None:
            self.odd.close()


class _Addr2Line(_Backend):
    def __init__(self, path: str) -> None:
        self.tool = servers.Addr2Line(path)
        self.name = "addr2line"

    def accepts(self, path: str) -> bool:
        return True

    def query_many(self, by_file: dict[str, list[int]]) -> dict[tuple[str, int], list[servers.Loc]]:
        out: dict[tuple[str, int], list[servers.Loc]] = {}
        for p, addrs in by_file.items():
            for a, locs in zip(addrs, self.tool.query(p, addrs), strict=True):
                out[(p, a)] = locs
        return out

    def close(self) -> None:
        self.tool.close()


def _make_backend(tool: str | None) -> tuple[str, _Backend | None]:
    """``tool``/``UFENCE_SYMBOLIZER``: llvm-symbolizer, addr2line, none, or a path to either."""
    choice = tool or os.environ.get("UFENCE_SYMBOLIZER") or ""
    if choice == "none":
        return "none", None
    if choice:
        base = os.path.basename(choice)
        path = choice if "/" in choice else servers.find_tool([choice])
        if path and "addr2line" in base:
            return "addr2line", _Addr2Line(path)
        if path and "llvm-symbolizer" in base:
            return "llvm-symbolizer", _Llvm(path)
    llvm = servers.llvm_symbolizer_path()
    if llvm:
        return "llvm-symbolizer", _Llvm(llvm)
    a2l = servers.find_tool(["addr2line", "eu-addr2line"])
    if a2l and not a2l.endswith("eu-addr2line"):
        return "addr2line", _Addr2Line(a2l)
    return "none", None
